"""The container-credentials surface for `vaultd exec` children.

SDKs read it as they do on ECS: from `AWS_CONTAINER_CREDENTIALS_FULL_URI`, sending
`AWS_CONTAINER_AUTHORIZATION_TOKEN` as the Authorization header (the SDKs' container
credential provider, as AWS's SDK reference guide describes it).

Each exec gets a grant: a random token bound to one profile, handed to the child as
AWS_CONTAINER_AUTHORIZATION_TOKEN and revoked when the child exits, when the `vaultd exec`
that asked for it exits, or when its lifetime runs out unrenewed (`vaultd.http.exec_tokens`).
Grants live in memory only, so a daemon restart revokes them all. The token is
`<id>.<secret>`; the id finds the grant and the secret is compared in constant time.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Final, Protocol

from aiohttp import web

from vaultd.core.broker import Broker
from vaultd.core.credentials import container_fields
from vaultd.http.guards import same_secret

PATH_PREFIX: Final = "/vaultd-ecs/"


class Incoming(Protocol):
    """What the handler reads of a request (the IMDS listener's parsed request)."""

    @property
    def method(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


WAIT_FOR_REFRESH: Final = 1.0


# How long an exec token lives unless `vaultd exec` renews it (it does every third of this):
# a backstop for when the daemon cannot watch the process that asked for it.
EXEC_TOKEN_LIFETIME: Final = 900.0


@dataclass(frozen=True)
class Grant:
    """One exec token: `profile` it serves, `expires` (epoch seconds) unless renewed, and
    `holder`, the pid of the `vaultd exec` that asked for it (None where unknown)."""

    id: str
    secret: str
    profile: str
    created: float
    expires: float
    holder: int | None = None


class Grants:
    """The exec tokens in memory. Pure: time comes from `clock` (epoch seconds)."""

    def __init__(self, clock: Callable[[], float], lifetime: float = EXEC_TOKEN_LIFETIME) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self._grants: dict[str, Grant] = {}

    def issue(self, profile: str, holder: int | None = None) -> tuple[Grant, str]:
        now = self.clock()
        grant = Grant(
            secrets.token_hex(8),
            secrets.token_urlsafe(32),
            profile,
            now,
            now + self.lifetime,
            holder,
        )
        self._grants[grant.id] = grant
        return grant, f"{grant.id}.{grant.secret}"

    def check(self, token: str | None) -> Grant | None:
        """The live grant this token (an Authorization header's text, any at all) names, or
        None (unknown, wrong secret, not UTF-8, or expired)."""
        gid, _, secret = (token or "").partition(".")
        grant = self._grants.get(gid)
        # Compare against something even for unknown ids, so timing says nothing.
        expected = grant.secret if grant else "x" * 43
        ok = same_secret(secret, expected)  # the token is header text: any bytes at all
        if not ok or grant is None or grant.expires <= self.clock():
            return None
        return grant

    def renew(self, gid: str) -> Grant | None:
        """Push a live grant's expiry to a full lifetime from now; None if it is gone."""
        grant = self._grants.get(gid)
        if grant is None or grant.expires <= self.clock():
            return None
        grant = replace(grant, expires=self.clock() + self.lifetime)
        self._grants[gid] = grant
        return grant

    def get(self, gid: str) -> Grant | None:
        return self._grants.get(gid)

    def revoke(self, gid: str) -> Grant | None:
        return self._grants.pop(gid, None)

    def by_profile(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for grant in self._grants.values():
            counts[grant.profile] = counts.get(grant.profile, 0) + 1
        return counts


def _error(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps({"Code": code, "Message": message}),
        content_type="application/json",
    )


class EcsApp:
    def __init__(self, broker: Broker, grants: Grants) -> None:
        self.broker = broker
        self.grants = grants

    async def handle(self, request: Incoming) -> web.Response:
        if request.method not in ("GET", "HEAD"):
            return _error(405, "MethodNotAllowed", "use GET")
        grant = self.grants.check(request.headers.get("Authorization"))
        if grant is None:
            return _error(403, "AccessDenied", "invalid Authorization token")
        creds = await self.broker.wait_for(grant.profile, WAIT_FOR_REFRESH)
        slot = self.broker.slots.get(grant.profile)
        if creds is None or slot is None:
            reason = slot.error.message if slot is not None and slot.error else "not ready yet"
            return _error(503, "CredentialsUnavailable", f"{grant.profile}: {reason}")
        role_arn = slot.plan.role_arn if slot.plan else None
        return web.json_response(container_fields(creds, role_arn))
