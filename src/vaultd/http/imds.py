"""The IMDS HTTP surface: token endpoint, guards, and the metadata tree from `metadata`.

Served with aiohttp's low-level server behind our own protocol factory, which is where the
resource bounds live: a cap on open connections, and a deadline by which an open connection
must have sent a complete request (slow or idle clients are closed). The credentials
document is rendered once per credential set and served as prepared bytes; nothing is
logged per request at the default level.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import socket
import sys
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from vaultd.core.broker import Broker
from vaultd.core.credentials import Credentials, document, iso8601
from vaultd.core.resolve import Plan
from vaultd.host.peer_owner import owner_of
from vaultd.http import metadata
from vaultd.http import status as status_words
from vaultd.http.ecs import PATH_PREFIX as ECS_PREFIX
from vaultd.http.ecs import EcsApp
from vaultd.http.guards import Guard
from vaultd.http.tokens import Tokens, parse_ttl

log = logging.getLogger("vaultd.imds")
TOKEN_HEADER: Final = "X-aws-ec2-metadata-token"  # noqa: S105 - a header name
TTL_HEADER: Final = "X-aws-ec2-metadata-token-ttl-seconds"
BASE_HEADERS: Final = {"Server": "EC2ws", "Accept-Ranges": "none"}
RELAY_PATH: Final = "/vaultd-relay/v1/credentials"
# How long a request may wait for a refresh already under way (SDK timeouts are ~1 s).
WAIT_FOR_REFRESH: Final = 0.5
REFUSED_OVER_CAP: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nServer: EC2ws\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n"
)


@dataclass(frozen=True)
class ImdsOptions:
    tokens_required: bool = False
    # Linux: serve only loopback peers whose socket belongs to one of these uids.
    uid_check: bool = sys.platform.startswith("linux")
    allow_uids: frozenset[int] = field(default_factory=lambda: frozenset({os.getuid()}))
    serve_extended: bool = False
    # Docker Desktop relays fetch from this path with this token (see `vaultd relay`).
    relay_token: str | None = None
    max_connections: int = 256
    # A connection that completes no request in this long is closed (slow or idle clients).
    request_deadline: float = 10.0
    max_headers: int = 64
    max_field_size: int = 8190


@dataclass
class _Prepared:
    plan: Plan | None = None
    creds: Credentials | None = None
    instance: metadata.Instance | None = None
    body: bytes = b""
    extended: bytes = b""


def _reply(
    status: int, body: bytes, content_type: str = metadata.TEXT, **extra: str
) -> web.Response:
    return web.Response(
        status=status, body=body, content_type=content_type, headers={**BASE_HEADERS, **extra}
    )


def _error(status: int, reason: str, **extra: str) -> web.Response:
    return _reply(status, metadata.error_page(status, reason), metadata.HTML, **extra)


class _Connection(RequestHandler):
    """aiohttp's protocol plus the bookkeeping for deadlines and the owner check."""

    __slots__ = ("vd_busy", "vd_deadline", "vd_last_seen", "vd_refusal", "vd_seen", "vd_timer")

    def __init__(self, manager: web.Server, deadline: float, **kwargs: object) -> None:
        super().__init__(manager, **kwargs)  # type: ignore[arg-type]
        self.vd_seen = 0
        self.vd_last_seen = -1
        self.vd_busy = 0
        self.vd_refusal: str | bool | None = False  # False: not checked yet
        self.vd_deadline = deadline
        self.vd_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.vd_timer is not None:
            self.vd_timer.cancel()
            self.vd_timer = None
        super().connection_lost(exc)

    def log_exception(self, *args: object, **kwargs: object) -> None:
        # Malformed HTTP is the client's problem: one line at debug, not a traceback.
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            first = (exc.message or type(exc).__name__).splitlines()[0]
            log.debug("bad HTTP from a client (%d): %s", exc.code, first)
            return
        super().log_exception(*args, **kwargs)

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self.vd_timer = loop.call_later(self.vd_deadline, self._check)

    def _check(self) -> None:
        if self.vd_busy == 0 and self.vd_seen == self.vd_last_seen:
            if self.transport is not None:
                self.transport.close()
            self.vd_timer = None
            return
        self.vd_last_seen = self.vd_seen
        self._arm()


