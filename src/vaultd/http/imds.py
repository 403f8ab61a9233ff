"""The IMDS HTTP surface: token endpoint, guards, and the metadata tree from `metadata`.

Served by `wire` (llhttp in a plain asyncio protocol), where the resource bounds live. Who
is at the other end is settled once, when the connection is accepted (`admit`): the peer's
address, and on Linux the owner of the client socket (`host.peer_owner`); the per-request
guards (Host, the request-target's authority, browser and proxy headers) follow in
`_refusal`. Every refusal is a 403 that closes the connection and a rate-limited, escaped log line
(`refusals`). The credentials document is rendered once per credential set; a request is
answered without a task unless it has to wait for a refresh.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
from collections.abc import Awaitable
from dataclasses import dataclass, field, fields
from typing import Final, TypeVar

from aiohttp import web

from vaultd.core.broker import Broker
from vaultd.core.credentials import Credentials, document, iso8601
from vaultd.core.resolve import Plan
from vaultd.host import send_queue
from vaultd.http import metadata
from vaultd.http import status as status_words
from vaultd.http.admission import Owners
from vaultd.http.ecs import PATH_PREFIX as ECS_PREFIX
from vaultd.http.ecs import EcsApp
from vaultd.http.guards import Guard, same_secret
from vaultd.http.refusals import RefusalLog
from vaultd.http.tokens import Tokens, parse_ttl
from vaultd.http.wire import Limits, Peer, Rendered, Reply, Request, Server, head
from vaultd.untrusted import printable

log = logging.getLogger("vaultd.imds")
TOKEN_HEADER: Final = "X-aws-ec2-metadata-token"  # noqa: S105 - a header name
TTL_HEADER: Final = "X-aws-ec2-metadata-token-ttl-seconds"
BASE_HEADERS: Final = (("Server", "EC2ws"), ("Accept-Ranges", "none"))
RELAY_PATH: Final = "/vaultd-relay/v1/credentials"
# How long a request may wait for a refresh already under way (SDK timeouts are ~1 s).
WAIT_FOR_REFRESH: Final = 0.5
JSON: Final = "application/json; charset=utf-8"
# Distinct request paths whose answers are kept per credential set (SDKs ask for three),
# and whose segments are kept.
ROUTES_KEPT: Final = 64
T = TypeVar("T")


# Connections the kernel queues before vaultd accepts them (listen(2)).
LISTEN_BACKLOG = 1024


@dataclass(frozen=True)
class ImdsOptions:
    tokens_required: bool = False
    # Linux: serve only loopback peers whose socket belongs to one of these uids.
    uid_check: bool = sys.platform.startswith("linux")
    allow_uids: frozenset[int] = field(default_factory=lambda: frozenset({os.getuid()}))
    serve_extended: bool = False
    # Docker Desktop relays fetch from this path with this token (see `vaultd relay`).
    relay_token: str | None = None
    # Connections in each pool (`wire.Pool`): the owner's clients on this machine; peers
    # admitted from an allowed network (other hosts, containers), apart so that they can
    # never take the owner's slots, and as many, since all of a relay's clients are there;
    # refused peers, who only get a 403. The three together stay well under the usual
    # limit of 1024 open files.
    max_connections: int = 256
    max_network: int = 256
    max_refused: int = 16
    # A connection that completes no request in this long is closed (slow or idle clients).
    request_deadline: float = 10.0
    max_headers: int = 64
    max_field_size: int = 8190
    # (These six are `wire.Limits`, field for field: `ImdsApp` hands them on by name.)


@dataclass
class _Prepared:
    """What answers need for one (plan, credentials) pair, built once: the instance, the
    credentials documents, and the answers already worked out, by request path."""

    plan: Plan | None = None
    creds: Credentials | None = None
    instance: metadata.Instance | None = None
    body: bytes = b""
    extended: bytes = b""
    routes: dict[str, tuple[bool, metadata.Reply]] = field(default_factory=dict)


class ImdsApp:
    """The IMDS listener(s): `start` binds, `handle` answers one parsed request."""

    def __init__(
        self,
        broker: Broker,
        tokens: Tokens,
        guard: Guard,
        options: ImdsOptions | None = None,
        ecs: EcsApp | None = None,
    ) -> None:
        self.ecs = ecs
        self.broker = broker
        self.tokens = tokens
        self.guard = guard
        self.options = opts = options or ImdsOptions()
        self.owners = Owners(opts.allow_uids) if opts.uid_check else None
        self.refusals = RefusalLog(log, broker.clock)
        self._prepared = _Prepared()
        self._rendered = Rendered()
        self._segments: dict[str, list[str]] = {}  # request path -> `metadata.normalise`
        self._listeners: list[asyncio.Server] = []
        # Every `Limits` field is an option of the same name.
        limits = Limits(**{f.name: getattr(opts, f.name) for f in fields(Limits)})
        self.server = Server(
            self.handle,
            self.admit,
            limits,
            self._bad_request,
            lambda transport: send_queue.unsent(transport.get_extra_info("socket")),
        )

    @property
    def owner_lookup(self) -> str:
        """How the owner of a connection is found, and which uids other than the daemon's
        own it admits (`--allow-uid`), for `vaultd status`; or "off"."""
        if self.owners is None:
            return "off"
        others = sorted(self.owners.allow_uids - {os.getuid()})
        if not others:
            return self.owners.name
        return f"{self.owners.name}; also admits uid {', '.join(map(str, others))}"

    # -- serving ---------------------------------------------------------------------------
    async def start(
        self, host: str | None = None, port: int | None = None, sock: socket.socket | None = None
    ) -> asyncio.Server:
        """Listen on host:port, or on an inherited socket (socket activation)."""
        loop = asyncio.get_running_loop()
        protocol = self.server.protocol
        if self.owners is not None:
            # Chosen now (netlink checks itself on a connection of its own), so that the
            # first client does not wait for it.
            self.owners.lookup  # noqa: B018
        if sock is not None:
            listener = await loop.create_server(protocol, sock=sock)
        else:
            # asyncio's default backlog is 100: a local flood of connects fills it, and the
            # owner's SDK (1 s timeout) waits behind it. The kernel caps it at somaxconn.
            listener = await loop.create_server(
                protocol, host, port or 0, reuse_address=True, backlog=LISTEN_BACKLOG
            )
        self._listeners.append(listener)
        return listener

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop accepting, let requests in flight finish, close the rest."""
        for listener in self._listeners:
            listener.close()
        await self.server.shutdown(grace)
        for listener in self._listeners:
            await listener.wait_closed()
        self._listeners.clear()
        if self.owners is not None:
            self.owners.close()

    def admit(self, transport: asyncio.BaseTransport) -> Peer:
        """Who is at the other end of a new connection, whether they may be served, and
        the pool they count in: the peer address rule, then (Linux) the owner of the
        client socket, wherever that socket is on this machine (`Owners.check`). A served
        peer is the owner's (its socket found here, or a local address when there is no
        owner check) or the allowed network's (no socket here: another host, a container)."""
        name = transport.get_extra_info("peername")
        address = (str(name[0]), int(name[1])) if name else None
        refusal = self.guard.peer_refusal(address[0] if address else None)
        if refusal or address is None:
            return Peer(address, None, refusal, "refused")
        local = self.guard.is_local(address[0])
        if self.owners is None:
            return Peer(address, None, None, "owner" if local else "network")
        # Other hosts and containers allowed by CIDR have no socket here; a local process
        # using one of this machine's addresses does, and is held to the owner rule.
        sock = transport.get_extra_info("socket")
        uid, refusal = self.owners.check(address, sock, elsewhere=not local)
        if refusal is not None:
            return Peer(address, uid, refusal, "refused")
        return Peer(address, uid, None, "owner" if uid is not None else "network")

    def _bad_request(self, message: str) -> None:
        log.debug("bad HTTP from a client: %s", printable(message))

    # -- requests ----------------------------------------------------------------------------
    def handle(self, request: Request) -> Reply | Awaitable[Reply]:
        """The reply to one request: bytes now, or an awaitable when it has to wait."""
        if request.path == RELAY_PATH and self.options.relay_token:
            return self._relay(request)
        refusal = request.peer.refusal or self._refusal(request)
        if refusal:
            return self._refuse(request, refusal)
        if self.ecs is not None and request.path.startswith(ECS_PREFIX):
            return self._ecs(request, self.ecs)
        segments = self._normalised(request.path)
        if len(segments) == 3 and segments[1:] == ["api", "token"]:
            return self._token(request, segments[0])
        if request.method not in ("GET", "HEAD"):
            return self._error(request, 405, "Method Not Allowed", Allow="GET, HEAD, OPTIONS")
        token = request.headers.get(TOKEN_HEADER)
        if token is None and self.options.tokens_required:
            return self._error(request, 401, "Unauthorized")
        if token is not None and self.tokens.remaining(token) is None:
            return self._error(request, 401, "Unauthorized")
        return self._route(request, segments)

    def _normalised(self, path: str) -> list[str]:
        """`metadata.normalise(path)`, remembered: SDKs ask for the same few paths. The
        lists are shared, and nothing that routes a request changes them."""
        segments = self._segments.get(path)
        if segments is None:
            segments = _keep(self._segments, path, metadata.normalise(path))
        return segments

    def _refusal(self, request: Request) -> str | None:
        """The per-request guards. An absolute-form target names a host as Host does, so
        the Host rule applies to it too (RFC 9112 §3.2.2: it then stands for Host)."""
        guard = self.guard
        return (
            guard.host_refusal(request.headers.get("Host"))
            or (guard.host_refusal(request.authority) if request.authority else None)
            or guard.browser_refusal(request.headers)
            or guard.proxy_refusal(request.headers)
        )

    def _reply(
        self,
        request: Request,
        status: int,
        body: bytes,
        content_type: str = metadata.TEXT,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> Reply:
        date = self.server.clock.date()
        key = (status, body, content_type, extra, request.http10, request.close)
        rendered = self._rendered.get(date, key)
        if rendered is None:
            top = head(
                status,
                len(body),
                content_type,
                (*BASE_HEADERS, *extra),
                date,
                http10=request.http10,
                close=request.close,
            )
            rendered = self._rendered.put(key, (top, top + body))
        return rendered[0] if request.method == "HEAD" else rendered[1]

    def _error(self, request: Request, status: int, reason: str, **extra: str) -> Reply:
        return self._reply(
            request,
            status,
            metadata.error_page(status, reason),
            metadata.HTML,
            tuple(extra.items()),
        )

    def _refuse(self, request: Request, reason: str) -> Reply:
        """403 and close: a refused peer keeps no connection (and no slot)."""
        peer = request.peer
        host = peer.address[0] if peer.address else "?"
        local = peer.uid is not None or self.guard.is_local(host)
        if peer.uid is not None:
            who = key = f"uid {peer.uid}"
        else:
            # Counted as one: any local user can send from any 127.x address.
            who = f"peer {host}"
            key = "a local peer of unknown owner" if local else who
        self.refusals.refused(who, request.method, request.target, reason, key, local=local)
        request.close = True
        return self._reply(request, 403, f"Forbidden: {reason}".encode())

    def _json(self, request: Request, status: int, doc: object) -> Reply:
        return self._reply(request, status, json.dumps(doc).encode(), JSON)

    async def _relay(self, request: Request) -> Reply:
        """Credentials for a relay in Docker Desktop's VM, which reaches this listener as
        host.docker.internal: no Host check (that name is not the metadata address), but
        the peer and owner rules and the browser and proxy checks hold as for any request,
        and the token must match."""
        guard = self.guard
        refusal = (
            request.peer.refusal
            or guard.browser_refusal(request.headers)
            or guard.proxy_refusal(request.headers)
        )
        given = request.headers.get("Authorization")
        expected = self.options.relay_token or ""
        if refusal or not same_secret(given, expected):
            return self._refuse(request, refusal or "bad relay token")
        creds = await self.broker.wait_current(WAIT_FOR_REFRESH)
        slot = self.broker.active_slot()
        if creds is None or slot is None or slot.plan is None:
            return self._json(request, 503, {"error": "unavailable"})
        return self._json(request, 200, document(slot.plan, creds))

    async def _ecs(self, request: Request, ecs: EcsApp) -> Reply:
        answer: web.Response = await ecs.handle(request)
        body = answer.body if isinstance(answer.body, bytes) else b""
        content_type = answer.headers.get("Content-Type", metadata.TEXT)
        return self._reply(request, answer.status, body, content_type)

    def _token(self, request: Request, version: str) -> Reply:
        if request.method != "PUT":
            return self._error(request, 405, "Method Not Allowed", Allow="OPTIONS, PUT")
        if version != "latest":
            return self._error(request, 403, "Forbidden")
        ttl = parse_ttl(request.headers.get(TTL_HEADER))
        if ttl is None:
            return self._error(request, 400, "Missing or Invalid Parameters")
        token = self.tokens.issue(ttl).encode("ascii")
        return self._reply(request, 200, token, metadata.TEXT, ((TTL_HEADER, str(ttl)),))

    def _route(self, request: Request, segments: list[str]) -> Reply | Awaitable[Reply]:
        slot = self.broker.active_slot()
        if slot is None or slot.plan is None:
            return self._answer(request, metadata.route(segments, None, None))
        prepared = self._prepare(slot.plan, slot.creds)
        known = prepared.routes.get(request.path)
        if known is None:
            known = _keep(prepared.routes, request.path, self._route_prepared(segments, prepared))
        wants_creds, reply = known
        if not wants_creds:
            return self._answer(request, reply)
        # The credentials path: `current()` starts a refresh that is due, and says whether
        # the set the prepared answer was built from may still be served.
        if self.broker.current() is not None:
            return self._answer(request, reply)
        if slot.task is not None:
            return self._route_after_refresh(request, segments)
        return self._answer(request, self._unavailable(segments, prepared))

    def _route_prepared(
        self, segments: list[str], prepared: _Prepared
    ) -> tuple[bool, metadata.Reply]:
        """Whether `segments` asks for credentials, and the answer while the prepared set
        is served."""
        wants_creds = (
            len(segments) == 5
            and segments[2] == "iam"
            and segments[3] in ("security-credentials", "security-credentials-extended")
        )
        extended = self.options.serve_extended
        if not wants_creds:
            return False, metadata.route(segments, prepared.instance, None, extended=extended)
        reply = metadata.route(
            segments,
            prepared.instance,
            prepared.body,
            extended=extended,
            extended_body=prepared.extended,
        )
        return True, reply

    async def _route_after_refresh(self, request: Request, segments: list[str]) -> Reply:
        await self.broker.wait_current(WAIT_FOR_REFRESH)
        # Answer from the profile active now, with its own credentials: a switch during the
        # wait must not pair the new profile's plan with the old profile's set.
        slot = self.broker.active_slot()
        if slot is None or slot.plan is None:
            return self._answer(request, metadata.route(segments, None, None))
        prepared = self._prepare(slot.plan, slot.creds)
        if self.broker.current() is None:
            return self._answer(request, self._unavailable(segments, prepared))
        return self._answer(request, self._route_prepared(segments, prepared)[1])

    def _unavailable(self, segments: list[str], prepared: _Prepared) -> metadata.Reply:
        """The answer while nothing may be served: IMDS's error document with the reason,
        on the paths of the prepared instance (the set it holds may be served again)."""
        status = self.broker.status()
        body = metadata.unavailable_body(status_words.message(status), status.now)
        extended = self.options.serve_extended
        return metadata.route(
            segments, prepared.instance, body, extended=extended, extended_body=body
        )

    def _answer(self, request: Request, reply: metadata.Reply) -> Reply:
        return self._reply(request, reply.status, reply.body, reply.content_type)

    def _prepare(self, plan: Plan, creds: Credentials | None) -> _Prepared:
        """Everything a request needs, built once per (plan, credentials) pair."""
        prepared = self._prepared
        if prepared.plan is plan and prepared.creds is creds:
            return prepared
        instance = metadata.Instance(
            profile=plan.target,
            role_name=plan.role_name,
            region=plan.region,
            account_id=_account(plan.role_arn, creds),
            last_updated=iso8601(creds.issued) if creds else "",
        )
        body = metadata.credentials_body(creds) if creds else b""
        extended = (
            metadata.credentials_body(creds, instance.account_id)
            if creds and self.options.serve_extended
            else b""
        )
        self._prepared = prepared = _Prepared(plan, creds, instance, body, extended)
        return prepared


def _keep(table: dict[str, T], path: str, value: T) -> T:
    """Remember `value` for request path `path` in `table`; returns it. A table holding
    ROUTES_KEPT paths is emptied first: a tree walker or junk must not make it grow, nor
    keep the SDKs' few paths out."""
    if len(table) >= ROUTES_KEPT:
        table.clear()
    table[path] = value
    return value


def _account(role_arn: str | None, creds: Credentials | None) -> str:
    for arn in (role_arn, creds.arn if creds else None):
        if arn and arn.count(":") >= 5:
            account = arn.split(":")[4]
            if account.isdigit():
                return account
    return metadata.DEFAULT_ACCOUNT
