"""`--allow-cidr` admits other hosts and containers, which have no socket on this machine; a
local process that binds one of this machine's own addresses in that network (a bridge, a
LAN or VPN address) does have one, and is held to the owner rule like a loopback client.

Real sockets in a network namespace of the test's own (holding 10.9.9.1/24), the IMDS app
in a child process there; root is needed to make it."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

import pytest

from tests.helpers import child_json
from vaultd.host.peer_owner import Accepted, Address, Row
from vaultd.http.admission import CANNOT_TELL, Owners

NAMESPACE = pytest.mark.skipif(
    not sys.platform.startswith("linux")
    or os.geteuid() != 0
    or shutil.which("unshare") is None
    or shutil.which("ip") is None,
    reason="a network namespace of the test's own needs Linux, root, unshare and ip",
)

# The address on `lo` (no dummy or veth module needed): for the guard it is not loopback.
SETUP = 'ip link set lo up && ip addr add 10.9.9.1/24 dev lo && exec "$@"'

# In the namespace: the IMDS app allowing 10.9.9.0/24, then one GET from 10.9.9.1 (an
# address this machine holds) and one from loopback; prints each status.
CHILD = """
import asyncio, json, os, socket, sys
from tests.helpers import FakeClock, FakeProvider
from vaultd.core.broker import Broker
from vaultd.http.guards import Guard
from vaultd.http.imds import ImdsApp, ImdsOptions
from vaultd.http.tokens import Tokens

def get(port, source, device):
    s = socket.socket()
    s.settimeout(5)
    if device:  # SO_BINDTODEVICE: hidden from a sock_diag request that names no device
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\\r\\n"
              b"Host: 169.254.169.254\\r\\nConnection: close\\r\\n\\r\\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    return int(data.split()[1])

async def main():
    clock = FakeClock()
    broker = Broker(FakeProvider(clock), clock)
    await broker.switch("master")
    uids = frozenset({os.getuid() + int(sys.argv[1])})  # +0: ours; else: another user's
    options = ImdsOptions(allow_uids=uids)
    imds = ImdsApp(broker, Tokens(clock), Guard.for_listener("127.0.0.1", 1), options)
    listener = await imds.start("127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    imds.guard = Guard.for_listener("127.0.0.1", port, ["10.9.9.0/24"])
    seen = {}
    for source in ("10.9.9.1", "127.0.0.1"):
        for device in ("", "lo"):
            seen[source + "%" + device] = await asyncio.to_thread(get, port, source, device)
    await imds.shutdown()
    await broker.close()
    print(json.dumps(seen))

asyncio.run(main())
"""


def statuses(other_uid: bool) -> dict[str, Any]:
    extra = "4242" if other_uid else "0"
    argv = ["unshare", "--net", "sh", "-c", SETUP, "setup", sys.executable, "-c", CHILD, extra]
    return child_json(argv, timeout=60)


@NAMESPACE
def test_a_local_process_on_an_allowed_network_address_is_held_to_the_owner_rule() -> None:
    # The client is this test's uid; allowing only another uid makes it "another user".
    # Bound to a device too (`curl --interface lo`): another user's is still refused, and
    # the owner's is still served.
    addresses = ("10.9.9.1%", "10.9.9.1%lo", "127.0.0.1%", "127.0.0.1%lo")
    assert statuses(other_uid=True) == dict.fromkeys(addresses, 403)
    assert statuses(other_uid=False) == dict.fromkeys(addresses, 200)


class Scripted:
    """An owner lookup answering fixed rows (None: the lookup failed)."""

    name = "scripted"
    keeps_reads = False

    def forget(self) -> None:
        pass

    def __init__(self, rows: list[Row] | None) -> None:
        self._rows = rows

    def rows(
        self, client: Address, server: Address, accepted: Accepted | None = None
    ) -> list[Row] | None:
        return self._rows


class AcceptedSocket:
    """The accepted socket's side `server_side` reads: no redirect, our listener."""

    family = 2

    def getsockopt(self, level: int, option: int, buflen: int, /) -> bytes:
        raise OSError("no original destination")

    def getsockname(self) -> tuple[str, int]:
        return ("10.9.9.1", 9169)

    def fileno(self) -> int:
        return 0  # any open descriptor: its inode is what a kept /proc read is checked by


PEER, US = ("10.9.9.7", 40000), ("10.9.9.1", 9169)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([], (None, None)),  # no socket here: another host or a container, served
        ([Row(PEER, ("10.9.9.1", 1), 1, 1000, 5)], (None, None)),  # another socket's row
        ([Row(PEER, US, 1, 1000, 5)], (1000, None)),  # ours, on this machine
        ([Row(PEER, US, 1, 4242, 5)], (4242, "connection owned by uid 4242, which is not allowed")),
        ([Row(PEER, US, 6, 0, 0)], (None, CANNOT_TELL)),  # here, but not live: refused
        (None, (None, CANNOT_TELL)),  # the lookup failed: refused
    ],
)
def test_the_rule_for_a_peer_on_an_allowed_network(
    rows: list[Row] | None, expected: tuple[int | None, str | None]
) -> None:
    owners = Owners(frozenset({1000}), Scripted(rows))
    assert owners.check(PEER, AcceptedSocket(), elsewhere=True) == expected
