"""The JSON control API on the Unix socket (`/v1/...`), for the `vaultd` command.

Only the daemon's own user may talk to it: the socket lives in a 0700 directory, is itself
0600, and every connection's peer uid is checked again here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from vaultd.client import peer_credentials, peer_uid
from vaultd.core.broker import Broker
from vaultd.core.credentials import document
from vaultd.errors import BadRequest, VaultdError
from vaultd.http import status as status_words
from vaultd.http.ecs import PATH_PREFIX as ECS_PREFIX
from vaultd.http.exec_tokens import ExecTokens
from vaultd.http.reading import BODY_DEADLINE, ClientFaultLog, read_json_object

log = logging.getLogger("vaultd.control")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_BODY_DEADLINE = web.AppKey("body_deadline", float)


def _json(status: int, payload: dict[str, Any]) -> web.Response:
    return web.json_response(payload, status=status)


def _error(exc: VaultdError) -> web.Response:
    return _json(exc.http_status, exc.to_json())


async def _body(request: web.Request) -> dict[str, Any]:
    return await read_json_object(request, deadline=request.config_dict[_BODY_DEADLINE])


def _required(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{key!r} must be a non-empty string")
    return value


def _optional(body: dict[str, Any], key: str) -> str | None:
    return None if body.get(key) is None else _required(body, key)


class ControlApp:
    """Translates HTTP to broker calls and the broker's answers to JSON; nothing else.

    `info` adds the daemon's own facts (version, listeners, ...) to every status document;
    `exec_tokens` keeps the tokens the container-credentials surface accepts; `endpoint` is
    the IMDS listener's URL once bound.
    """

    def __init__(
        self,
        broker: Broker,
        info: Callable[[], dict[str, Any]],
        *,
        exec_tokens: ExecTokens | None = None,
        endpoint: Callable[[], str] = lambda: "http://127.0.0.1:9169/",
        body_deadline: float = BODY_DEADLINE,
    ) -> None:
        self.body_deadline = body_deadline
        self.exec_tokens = exec_tokens
        self.grants = exec_tokens.grants if exec_tokens else None
        self.endpoint = endpoint
        self.broker = broker
        self.info = info
        self.uid = os.getuid()

    def runner(self) -> web.AppRunner:
        """The app with its server options: no access log, malformed HTTP logged as the
        client's fault, and no lingering to drain a body it refused (a client trickling one,
        cut off at the deadline, is closed at once)."""
        return web.AppRunner(
            self.app(),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=5,
            lingering_time=0,
            logger=ClientFaultLog(log),
        )

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024)
        app[_BODY_DEADLINE] = self.body_deadline
        app.router.add_get("/v1/status", self.status)
        app.router.add_get("/v1/profiles", self.profiles)
        app.router.add_post("/v1/switch", self.switch)
        app.router.add_post("/v1/mfa", self.mfa)
        app.router.add_post("/v1/refresh", self.refresh)
        app.router.add_post("/v1/clear", self.clear)
        app.router.add_get("/v1/credentials", self.credentials)
        app.router.add_post("/v1/credentials", self.profile_credentials)
        app.router.add_post("/v1/console-credentials", self.console_credentials)
        app.router.add_post("/v1/exec-tokens", self.exec_token)
        app.router.add_delete("/v1/exec-tokens/{id}", self.revoke_exec_token)
        app.router.add_post("/v1/exec-tokens/{id}/renew", self.renew_exec_token)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        sock = request.transport.get_extra_info("socket") if request.transport else None
        uid = peer_uid(sock) if sock is not None else None
        if uid is not None and uid != self.uid:
            log.warning("control connection from uid %d refused", uid)
            return _json(403, {"error": "forbidden", "message": "another user's vaultd"})
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return _json(404, {"error": "not_found", "message": f"no such call {request.path}"})
        except web.HTTPMethodNotAllowed:
            return _json(405, {"error": "method_not_allowed", "message": "wrong method"})
        except web.HTTPRequestEntityTooLarge:
            return _json(413, {"error": "too_large", "message": "request body too large"})
        except VaultdError as exc:
            return _error(exc)
        except Exception as exc:
            log.exception("control %s failed", request.path)
            return _json(500, {"error": "internal", "message": type(exc).__name__})

    def _status(self) -> dict[str, Any]:
        grants = self.grants.by_profile() if self.grants else {}
        return {**status_words.document(self.broker.status()), **self.info(), "exec_tokens": grants}

    async def status(self, request: web.Request) -> web.Response:
        return _json(200, self._status())

    async def profiles(self, request: web.Request) -> web.Response:
        rows = await self.broker.profiles(self.grants.by_profile() if self.grants else {})
        return _json(200, {"profiles": rows})

    async def switch(self, request: web.Request) -> web.Response:
        body = await _body(request)
        profile = _required(body, "profile")
        code = _optional(body, "mfa_code")
        await self.broker.switch(profile, code)
        log.info("switched to %s", profile)
        return _json(200, self._status())

    async def mfa(self, request: web.Request) -> web.Response:
        body = await _body(request)
        code = _required(body, "code")
        # The device the person was asked about, when the client knows it (a prompt).
        slot = await self.broker.submit_mfa(code, _optional(body, "serial"))
        # Whose request the code answered: not the active profile when an exec's was open.
        return _json(200, {**self._status(), "answered": slot.profile})

    async def refresh(self, request: web.Request) -> web.Response:
        body = await _body(request)
        await self.broker.refresh(_optional(body, "profile"))
        return _json(200, self._status())

    async def profile_credentials(self, request: web.Request) -> web.Response:
        """One profile's temporary credentials, for `vaultd export` and `exec --env`."""
        body = await _body(request)
        profile = _required(body, "profile")
        plan, creds = await self.broker.ensure(profile, _optional(body, "mfa_code"))
        # Only a region the profile's config names: the caller's own environment decides
        # otherwise (botocore: environment over config), and vaultd invents none.
        return _json(200, {**document(plan, creds), "Region": plan.config_region})

    async def credentials(self, request: web.Request) -> web.Response:
        """The active profile's temporary credentials (never long-lived keys), for `vaultd
        relay`. Only this user can reach the socket, and they could ask IMDS anyway."""
        creds = await self.broker.wait_current(2.0)
        slot = self.broker.active_slot()
        if creds is None or slot is None or slot.plan is None:
            status = self.broker.status()
            return _json(503, {"error": status.state, "message": status_words.message(status)})
        return _json(200, document(slot.plan, creds))

    async def console_credentials(self, request: web.Request) -> web.Response:
        """Credentials for a console sign-in: the role's own set, or for a profile with no
        role a GetFederationToken set (role session credentials cannot federate)."""
        body = await _body(request)
        profile = _optional(body, "profile") or self.broker.active
        if profile is None:
            raise BadRequest("no profile given and none is active")
        duration = body.get("duration", 3600)
        if not isinstance(duration, int) or not 900 <= duration <= 43200:
            raise BadRequest("duration must be whole seconds between 900 and 43200")
        code = _optional(body, "mfa_code")
        plan, creds = await self.broker.console_credentials(profile, duration, code)
        return _json(200, {**document(plan, creds), "IsRole": bool(plan.roles)})

    async def exec_token(self, request: web.Request) -> web.Response:
        """A token for `vaultd exec`'s child, bound to the connecting process (its pid from
        SO_PEERCRED) and living `expires_in` seconds unless renewed."""
        if self.exec_tokens is None:
            raise BadRequest("this daemon serves no exec tokens")
        body = await _body(request)
        profile = _required(body, "profile")
        plan, _ = await self.broker.ensure(profile, _optional(body, "mfa_code"))
        sock = request.transport.get_extra_info("socket") if request.transport else None
        peer = peer_credentials(sock)
        grant, token = self.exec_tokens.issue(profile, peer[0] if peer else None)
        log.info("exec token %s issued for %s", grant.id, profile)
        return _json(
            200,
            {
                "id": grant.id,
                "token": token,
                "url": self.endpoint() + ECS_PREFIX.lstrip("/") + "v1/credentials",
                "profile": profile,
                "region": plan.config_region,
                "role_arn": plan.role_arn,
                "expires_in": int(grant.expires - self.exec_tokens.grants.clock()),
            },
        )

    async def renew_exec_token(self, request: web.Request) -> web.Response:
        tokens = self.exec_tokens
        grant = tokens.renew(request.match_info["id"]) if tokens else None
        if grant is None or tokens is None:
            return _json(404, {"error": "not_found", "message": "no such exec token"})
        return _json(
            200, {"id": grant.id, "expires_in": int(grant.expires - tokens.grants.clock())}
        )

    async def revoke_exec_token(self, request: web.Request) -> web.Response:
        gid = request.match_info["id"]
        grant = self.exec_tokens.end(gid, "revoked") if self.exec_tokens else None
        if grant is None:
            return _json(404, {"error": "not_found", "message": "no such exec token"})
        return _json(200, {"revoked": grant.id})

    async def clear(self, request: web.Request) -> web.Response:
        body = await _body(request)
        dropped = await self.broker.clear_sessions(_optional(body, "profile"))
        return _json(200, {**self._status(), "cleared_sessions": dropped})
