"""The connection pools against real peers: another host (or a container) that an
`--allow-cidr` network admits fills a pool of its own, and the owner's clients on loopback
are still served.

Two network namespaces of the test's own on one wire: the IMDS app runs in a child process
in the first ("this machine", 10.98.0.1), and the other host holds its connections from the
second (10.98.0.2), where it has no socket on this machine. Root is needed to make them."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

import pytest

from tests.e2e.harness import linked_namespaces
from tests.helpers import child_json
from vaultd.http.imds import ImdsOptions

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("ip") is None,
    reason="network namespaces of the test's own need Linux, root and iproute2",
)

# More idle connections than a pool holds (the finding: about 400 of them).
HELD = 300

# In the other host's namespace: open COUNT connections to HOST:PORT, say so, then hold
# them, idle, until stdin closes.
HOLD = """
import socket, sys
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held = [socket.create_connection((host, port), timeout=10) for _ in range(count)]
print("holding", len(held), flush=True)
sys.stdin.read()
"""

# On this machine: the IMDS app on every address, allowing 10.98.0.0/24; the other host's
# HELD connections, each admitted or turned away over a cap; then 20 GETs of the owner on
# loopback. Prints their statuses and the pools' counts.
CHILD = """
import asyncio, json, socket, sys, time
from tests.helpers import FakeClock, FakeProvider
from vaultd.core.broker import Broker
from vaultd.http.guards import Guard
from vaultd.http.imds import ImdsApp, ImdsOptions
from vaultd.http.tokens import Tokens

def owner_get(port):
    # The status of one GET, or "reset": a connection turned away before it was read.
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    data = b""
    try:
        s.sendall(b"GET /latest/meta-data/ HTTP/1.1\\r\\nHost: 169.254.169.254\\r\\n"
                  b"Connection: close\\r\\n\\r\\n")
        while chunk := s.recv(65536):
            data += chunk
    except ConnectionResetError:
        return int(data.split()[1]) if data else "reset"
    finally:
        s.close()
    return int(data.split()[1])

async def main():
    other, hold, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    clock = FakeClock()
    broker = Broker(FakeProvider(clock), clock)
    await broker.switch("master")
    # Held connections stay open for the whole test, not closed as idle.
    imds = ImdsApp(broker, Tokens(clock), Guard.for_listener("0.0.0.0", 1),
                   ImdsOptions(request_deadline=120))
    listener = await imds.start("0.0.0.0", 0)
    port = listener.sockets[0].getsockname()[1]
    imds.guard = Guard.for_listener("0.0.0.0", port, ["10.98.0.0/24"])
    holder = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", other, sys.executable, "-c", hold, "10.98.0.1", str(port),
        str(count), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    line = await asyncio.wait_for(holder.stdout.readline(), 60)
    assert line == b"holding %d\\n" % count, line
    server = imds.server
    deadline = time.monotonic() + 60
    while len(server.connections) + server.over_cap < count:  # all accepted and counted
        assert time.monotonic() < deadline, (len(server.connections), server.over_cap)
        await asyncio.sleep(0.05)
    statuses = [await asyncio.to_thread(owner_get, port) for _ in range(20)]
    pools = {str(pool): n for pool, n in server.open.items()}
    holder.stdin.close()
    await holder.wait()
    await imds.shutdown()
    await broker.close()
    print(json.dumps({"owner": statuses, "open": pools}))

asyncio.run(main())
"""


def run_in(here: str, other: str) -> dict[str, Any]:
    argv = ["ip", "netns", "exec", here, sys.executable, "-c", CHILD, other, HOLD, str(HELD)]
    return child_json(argv, timeout=180)


def test_another_host_filling_its_pool_leaves_the_owners_slots_free() -> None:
    with linked_namespaces("10.98.0.1/24", "10.98.0.2/24") as (here, other):
        seen = run_in(here, other)
    assert seen["owner"] == [200] * 20, seen
    # The other host holds its whole pool, and no more: the rest were turned away.
    assert seen["open"]["network"] == ImdsOptions().max_network < HELD, seen
