"""The control API: JSON in, JSON out, every error as {"error", "message"}."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.helpers import FakeClock, FakeProvider
from vaultd.core import config, inventory
from vaultd.core.broker import Broker
from vaultd.core.credentials import AccessKeys
from vaultd.core.keystore import Keystore
from vaultd.core.resolve import Plan
from vaultd.errors import UnknownProfile
from vaultd.http.control import ControlApp
from vaultd.secret import Secret

AioClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


class ConfigProvider(FakeProvider):
    """A scripted provider that still refuses profiles the config does not have, and keeps
    its sessions in the (test) keyring."""

    def plan(self, name: str) -> Plan:
        config.get_profile(config.load_profiles(), name)
        return super().plan(name)

    def drop_sessions(self, profile: str | None) -> tuple[list[str], int]:
        return inventory.clear_sessions(Keystore(), config.load_profiles, profile)

    def inventory(self, active: str | None, exec_tokens: Mapping[str, int]) -> list[dict[str, Any]]:
        profiles = config.load_profiles()
        now = self.clock()
        return inventory.profile_rows(
            profiles, Keystore(), active=active, exec_tokens=exec_tokens, now=now
        )


@pytest.fixture
async def control(
    aiohttp_client: AioClient, clock: FakeClock, aws_config: Path
) -> tuple[TestClient[Any, Any], ConfigProvider]:
    provider = ConfigProvider(clock, needs_mfa=True)
    app = ControlApp(Broker(provider, clock), lambda: {"pid": 1})
    return await aiohttp_client(app.app()), provider


async def test_switch_mfa_status_flow(control: tuple[TestClient[Any, Any], ConfigProvider]) -> None:
    client, _ = control
    r = await client.post("/v1/switch", json={"profile": "master"})
    assert r.status == 409
    body = await r.json()
    assert body["error"] == "mfa_required" and body["mfa_serial"]
    r = await client.post("/v1/mfa", json={"code": "000000"})
    assert (r.status, (await r.json())["error"]) == (422, "mfa_rejected")
    # A code typed for another device than the open request's: refused, not sent.
    r = await client.post("/v1/mfa", json={"code": "123456", "serial": "arn:aws:iam::9:mfa/x"})
    assert (r.status, (await r.json())["error"]) == (409, "mfa_request_changed")
    r = await client.post("/v1/mfa", json={"code": "123456", "serial": 7})
    assert (r.status, (await r.json())["error"]) == (400, "bad_request")
    r = await client.post("/v1/mfa", json={"code": "123456", "serial": body["mfa_serial"]})
    assert (r.status, (await r.json())["answered"]) == (200, "master")
    status = await (await client.get("/v1/status")).json()
    assert status["state"] == "ok" and status["active"] == "master" and status["pid"] == 1
    r = await client.post("/v1/refresh")
    assert r.status == 200


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "error"),
    [
        ("POST", "/v1/switch", b"{nope", 400, "bad_request"),
        ("POST", "/v1/switch", b"[1]", 400, "bad_request"),
        ("POST", "/v1/switch", b'{"profile": 7}', 400, "bad_request"),
        ("POST", "/v1/switch", b'{"profile": "ghost"}', 404, "unknown_profile"),
        ("POST", "/v1/mfa", b'{"code": "123456"}', 409, "no_pending_mfa"),
        ("POST", "/v1/mfa", b'{"code": "12"}', 409, "no_pending_mfa"),
        ("POST", "/v1/refresh", b"", 409, "no_profile"),
        ("GET", "/v1/nothing", b"", 404, "not_found"),
        ("GET", "/v1/switch", b"", 405, "method_not_allowed"),
        ("POST", "/v1/switch", b"x" * 100_000, 413, "too_large"),
    ],
)
async def test_errors_are_json(
    control: tuple[TestClient[Any, Any], ConfigProvider],
    method: str,
    path: str,
    payload: bytes,
    status: int,
    error: str,
) -> None:
    client, _ = control
    r = await client.request(
        method, path, data=payload, headers={"Content-Type": "application/json"}
    )
    body = await r.json()
    assert (r.status, body["error"]) == (status, error)
    assert body["message"] and "\n" not in body["message"]


async def test_profiles_and_clear(control: tuple[TestClient[Any, Any], ConfigProvider]) -> None:
    client, _ = control
    Keystore().set_keys("identity", AccessKeys("AKIAEXAMPLE000000001", Secret("s" * 40)))
    rows = (await (await client.get("/v1/profiles")).json())["profiles"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["identity"]["has_keys"] and not by_name["master"]["has_keys"]
    assert "s" * 40 not in str(rows)
    r = await client.post("/v1/clear")
    assert r.status == 200
    assert (await r.json())["cleared_sessions"] == 0


def test_unknown_profile_error_shape() -> None:
    err = UnknownProfile("no profile 'x'")
    assert err.to_json() == {"error": "unknown_profile", "message": "no profile 'x'"}
    assert err.http_status == 404
