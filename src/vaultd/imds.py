"""The IMDS HTTP surface: token endpoint, guards, and the metadata tree from `metadata`.

The credentials document is rendered once per credential set and served as prepared bytes;
nothing is logged per request at the default level.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from vaultd import metadata
from vaultd.broker import Broker
from vaultd.credentials import Credentials, iso8601
from vaultd.guards import Guard
from vaultd.tokens import Tokens, parse_ttl

log = logging.getLogger("vaultd.imds")
TOKEN_HEADER: Final = "X-aws-ec2-metadata-token"  # noqa: S105 - a header name
TTL_HEADER: Final = "X-aws-ec2-metadata-token-ttl-seconds"
BASE_HEADERS: Final = {"Server": "EC2ws", "Accept-Ranges": "none"}
# How long a request may wait for a refresh already under way (SDK timeouts are ~1 s).
WAIT_FOR_REFRESH: Final = 0.5


@dataclass
class _Prepared:
    creds: Credentials | None = None
    body: bytes = b""


def _reply(
    status: int, body: bytes, content_type: str = metadata.TEXT, **extra: str
) -> web.Response:
    return web.Response(
        status=status, body=body, content_type=content_type, headers={**BASE_HEADERS, **extra}
    )


def _error(status: int, reason: str, **extra: str) -> web.Response:
    return _reply(status, metadata.error_page(status, reason), metadata.HTML, **extra)


class ImdsApp:
    def __init__(
        self,
        broker: Broker,
        tokens: Tokens,
        guard: Guard,
        *,
        tokens_required: bool = False,
    ) -> None:
        self.broker = broker
        self.tokens = tokens
        self.guard = guard
        self.tokens_required = tokens_required
        self._prepared = _Prepared()

    def app(self) -> web.Application:
        app = web.Application(handler_args={"max_field_size": 8190, "max_headers": 64})
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def _refuse(self, request: web.Request, reason: str) -> web.Response:
        log.warning("refused %s %s: %s", request.method, request.path, reason)
        return _reply(403, f"Forbidden: {reason}".encode(), metadata.TEXT)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        refusal = (
            self.guard.peer_refusal(peer[0] if peer else None)
            or self.guard.host_refusal(request.headers.get("Host"))
            or self.guard.browser_refusal(request.headers)
        )
        if refusal:
            return self._refuse(request, refusal)
        segments = metadata.normalise(request.path)
        if len(segments) == 3 and segments[1:] == ["api", "token"]:
            return self._token(request, segments[0])
        if request.method not in ("GET", "HEAD"):
            return _error(405, "Method Not Allowed", Allow="GET, HEAD, OPTIONS")
        token = request.headers.get(TOKEN_HEADER)
        if token is None and self.tokens_required:
            return _error(401, "Unauthorized")
        if token is not None and self.tokens.remaining(token) is None:
            return _error(401, "Unauthorized")
        reply = await self._route(segments)
        return _reply(reply.status, reply.body, reply.content_type)

    def _token(self, request: web.Request, version: str) -> web.Response:
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
        plan = slot.plan
        wants_creds = len(segments) == 5 and segments[2:4] == ["iam", "security-credentials"]
        creds = await self.broker.wait_current(WAIT_FOR_REFRESH) if wants_creds else slot.creds
        account = _account(plan.role_arn, creds)
        instance = metadata.Instance(
            profile=plan.target,
            role_name=plan.role_name,
            region=plan.region,
            account_id=account,
            last_updated=iso8601(creds.issued) if creds else "",
        )
        if not wants_creds:
            return metadata.route(segments, instance, None)
        if creds is None:
            status = self.broker.status()
            body = metadata.unavailable_body(status["message"], self.broker.clock())
            return metadata.route(segments, instance, body)
        return metadata.route(segments, instance, self._body(creds))

    def _body(self, creds: Credentials) -> bytes:
        prepared = self._prepared
        if prepared.creds is not creds:
            self._prepared = prepared = _Prepared(creds, metadata.credentials_body(creds))
        return prepared.body


def _account(role_arn: str | None, creds: Credentials | None) -> str:
    for arn in (role_arn, creds.arn if creds else None):
        if arn and arn.count(":") >= 5:
            account = arn.split(":")[4]
            if account.isdigit():
                return account
    return metadata.DEFAULT_ACCOUNT
