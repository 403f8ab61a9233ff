"""The IMDS surface over real HTTP (pytest-aiohttp), against a broker with a scripted provider."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.helpers import FakeClock, FakeProvider
from vaultd.broker import Broker
from vaultd.errors import MfaRequired
from vaultd.guards import Guard
from vaultd.imds import ImdsApp
from vaultd.tokens import Tokens

CREDS = "/latest/meta-data/iam/security-credentials/"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
AioClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


class Imds:
    def __init__(self, client: TestClient[Any, Any], imds: ImdsApp, provider: FakeProvider) -> None:
        self.client, self.imds, self.provider = client, imds, provider

    async def token(self, ttl: str = "21600") -> str:
        r = await self.client.put(
            "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": ttl}
        )
        assert r.status == 200
        return await r.text()


@pytest.fixture
async def make_imds(aiohttp_client: AioClient, clock: FakeClock) -> Callable[..., Awaitable[Imds]]:
    async def build(
        active: str | None = "master", required: bool = False, **provider_kw: Any
    ) -> Imds:
        provider = FakeProvider(clock, **provider_kw)
        broker = Broker(provider, clock)
        imds = ImdsApp(
            broker, Tokens(clock), Guard.for_listener("127.0.0.1", 1), tokens_required=required
        )
        client = await aiohttp_client(imds.app())
        assert client.port is not None
        imds.guard = Guard.for_listener("127.0.0.1", client.port)
        if active is not None:
            with contextlib.suppress(MfaRequired):  # a profile needing MFA still becomes active
                await broker.switch(active)
        return Imds(client, imds, provider)

    return build


async def test_token_put_echoes_ttl(make_imds: Callable[..., Awaitable[Imds]]) -> None:
    imds = await make_imds()
    for ttl in ("21600", "300", "1"):
        r = await imds.client.put(
            "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": ttl}
        )
        assert r.status == 200
        assert r.headers["X-aws-ec2-metadata-token-ttl-seconds"] == ttl
        assert r.headers["Server"] == "EC2ws"
        body = await r.text()
        assert body.isprintable() and 20 <= len(body) <= 100


@pytest.mark.parametrize("ttl", [None, "0", "21601", "-5", "abc", "1.5", "", " 5x"])
async def test_bad_ttl_is_400(make_imds: Callable[..., Awaitable[Imds]], ttl: str | None) -> None:
    imds = await make_imds()
    headers = {} if ttl is None else {"X-aws-ec2-metadata-token-ttl-seconds": ttl}
    r = await imds.client.put("/latest/api/token", headers=headers)
    assert r.status == 400


async def test_token_guards(make_imds: Callable[..., Awaitable[Imds]]) -> None:
    imds = await make_imds()
    ttl = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}
    r = await imds.client.put("/latest/api/token", headers={**ttl, "X-Forwarded-For": "1.2.3.4"})
    assert r.status == 403
    r = await imds.client.put("/2021-03-23/api/token", headers=ttl)
    assert r.status == 403
    for method in ("GET", "POST", "DELETE"):
        r = await imds.client.request(method, "/latest/api/token", headers=ttl)
        assert r.status == 405
        assert "PUT" in r.headers["Allow"]


async def test_token_validation(
    make_imds: Callable[..., Awaitable[Imds]], clock: FakeClock
) -> None:
    imds = await make_imds()
    a, b = await imds.token(), await imds.token("1")
    assert a != b
    r = await imds.client.get(CREDS, headers={"X-aws-ec2-metadata-token": a})
    assert r.status == 200
    r = await imds.client.get(CREDS, headers={"X-aws-ec2-metadata-token": "garbage"})
    assert r.status == 401
    clock.advance(2)
    r = await imds.client.get(CREDS, headers={"X-aws-ec2-metadata-token": b})
    assert r.status == 401  # expired
    r = await imds.client.get(CREDS, headers={"X-aws-ec2-metadata-token": a})
    assert r.status == 200


async def test_required_mode_refuses_tokenless_gets(
    make_imds: Callable[..., Awaitable[Imds]],
) -> None:
    imds = await make_imds(required=True)
    for path in ("/", CREDS, "/latest/meta-data/instance-id", "/latest/user-data"):
        r = await imds.client.get(path)
        assert r.status == 401, path
    token = await imds.token()
    r = await imds.client.get(CREDS, headers={"X-aws-ec2-metadata-token": token})
    assert r.status == 200


async def test_role_and_credentials_documents(
    make_imds: Callable[..., Awaitable[Imds]], clock: FakeClock
) -> None:
    imds = await make_imds()
    for path in (CREDS, CREDS.rstrip("/")):
        r = await imds.client.get(path)
        assert (r.status, await r.text()) == (200, "DeveloperRole")
        assert r.headers["Content-Type"].startswith("text/plain")
    r = await imds.client.get(CREDS + "DeveloperRole")
    text = await r.text()
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    assert '"Code" : "Success"' in text  # IMDS's own spacing
    doc = json.loads(text)
    assert doc["Code"] == "Success" and doc["Type"] == "AWS-HMAC"
    for key in ("AccessKeyId", "SecretAccessKey", "Token"):
        assert doc[key]
    assert ISO.match(doc["Expiration"]) and ISO.match(doc["LastUpdated"])
    r = await imds.client.get(CREDS + "NotTheRole")
    assert r.status == 404
    assert "<title>404 - Not Found</title>" in await r.text()
    r = await imds.client.get("/latest/meta-data/iam/security-credentials-extended/")
    assert r.status == 404


async def test_same_document_until_rotation(make_imds: Callable[..., Awaitable[Imds]]) -> None:
    imds = await make_imds()
    first = await (await imds.client.get(CREDS + "DeveloperRole")).read()
    second = await (await imds.client.get(CREDS + "DeveloperRole")).read()
    assert first == second
    assert len(imds.provider.calls) == 1


async def test_placement_and_listings(make_imds: Callable[..., Awaitable[Imds]]) -> None:
    imds = await make_imds()
    r = await imds.client.get("/latest/meta-data/placement/region")
    assert await r.text() == "eu-west-1"
    r = await imds.client.get("/latest/meta-data/placement/availability-zone")
    assert await r.text() == "eu-west-1a"
    r = await imds.client.get("/")
    listing = await r.text()
    assert listing.endswith("latest") and "\n2016-09-02\n" in listing
    r = await imds.client.get("/latest/meta-data")
    listing = await r.text()
    assert "iam/" in listing.split("\n") and not listing.endswith("\n")
    r = await imds.client.get("/latest/meta-data/iam/")
    assert await r.text() == "info\nsecurity-credentials/"
    r = await imds.client.get("/2016-09-02/meta-data/instance-id")
    r2 = await imds.client.get("/latest/meta-data/instance-id")
    assert await r.text() == await r2.text()
    assert re.match(r"^i-[0-9a-f]{17}$", await r2.text())
    doc = json.loads(
        await (await imds.client.get("/latest/dynamic/instance-identity/document")).text()
    )
    assert doc["region"] == "eu-west-1"
    info = json.loads(await (await imds.client.get("/latest/meta-data/iam/info")).text())
    assert info["Code"] == "Success"
    assert info["InstanceProfileArn"].startswith("arn:aws:iam::")
    assert (await imds.client.get("/latest/user-data")).status == 404
    assert (await imds.client.get("/nonsense")).status == 404


async def test_methods(make_imds: Callable[..., Awaitable[Imds]]) -> None:
    imds = await make_imds()
    for method in ("POST", "DELETE", "PATCH"):
        r = await imds.client.request(method, "/latest/meta-data/instance-id")
        assert r.status == 405
    r = await imds.client.head("/latest/meta-data/instance-id")
    assert r.status == 200
    assert await r.read() == b""


async def test_no_profile_means_no_role(make_imds: Callable[..., Awaitable[Imds]]) -> None:
    imds = await make_imds(active=None)
    assert (await imds.client.get(CREDS)).status == 404
    assert (await imds.client.get("/latest/meta-data/placement/region")).status == 200


async def test_mfa_pending_answers_at_once_with_a_reason(
    make_imds: Callable[..., Awaitable[Imds]],
) -> None:
    imds = await make_imds(needs_mfa=True)
    r = await imds.client.get(CREDS)
    assert await r.text() == "DeveloperRole"
    r = await asyncio.wait_for(imds.client.get(CREDS + "DeveloperRole"), 1.0)
    doc = json.loads(await r.text())
    assert r.status == 200
    assert doc["Code"] != "Success"
    assert "vaultd mfa" in doc["Message"]
    assert "AccessKeyId" not in doc


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Host": "evil.example"}, "Host"),
        ({"Host": "evil.example:9169"}, "Host"),
        ({"Origin": "http://evil.example"}, "browser"),
        ({"Sec-Fetch-Mode": "no-cors"}, "browser"),
    ],
)
async def test_guards_refuse(
    make_imds: Callable[..., Awaitable[Imds]], headers: dict[str, str], reason: str
) -> None:
    imds = await make_imds()
    r = await imds.client.get(CREDS + "DeveloperRole", headers=headers)
    assert r.status == 403
    text = await r.text()
    assert reason in text
    assert "SecretAccessKey" not in text


async def test_metadata_hosts_are_accepted(make_imds: Callable[..., Awaitable[Imds]]) -> None:
    imds = await make_imds()
    for host in (
        "169.254.169.254",
        "169.254.169.254:80",
        "[fd00:ec2::254]",
        f"localhost:{imds.client.port}",
    ):
        r = await imds.client.get(CREDS, headers={"Host": host})
        assert r.status == 200, host


def test_peer_guard() -> None:
    guard = Guard.for_listener("127.0.0.1", 9169, ["172.17.0.0/16"])
    assert guard.peer_refusal("127.0.0.1") is None
    assert guard.peer_refusal("::1") is None
    assert guard.peer_refusal("::ffff:127.0.0.1") is None
    assert guard.peer_refusal("172.17.0.5") is None
    assert guard.peer_refusal("192.0.2.7") is not None
    assert guard.peer_refusal(None) is not None
    assert guard.peer_refusal("not-an-ip") is not None


async def test_concurrent_fetches_make_one_sts_call(
    make_imds: Callable[..., Awaitable[Imds]],
) -> None:
    imds = await make_imds(active=None)
    imds.imds.broker.activate("master")

    async def fetch() -> str:
        token = await imds.token()
        r = await imds.client.get(
            CREDS + "DeveloperRole", headers={"X-aws-ec2-metadata-token": token}
        )
        return str(json.loads(await r.text())["AccessKeyId"])

    keys = await asyncio.gather(*(fetch() for _ in range(200)))
    assert len(set(keys)) == 1
    assert len(imds.provider.calls) == 1
