"""Refusal lines stay few whatever a flood varies: one per peer per minute, every local peer
of unknown owner one peer, and at most MAX_LINES lines a minute in all."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator

import pytest

from tests.helpers import FakeClock, FakeProvider
from vaultd.core.broker import Broker
from vaultd.host.peer_owner import Accepted, Address
from vaultd.http import admission
from vaultd.http.guards import Guard
from vaultd.http.imds import ImdsApp
from vaultd.http.refusals import MAX_LINES, RefusalLog
from vaultd.http.tokens import Tokens


def lines(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name]


def test_many_peers_write_at_most_max_lines_a_minute(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="test.refusals")
    log = RefusalLog(logging.getLogger("test.refusals"), clock)
    for n in range(500):  # e.g. remote IPv6 sources, each its own key
        log.refused(f"peer 2001:db8::{n:x}", "GET", "/", "not allowed")
    assert len(lines(caplog, "test.refusals")) == MAX_LINES
    # A local user's refusal is not crowded out by them.
    log.refused("uid 1002", "GET", "/", "not allowed", local=True)
    assert "from uid 1002" in lines(caplog, "test.refusals")[-1]
    clock.advance(61)
    log.refused("peer 2001:db8::ffff", "GET", "/", "not allowed")
    last = lines(caplog, "test.refusals")[-1]
    assert f"({500 - MAX_LINES} refusals from other peers were not logged" in last


def test_many_uids_write_at_most_max_lines_a_minute_and_crowd_out_no_remote_peer(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # The breaker's flood: a user's subordinate uids (/etc/subuid, mapped in a user
    # namespace on the host's network), 1,100 of them, twice in one minute. Before, a uid's
    # lines were never capped, and the table of 1,024 keys, once full, was emptied: 2,200
    # lines.
    caplog.set_level(logging.WARNING, logger="test.refusals")
    log = RefusalLog(logging.getLogger("test.refusals"), clock)
    for _round in range(2):
        for uid in range(170_000, 171_100):
            log.refused(f"uid {uid}", "GET", "/", "not allowed", local=True)
    assert len(lines(caplog, "test.refusals")) == MAX_LINES
    log.refused("peer 2001:db8::1", "GET", "/", "not allowed")  # a remote peer still is
    assert "from peer 2001:db8::1" in lines(caplog, "test.refusals")[-1]
    clock.advance(61)
    log.refused("uid 1002", "GET", "/", "not allowed", local=True)
    assert (
        f"({2 * (1100 - MAX_LINES)} refusals from other peers were not logged"
        in (lines(caplog, "test.refusals")[-1])
    )


class Unknown:
    """An owner lookup that never finds the socket's rows (as for a connection closed at
    once, whose socket is orphaned)."""

    name = "unknown"
    keeps_reads = False

    def forget(self) -> None:
        pass

    def rows(self, client: Address, server: Address, accepted: Accepted | None = None) -> None:
        return None

    def close(self) -> None:
        pass


@pytest.fixture
async def refusing(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[ImdsApp, int]]:
    monkeypatch.setattr(admission, "owner_lookup", Unknown)
    broker = Broker(FakeProvider(clock), clock)
    await broker.switch("master")
    imds = ImdsApp(broker, Tokens(clock), Guard.for_listener("127.0.0.1", 1))
    listener = await imds.start("127.0.0.1", 0)
    port = int(listener.sockets[0].getsockname()[1])
    imds.guard = Guard.for_listener("127.0.0.1", port)
    yield imds, port
    await imds.shutdown()
    await broker.close()


async def get_from(source: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(b"GET / HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n")
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="all of 127/8 is local (Linux)")
async def test_local_peers_of_unknown_owner_are_one_peer(
    refusing: tuple[ImdsApp, int], caplog: pytest.LogCaptureFixture
) -> None:
    # The breaker's flood: a fresh 127.x source for each request, whose owner is not found.
    caplog.set_level(logging.WARNING, logger="vaultd.imds")
    _, port = refusing
    for n in range(2, 42):
        assert (await get_from(f"127.0.{n}.{n}", port)).startswith(b"HTTP/1.1 403")
    [line] = lines(caplog, "vaultd.imds")
    assert "cannot be determined" in line and "from peer 127.0.2.2" in line
