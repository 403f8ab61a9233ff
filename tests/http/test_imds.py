"""The IMDS surface over real HTTP (pytest-aiohttp), against a broker with a scripted provider."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession

from tests.helpers import FakeClock, FakeProvider, make_plan
from vaultd.core.broker import Broker
from vaultd.errors import MfaRequired, StsError
from vaultd.http import metadata
from vaultd.http.guards import Guard
from vaultd.http.imds import ROUTES_KEPT, ImdsApp, ImdsOptions
from vaultd.http.tokens import Tokens
from vaultd.http.wire import Clock

CREDS = "/latest/meta-data/iam/security-credentials/"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class Imds:
    def __init__(
        self, client: ClientSession, port: int, imds: ImdsApp, provider: FakeProvider
    ) -> None:
        self.client, self.port, self.imds, self.provider = client, port, imds, provider

    async def token(self, ttl: str = "21600") -> str:
        r = await self.client.put(
            "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": ttl}
        )
        assert r.status == 200
        return await r.text()


@pytest.fixture
async def make_imds(clock: FakeClock) -> AsyncIterator[Callable[..., Awaitable[Imds]]]:
    """Start ImdsApp on a real loopback port, the way the daemon does."""
    started: list[tuple[ImdsApp, ClientSession]] = []

    async def build(
        active: str | None = "master", options: ImdsOptions | None = None, **provider_kw: Any
    ) -> Imds:
        provider = FakeProvider(clock, **provider_kw)
        broker = Broker(provider, clock)
        imds = ImdsApp(broker, Tokens(clock), Guard.for_listener("127.0.0.1", 1), options)
        listener = await imds.start("127.0.0.1", 0)
        port = int(listener.sockets[0].getsockname()[1])
        imds.guard = Guard.for_listener("127.0.0.1", port)
        client = ClientSession(base_url=f"http://127.0.0.1:{port}")
        started.append((imds, client))
        if active is not None:
            with contextlib.suppress(MfaRequired):  # a profile needing MFA still becomes active
                await broker.switch(active)
        return Imds(client, port, imds, provider)

    yield build
    for imds, client in started:
        await client.close()
        await imds.shutdown()
        await imds.broker.close()


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
    imds = await make_imds(options=ImdsOptions(tokens_required=True))
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


async def test_a_new_set_is_served_as_soon_as_it_lands(
    make_imds: Callable[..., Awaitable[Imds]], clock: FakeClock
) -> None:
    """Answers are kept per credential set (imds._Prepared): a refresh must replace them."""
    imds = await make_imds()
    first = json.loads(await (await imds.client.get(CREDS + "DeveloperRole")).read())
    clock.advance(3600 - 10 * 60)  # inside the refresh window: the GET starts one
    await imds.client.get(CREDS + "DeveloperRole")
    slot = imds.imds.broker.active_slot()
    assert slot is not None and slot.task is not None
    await slot.task
    second = json.loads(await (await imds.client.get(CREDS + "DeveloperRole")).read())
    assert len(imds.provider.calls) == 2
    assert second["AccessKeyId"] != first["AccessKeyId"]
    assert second["Expiration"] > first["Expiration"]


async def test_an_outage_answers_without_rebuilding_the_prepared_answers(
    make_imds: Callable[..., Awaitable[Imds]], clock: FakeClock
) -> None:
    imds = await make_imds()
    assert (await imds.client.get(CREDS + "DeveloperRole")).status == 200
    imds.provider.failure = StsError("cannot reach STS")
    clock.advance(3600)  # expired, and every refresh fails
    answers = []
    for _ in range(3):
        r = await imds.client.get(CREDS + "DeveloperRole")
        answers.append((r.status, json.loads(await r.read())["Code"]))
        prepared = imds.imds._prepared
        r = await imds.client.get(CREDS + "DeveloperRole")
        assert imds.imds._prepared is prepared  # kept across requests, not rebuilt each time
    assert {code for _, code in answers} == {"AssumeRoleUnauthorizedAccess"}  # never stale


async def test_answers_kept_per_path_stay_bounded(
    make_imds: Callable[..., Awaitable[Imds]],
) -> None:
    imds = await make_imds()
    for n in range(3 * ROUTES_KEPT):  # a tool walking the tree, or junk
        await imds.client.get(f"/latest/meta-data/x{n}")
        assert len(imds.imds._prepared.routes) <= ROUTES_KEPT
        assert len(imds.imds._segments) <= ROUTES_KEPT
    r = await imds.client.get(CREDS + "DeveloperRole")
    assert r.status == 200
    assert CREDS + "DeveloperRole" in imds.imds._prepared.routes  # still kept after junk
    path = CREDS + "DeveloperRole"
    assert imds.imds._segments[path] == metadata.normalise(path)  # remembered, and the same


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
        # A proxy the owner runs (cntlm, mitmproxy) would pass the owner check for anyone
        # who can reach it: before, only the token PUT refused X-Forwarded-For.
        ({"Via": "1.1 proxy"}, "proxy are refused (via header)"),
        ({"X-Forwarded-For": "127.0.0.1"}, "proxy are refused (x-forwarded-for header)"),
        ({"Forwarded": "for=127.0.0.1"}, "proxy are refused (forwarded header)"),
        ({"X-Real-IP": "127.0.0.1"}, "proxy are refused (x-real-ip header)"),
        ({"X-Forwarded-Host": "169.254.169.254"}, "proxy are refused (x-forwarded-host header)"),
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
        f"localhost:{imds.port}",
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
    imds.imds.broker.activate("master", make_plan())

    async def fetch() -> str:
        token = await imds.token()
        r = await imds.client.get(
            CREDS + "DeveloperRole", headers={"X-aws-ec2-metadata-token": token}
        )
        return str(json.loads(await r.text())["AccessKeyId"])

    keys = await asyncio.gather(*(fetch() for _ in range(200)))
    assert len(set(keys)) == 1
    assert len(imds.provider.calls) == 1


async def test_owner_check_refuses_other_uids(make_imds: Callable[..., Awaitable[Imds]]) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the owner check reads /proc/net/tcp (Linux)")
    imds = await make_imds(options=ImdsOptions(allow_uids=frozenset({os.getuid() + 4242})))
    r = await imds.client.get(CREDS)
    assert r.status == 403
    assert f"uid {os.getuid()}" in await r.text()


async def test_status_names_the_lookup_and_every_other_uid_it_admits(
    make_imds: Callable[..., Awaitable[Imds]],
) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the owner check runs on Linux")
    own = frozenset({os.getuid()})
    alone = (await make_imds(options=ImdsOptions(allow_uids=own))).imds.owner_lookup
    assert alone in ("netlink sock_diag (exact socket)", "/proc/net/tcp (full 4-tuple)")
    more = ImdsOptions(allow_uids=own | {65534, 1001})
    assert (
        await make_imds(options=more)
    ).imds.owner_lookup == f"{alone}; also admits uid 1001, 65534"
    off = ImdsOptions(uid_check=False)
    assert (await make_imds(options=off)).imds.owner_lookup == "off"


async def test_extended_path_when_enabled(make_imds: Callable[..., Awaitable[Imds]]) -> None:
    imds = await make_imds(options=ImdsOptions(serve_extended=True))
    ext = "/latest/meta-data/iam/security-credentials-extended/"
    assert await (await imds.client.get(ext)).text() == "DeveloperRole"
    doc = json.loads(await (await imds.client.get(ext + "DeveloperRole")).text())
    legacy = json.loads(await (await imds.client.get(CREDS + "DeveloperRole")).text())
    assert doc.pop("AccountId") == "222233334444"
    assert doc == legacy


async def test_connection_cap_and_request_deadline(
    make_imds: Callable[..., Awaitable[Imds]],
) -> None:
    imds = await make_imds(options=ImdsOptions(max_connections=4, request_deadline=0.3))
    opened = [await asyncio.open_connection("127.0.0.1", imds.port) for _ in range(4)]
    # A fifth connection over the cap gets a 503 and is closed at once.
    reader, writer = await asyncio.open_connection("127.0.0.1", imds.port)
    assert (await asyncio.wait_for(reader.read(), 2)).startswith(b"HTTP/1.1 503")
    writer.close()
    # A slow client (headers never finished) and idle ones are closed after the deadline.
    reader, writer = opened[0]
    writer.write(b"GET /latest/meta-data/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    await writer.drain()
    for r, _ in opened:
        assert await asyncio.wait_for(r.read(), 3) == b""
    for _, w in opened:
        w.close()
    # The daemon still serves afterwards.
    assert (await imds.client.get(CREDS)).status == 200


async def test_oversized_headers_are_refused(make_imds: Callable[..., Awaitable[Imds]]) -> None:
    imds = await make_imds()
    r = await imds.client.get(CREDS, headers={"X-Big": "a" * 20000})
    assert r.status in (400, 431)
    many = {f"X-H{i}": "v" for i in range(100)}
    r = await imds.client.get(CREDS, headers=many)
    assert r.status in (400, 431)
    assert (await imds.client.get(CREDS)).status == 200


def test_redirected_peers_are_local_only_behind_a_loopback_listener() -> None:
    assert Guard.for_listener("127.0.0.1", 9169).peer_refusal("169.254.169.254") is None
    assert Guard.for_listener("0.0.0.0", 9169).peer_refusal("169.254.169.254") is not None  # noqa: S104
    assert Guard.is_local("169.254.169.254")
    assert not Guard.is_local("10.0.0.1")


async def test_docker_desktop_relay_endpoint(make_imds: Callable[..., Awaitable[Imds]]) -> None:
    from vaultd.http.imds import RELAY_PATH
    from vaultd.http.relay import http_fetch

    token = "t" * 32
    imds = await make_imds(options=ImdsOptions(relay_token=token))
    desktop = {"Host": f"host.docker.internal:{imds.port}"}
    r = await imds.client.get(RELAY_PATH, headers={**desktop, "Authorization": "wrong"})
    assert r.status == 403
    r = await imds.client.get(RELAY_PATH, headers=desktop)
    assert r.status == 403
    r = await imds.client.get(RELAY_PATH, headers={**desktop, "Authorization": token})
    doc = await r.json()
    assert (r.status, doc["Profile"], doc["RoleName"]) == (200, "master", "DeveloperRole")
    fetched = await asyncio.to_thread(http_fetch(f"http://127.0.0.1:{imds.port}", token))
    assert fetched["AccessKeyId"] == doc["AccessKeyId"]
    # The token is not a pass past the other guards: a browser's request, another uid's.
    sent = {**desktop, "Authorization": token, "Origin": "http://evil.example"}
    assert (await imds.client.get(RELAY_PATH, headers=sent)).status == 403
    # Nor past the proxy guard, as on every other path (the third breaker's finding).
    sent = {**desktop, "Authorization": token, "X-Forwarded-For": "127.0.0.1"}
    assert (await imds.client.get(RELAY_PATH, headers=sent)).status == 403
    if sys.platform.startswith("linux"):
        others = ImdsOptions(relay_token=token, allow_uids=frozenset({os.getuid() + 4242}))
        theirs = await make_imds(options=others)
        sent = {**desktop, "Authorization": token}
        assert (await theirs.client.get(RELAY_PATH, headers=sent)).status == 403
    # Without a configured token the path is just another 404.
    plain = await make_imds()
    assert (await plain.client.get(RELAY_PATH, headers={"Authorization": token})).status == 404


async def raw_exchange(port: int, data: bytes, half_close: bool = False) -> bytes:
    """Send `data` on a fresh connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    if half_close:
        writer.write_eof()
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_a_half_closed_request_is_answered(
    make_imds: Callable[..., Awaitable[Imds]],
) -> None:
    imds = await make_imds()
    request = f"GET {CREDS} HTTP/1.1\r\nHost: 127.0.0.1:{imds.port}\r\n\r\n".encode()
    answer = await raw_exchange(imds.port, request, half_close=True)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\nDeveloperRole")
    # Two pipelined requests, then the half-close: both answered, in order.
    answer = await raw_exchange(imds.port, request + request.replace(b"GET", b"HEAD"), True)
    assert answer.count(b"HTTP/1.1 200 OK") == 2 and answer.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("http://evil.example/latest/meta-data/", b"403"),
        ("http://evil.example:80/latest/meta-data/", b"403"),
        ("http://169.254.169.254/latest/meta-data/", b"200"),
        ("/latest/meta-data/", b"200"),
    ],
)
async def test_an_absolute_form_target_follows_the_host_rule(
    make_imds: Callable[..., Awaitable[Imds]], target: str, status: bytes
) -> None:
    imds = await make_imds()
    request = f"GET {target} HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n".encode()
    answer = await raw_exchange(imds.port, request, half_close=True)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:80]