class _Refused(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(REFUSED_OVER_CAP)
        transport.close()


class ImdsApp:
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
        self.options = options or ImdsOptions()
        self._prepared = _Prepared()
        self._server: web.Server | None = None
        self._listeners: list[asyncio.Server] = []
        self._refused_over_cap = 0

    # -- serving ---------------------------------------------------------------------------
    async def start(
        self, host: str | None = None, port: int | None = None, sock: socket.socket | None = None
    ) -> asyncio.Server:
        """Listen on host:port, or on an inherited socket (socket activation)."""
        loop = asyncio.get_running_loop()
        opts = self.options
        if self._server is None:
            self._server = web.Server(self.handle, access_log=None)
        server = self._server

        def protocol() -> asyncio.Protocol:
            if len(server.connections) >= opts.max_connections:
                self._refused_over_cap += 1
                if self._refused_over_cap in (1, 100, 10000):
                    log.warning("connection cap %d reached; refusing", opts.max_connections)
                return _Refused()
            return _Connection(
                server,
                opts.request_deadline,
                loop=loop,
                keepalive_timeout=opts.request_deadline,
                access_log=None,
                max_headers=opts.max_headers,
                max_field_size=opts.max_field_size,
                max_line_size=opts.max_field_size,
            )

        if sock is not None:
            listener = await loop.create_server(protocol, sock=sock)
        else:
            listener = await loop.create_server(protocol, host, port or 0, reuse_address=True)
        self._listeners.append(listener)
        return listener

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop accepting, let requests in flight finish, close the rest."""
        for listener in self._listeners:
            listener.close()
        for listener in self._listeners:
            await listener.wait_closed()
        self._listeners.clear()
        if self._server is not None:
            await self._server.shutdown(grace)

    # -- requests ----------------------------------------------------------------------------
    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        conn = request.protocol if isinstance(request.protocol, _Connection) else None
        if conn is None:
            return await self._handle(request, None)
        conn.vd_seen += 1
        conn.vd_busy += 1
        try:
            return await self._handle(request, conn)
        finally:
            conn.vd_busy -= 1

    def _refuse(self, request: web.BaseRequest, reason: str) -> web.Response:
        log.warning("refused %s %s: %s", request.method, request.path, reason)
        return _reply(403, f"Forbidden: {reason}".encode(), metadata.TEXT)

    def _connection_refusal(
        self, peer: tuple[str, int] | None, conn: _Connection | None
    ) -> str | None:
        """Who is at the other end (address, and on Linux the owning uid): the same for
        every request on a connection, so worked out once per connection."""
        if conn is not None and conn.vd_refusal is not False:
            return conn.vd_refusal if isinstance(conn.vd_refusal, str) else None
        reason = self.guard.peer_refusal(peer[0] if peer else None) or self._owner_refusal(peer)
        if conn is not None:
            conn.vd_refusal = reason
        return reason

    def _owner_refusal(self, peer: tuple[str, int] | None) -> str | None:
        if not self.options.uid_check or peer is None or not self.guard.is_local(peer[0]):
            return None  # peers allowed by CIDR are other hosts or containers: no /proc entry
        uid = owner_of(peer[0], peer[1])
        if uid is None:
            reason: str | None = "the owner of the connection cannot be determined"
        elif uid not in self.options.allow_uids:
            reason = f"connection owned by uid {uid}, which is not allowed"
        else:
            reason = None
        return reason

    async def _handle(self, request: web.BaseRequest, conn: _Connection | None) -> web.Response:
        transport = request.transport
        peername = transport.get_extra_info("peername") if transport else None
        peer = (str(peername[0]), int(peername[1])) if peername else None
        if request.path == RELAY_PATH and self.options.relay_token:
            return await self._relay(request, peer)
        refusal = (
            self._connection_refusal(peer, conn)
            or self.guard.host_refusal(request.headers.get("Host"))
            or self.guard.browser_refusal(request.headers)
        )
        if refusal:
            return self._refuse(request, refusal)
        if self.ecs is not None and request.path.startswith(ECS_PREFIX):
            return await self.ecs.handle(request)
        segments = metadata.normalise(request.path)
        if len(segments) == 3 and segments[1:] == ["api", "token"]:
            return self._token(request, segments[0])
        if request.method not in ("GET", "HEAD"):
            return _error(405, "Method Not Allowed", Allow="GET, HEAD, OPTIONS")
        token = request.headers.get(TOKEN_HEADER)
        if token is None and self.options.tokens_required:
            return _error(401, "Unauthorized")
        if token is not None and self.tokens.remaining(token) is None:
            return _error(401, "Unauthorized")
        reply = await self._route(segments)
        return _reply(reply.status, reply.body, reply.content_type)

    async def _relay(self, request: web.BaseRequest, peer: tuple[str, int] | None) -> web.Response:
        """Credentials for a relay in Docker Desktop's VM, which reaches this listener as
        host.docker.internal: no Host check, the token is the guard."""
        refusal = self.guard.peer_refusal(peer[0] if peer else None)
        given = request.headers.get("Authorization", "")
        expected = self.options.relay_token or ""
        if refusal or not hmac.compare_digest(given.encode(), expected.encode()):
            return self._refuse(request, refusal or "bad relay token")
        creds = await self.broker.wait_current(WAIT_FOR_REFRESH)
        slot = self.broker.active_slot()
        if creds is None or slot is None or slot.plan is None:
            return web.json_response({"error": "unavailable"}, status=503)
        return web.json_response(document(slot.plan, creds))

    def _token(self, request: web.BaseRequest, version: str) -> web.Response:
        if request.method != "PUT":
            return _error(405, "Method Not Allowed", Allow="OPTIONS, PUT")
        if version != "latest":
            return _error(403, "Forbidden")
        if "X-Forwarded-For" in request.headers:
            return _error(403, "Forbidden")
        ttl = parse_ttl(request.headers.get(TTL_HEADER))
        if ttl is None:
            return _error(400, "Missing or Invalid Parameters")
        return _reply(200, self.tokens.issue(ttl).encode("ascii"), **{TTL_HEADER: str(ttl)})

    async def _route(self, segments: list[str]) -> metadata.Reply:
        slot = self.broker.active_slot()
        if slot is None or slot.plan is None:
            return metadata.route(segments, None, None)
        wants_creds = (
            len(segments) == 5
            and segments[2] == "iam"
            and segments[3] in ("security-credentials", "security-credentials-extended")
        )
        creds = await self.broker.wait_current(WAIT_FOR_REFRESH) if wants_creds else slot.creds
        prepared = self._prepare(slot.plan, creds)
        extended = self.options.serve_extended
        if not wants_creds:
            return metadata.route(segments, prepared.instance, None, extended=extended)
        if creds is None:
            status = self.broker.status()
            body = metadata.unavailable_body(status_words.message(status), status.now)
            return metadata.route(
                segments, prepared.instance, body, extended=extended, extended_body=body
            )
        return metadata.route(
            segments,
            prepared.instance,
            prepared.body,
            extended=extended,
            extended_body=prepared.extended,
        )

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


def _account(role_arn: str | None, creds: Credentials | None) -> str:
    for arn in (role_arn, creds.arn if creds else None):
        if arn and arn.count(":") >= 5:
            account = arn.split(":")[4]
            if account.isdigit():
                return account
    return metadata.DEFAULT_ACCOUNT
