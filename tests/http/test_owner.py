"""The owner check against a real attacker: another uid sharing the victim's local port.

CI runs as root; the attacker runs as uid 65534 through setpriv with the system python, the
victim is this test process (the uid the listener allows). See tests/host/port_share.py.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers import FakeClock, FakeProvider
from vaultd.core.broker import Broker
from vaultd.http.guards import Guard
from vaultd.http.imds import ImdsApp, ImdsOptions
from vaultd.http.tokens import Tokens

ATTACK = (Path(__file__).parent.parent / "host" / "port_share.py").read_text()
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")
OTHER_UID = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0 or SYSTEM_PYTHON is None,
    reason="acting as another uid needs Linux, root (CI runs as root) and /usr/bin/python3",
)


async def run_attack(argv: list[str], victim_connect: object, rounds: int) -> list[str]:
    """Drive tests/host/port_share.py: connect a victim to each listener it opens."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    results: list[str] = []
    try:
        while len(results) < rounds:
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
            if line == "unsupported":
                pytest.skip("this kernel has no IP_LOCAL_PORT_RANGE (Linux 6.3+)")
            assert line.startswith("listening"), line + (await proc.stderr.read()).decode()  # type: ignore[union-attr]
            victim = await victim_connect(int(line.split()[1]))  # type: ignore[operator]
            results.append((await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip())
            await victim.aclose()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    return results


class Victim:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    async def aclose(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def connect_victim(port: int) -> Victim:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    return Victim(writer)


@pytest.fixture
async def listener(clock: FakeClock) -> AsyncIterator[tuple[ImdsApp, int]]:
    broker = Broker(FakeProvider(clock), clock)
    imds = ImdsApp(broker, Tokens(clock), Guard.for_listener("127.0.0.1", 1), ImdsOptions())
    server = await imds.start("127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    imds.guard = Guard.for_listener("127.0.0.1", port)
    await broker.switch("master")
    yield imds, port
    await imds.shutdown()
    await broker.close()


async def test_another_uid_sharing_the_victims_port_is_refused_every_time(
    listener: tuple[ImdsApp, int],
) -> None:
    imds, port = listener
    assert imds.options.uid_check and imds.options.allow_uids == frozenset({os.getuid()})
    argv = [*OTHER_UID, str(SYSTEM_PYTHON), "-c", ATTACK, "127.0.0.1", str(port), "12"]
    results = await run_attack(argv, connect_victim, 12)
    shared = [r for r in results if "status" in r]
    assert len(shared) >= 6, results  # the kernel did let it share the victim's port
    assert all(r.endswith("status 403") for r in shared), results


HOLD = """\
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
held = []
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    held.append(s)
print("holding", len(held), flush=True)
sys.stdin.readline()
statuses = {}
for s in held:
    try:
        s.sendall(b"GET /latest/meta-data/ HTTP/1.1\\r\\nHost: 169.254.169.254\\r\\n\\r\\n")
        head = s.recv(4096).split(b" ", 2)[1].decode()
        closed = s.recv(1) == b""
    except (OSError, IndexError):
        head, closed = "reset", True
    key = head + (" closed" if closed else " open")
    statuses[key] = statuses.get(key, 0) + 1
print(sorted(statuses.items()), flush=True)
"""


async def test_another_uid_cannot_take_the_owners_connection_slots(
    listener: tuple[ImdsApp, int],
) -> None:
    imds, port = listener
    argv = [*OTHER_UID, str(SYSTEM_PYTHON), "-c", HOLD, str(port), "300"]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.startswith(b"holding 300"), line
        # Connected is not yet accepted: the kernel completes a connect before the daemon's
        # loop accepts it, and on a busy machine the loop is that much behind.
        server, deadline = imds.server, time.monotonic() + 30
        while len(server.connections) + server.over_cap < 300:  # all accepted and counted
            assert time.monotonic() < deadline, (len(server.connections), server.over_cap)
            await asyncio.sleep(0.05)
        # Refused peers have their own small pool: the owner's connections are all free.
        assert imds.server.open == {"refused": imds.options.max_refused, "owner": 0, "network": 0}
        owners = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        for reader, writer in owners:
            writer.write(b"GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n")
            assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 200")
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        seen = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        # Every request of the other uid was refused and its connection closed with it.
        assert "200" not in seen, seen
        assert f"('403 closed', {imds.options.max_refused})" in seen, seen
        for _, writer in owners:
            writer.close()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