async def test_a_refusal_closes_the_connection(make_imds: Callable[..., Awaitable[Imds]]) -> None:
    imds = await make_imds()
    good = f"GET {CREDS} HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n".encode()
    bad = good.replace(b"169.254.169.254", b"evil.example")
    answer = await raw_exchange(imds.port, bad + good)  # no half-close: the server closes
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"\r\nConnection: close\r\n" in answer
    assert answer.count(b"HTTP/1.1") == 1  # the pipelined request after it is not served


async def test_refusals_are_logged_escaped_bounded_and_rate_limited(
    make_imds: Callable[..., Awaitable[Imds]],
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    imds = await make_imds()
    forged = "/x%0a2026-11-30%2004:00:00,000%20vaultd%20INFO%20switched%20to%20evil%0d%00"
    caplog.set_level(logging.WARNING, logger="vaultd.imds")

    async def refused(target: str) -> None:
        request = f"GET {target} HTTP/1.1\r\nHost: evil.example\r\n\r\n".encode()
        assert (await raw_exchange(imds.port, request)).startswith(b"HTTP/1.1 403")

    await refused(forged)
    for _ in range(30):
        await refused("/" + "a" * 8000)
    lines = [r.getMessage() for r in caplog.records if r.name == "vaultd.imds"]
    assert len(lines) == 1, lines  # one line per peer per interval
    assert "\n" not in lines[0] and "\r" not in lines[0] and "\0" not in lines[0]
    assert "%0a2026" in lines[0] and f"uid {os.getuid()}" in lines[0]
    clock.advance(61)
    await refused("/" + "a" * 8000)
    lines = [r.getMessage() for r in caplog.records if r.name == "vaultd.imds"]
    assert len(lines) == 2
    assert "30 more refused" in lines[1]
    assert len(lines[1]) < 400  # the 8000-character target is cut


def test_printable_escapes_everything_a_request_can_send() -> None:
    from vaultd.untrusted import printable

    assert printable('a\nb\rc\0d"e\\f\u2028g\xe9') == 'a\\nb\\rc\\x00d\\"e\\\\f\\u2028g\\xe9'
    assert printable("x" * 500, 10) == "x" * 10 + "...(+490 chars)"
    assert printable("GET", 16) == "GET"


async def test_replies_to_different_requests_never_share_a_rendering(
    make_imds: Callable[..., Awaitable[Imds]],
) -> None:
    """The same path asked as GET, HEAD, HTTP/1.0, and with Connection: close, back to back
    in one second: each reply is its own (wire.Rendered keys on all that shapes it)."""
    imds = await make_imds()
    get = f"GET {CREDS} HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n".encode()
    variants = [
        get,
        get.replace(b"GET", b"HEAD"),
        get.replace(b"HTTP/1.1", b"HTTP/1.0"),
        get.replace(b"HTTP/1.1", b"HTTP/1.0").replace(
            b"\r\n\r\n", b"\r\nConnection: keep-alive\r\n\r\n"
        ),
        get.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"),
    ]
    # Requests that end their connection are sent once; the others twice, pipelined.
    ending = (variants[2], variants[4])
    answers = [
        await raw_exchange(imds.port, v if v in ending else v + v, half_close=True)
        for v in variants
    ]
    plain, head, http10, http10_keep, close = answers
    assert plain.count(b"HTTP/1.1 200 OK\r\n") == 2 and plain.endswith(b"DeveloperRole")
    assert b"Connection:" not in plain
    assert head.count(b"HTTP/1.1 200 OK\r\n") == 2 and head.endswith(b"\r\n\r\n")
    assert b"Content-Length: 13\r\n" in head  # HEAD: the length of the body it leaves out
    assert http10.startswith(b"HTTP/1.0 200 OK\r\n") and http10.count(b"HTTP/1.0") == 1
    assert b"Connection:" not in http10  # 1.0 without keep-alive: answered once, closed
    assert http10_keep.count(b"HTTP/1.0 200 OK\r\n") == 2
    assert http10_keep.count(b"Connection: keep-alive\r\n") == 2
    assert close.count(b"HTTP/1.1 200 OK\r\n") == 1 and b"Connection: close\r\n" in close


class KeepAlive:
    """One kept-alive connection, read one reply at a time, that may send the same bytes
    again: whatever a server keeps between requests, the answer must be what the same
    bytes get on a new connection at that moment."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> KeepAlive:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def ask(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of the reply to `request`."""
        self.writer.write(request)
        await self.writer.drain()
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        status, *lines = head.decode("latin-1").split("\r\n")[:-2]
        headers = dict(line.split(": ", 1) for line in lines)
        body = await self.reader.readexactly(int(headers["Content-Length"]))
        return int(status.split()[1]), headers, body

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def keep_alive() -> AsyncIterator[Callable[[int], Awaitable[KeepAlive]]]:
    """Opens KeepAlive connections to a port; closes them all after the test, passed or not."""
    opened: list[KeepAlive] = []

    async def open_to(port: int) -> KeepAlive:
        opened.append(await KeepAlive.open(port))
        return opened[-1]

    yield open_to
    for conn in opened:
        conn.close()


def _request(path: str, token: str | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 169.254.169.254"]
    if token is not None:
        lines.append(f"X-aws-ec2-metadata-token: {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_a_repeated_request_starts_a_due_refresh_and_then_gets_the_new_set(
    keep_alive: Callable[[int], Awaitable[KeepAlive]],
    make_imds: Callable[..., Awaitable[Imds]],
    clock: FakeClock,
) -> None:
    imds = await make_imds()
    conn = await keep_alive(imds.port)
    request = _request(CREDS + "DeveloperRole")
    _, _, first = await conn.ask(request)
    clock.advance(3600 - 10 * 60)  # inside the refresh window
    _, _, during = await conn.ask(request)
    assert during == first  # the set in hand is still served...
    slot = imds.imds.broker.active_slot()
    assert slot is not None and slot.task is not None  # ...and the same bytes started a refresh
    await slot.task
    _, _, after = await conn.ask(request)
    assert json.loads(after)["AccessKeyId"] != json.loads(first)["AccessKeyId"]


async def test_a_repeated_request_follows_a_switch(
    keep_alive: Callable[[int], Awaitable[KeepAlive]],
    make_imds: Callable[..., Awaitable[Imds]],
) -> None:
    imds = await make_imds()
    conn = await keep_alive(imds.port)
    assert (await conn.ask(_request(CREDS)))[2] == b"DeveloperRole"
    await imds.imds.broker.switch("audit")
    assert (await conn.ask(_request(CREDS)))[2] == b"audit"


async def test_a_repeated_request_follows_a_new_plan_for_the_same_set(
    keep_alive: Callable[[int], Awaitable[KeepAlive]],
    make_imds: Callable[..., Awaitable[Imds]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A switch to the profile already served, after its config changed: the set in hand is
    kept, and the answers built from the old plan are not."""
    imds = await make_imds()
    conn = await keep_alive(imds.port)
    request = _request("/latest/meta-data/placement/region")
    assert (await conn.ask(request))[2] == b"eu-west-1"
    calls = len(imds.provider.calls)
    monkeypatch.setattr(
        imds.provider, "plan", lambda name: replace(make_plan(name), region="us-east-2")
    )
    await imds.imds.broker.switch("master")
    assert len(imds.provider.calls) == calls  # no new set: only the plan changed
    assert (await conn.ask(request))[2] == b"us-east-2"


async def test_a_repeated_request_with_an_expired_token_is_refused(
    keep_alive: Callable[[int], Awaitable[KeepAlive]],
    make_imds: Callable[..., Awaitable[Imds]],
    clock: FakeClock,
) -> None:
    imds = await make_imds()
    conn = await keep_alive(imds.port)
    request = _request(CREDS + "DeveloperRole", await imds.token("2"))
    assert (await conn.ask(request))[0] == 200
    clock.advance(3600 - 10 * 60)  # the token has expired, and a refresh is due
    assert (await conn.ask(request))[0] == 401
    slot = imds.imds.broker.active_slot()
    assert slot is not None and slot.task is None  # refused before it could start one
    assert len(imds.provider.calls) == 1


async def test_a_repeated_request_is_dated_in_the_second_it_is_answered(
    keep_alive: Callable[[int], Awaitable[KeepAlive]],
    make_imds: Callable[..., Awaitable[Imds]],
) -> None:
    imds = await make_imds()
    now = [1_800_000_000.0]
    imds.imds.server.clock = Clock(lambda: now[0])
    conn = await keep_alive(imds.port)
    request = _request(CREDS)
    _, first, _ = await conn.ask(request)
    now[0] += 1
    _, second, _ = await conn.ask(request)
    assert (first["Date"], second["Date"]) == (
        "Fri, 15 Jan 2027 08:00:00 GMT",
        "Fri, 15 Jan 2027 08:00:01 GMT",
    )


async def test_a_repeated_request_after_clear_is_answered_as_a_new_connection_would_be(
    keep_alive: Callable[[int], Awaitable[KeepAlive]],
    make_imds: Callable[..., Awaitable[Imds]],
) -> None:
    """`vaultd clear` drops the set and keeps the plan: what was built from the set goes."""
    imds = await make_imds()
    conn = await keep_alive(imds.port)
    request = _request("/latest/meta-data/iam/info")
    before = await conn.ask(request)
    imds.imds.broker.clear()
    after = await conn.ask(request)
    fresh = await keep_alive(imds.port)
    anew = await fresh.ask(request)
    assert (after[0], after[2]) == (anew[0], anew[2])  # the Date may straddle a second
    assert json.loads(before[2])["LastUpdated"] and not json.loads(after[2])["LastUpdated"]


async def test_an_http11_request_without_host_is_a_bad_request_and_http10_is_not(
    make_imds: Callable[..., Awaitable[Imds]],
) -> None:
    imds = await make_imds()
    bare = f"GET {CREDS} HTTP/1.1\r\n\r\n".encode()  # RFC 9112 section 3.2: 400
    assert (await raw_exchange(imds.port, bare)).startswith(b"HTTP/1.1 400 Bad Request")
    old = f"GET {CREDS} HTTP/1.0\r\n\r\n".encode()  # HTTP/1.0 has no Host to send
    assert (await raw_exchange(imds.port, old)).startswith(b"HTTP/1.0 200")


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) shows a listener's backlog")
async def test_the_listener_queues_more_than_asyncios_default_100(
    make_imds: Callable[..., Awaitable[Imds]],
) -> None:
    # A local flood of connects filled 100 and the owner's SDK (1 s timeout) waited.
    from vaultd.http.imds import LISTEN_BACKLOG

    imds = await make_imds()
    argv = ["ss", "-ltnH", f"sport = :{imds.port}"]
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True)
    shown = done.stdout.split()
    somaxconn = int(await asyncio.to_thread(Path("/proc/sys/net/core/somaxconn").read_text))
    assert int(shown[2]) == min(LISTEN_BACKLOG, somaxconn) > 100  # Send-Q: the backlog
