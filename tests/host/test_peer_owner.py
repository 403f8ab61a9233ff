# ruff: noqa: E501 - verbatim /proc/net/tcp6 lines
"""Finding the uid behind a loopback TCP peer from /proc/net/tcp*."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from vaultd.host.peer_owner import find_owner, owner_of

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:23D1 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1
   1: 0100007F:D431 0100007F:23D1 01 00000000:00000000 00:00000000 00000000  1001        0 2 1
   2: 0100007F:23D1 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 3 1
   3: 0100007F:D432 FEA9FEA9:0050 01 00000000:00000000 00:00000000 00000000  1002        0 4 1
"""
TCP6 = """\
  sl  local_address                         remote_address                        st
   0: 0000000000000000FFFF00000100007F:D433 0000000000000000FFFF00000100007F:23D1 01 00000000:00000000 00:00000000 00000000  1003 0 5 1
   1: 00000000000000000000000001000000:D434 00000000000000000000000001000000:23D1 01 00000000:00000000 00:00000000 00000000  1004 0 6 1
"""


def test_matches_the_peer_side_only() -> None:
    lines = TCP.splitlines()
    assert find_owner(lines, "127.0.0.1", 0xD431) == 1001
    # Redirected from 169.254.169.254:80: the remote side is not our listener.
    assert find_owner(lines, "127.0.0.1", 0xD432) == 1002
    # Our own listening socket is never mistaken for a client.
    assert find_owner(lines, "127.0.0.1", 0x23D1) == 1000  # the accepted socket, not LISTEN
    assert find_owner(lines, "127.0.0.1", 1) is None


def test_ipv6_and_mapped_addresses() -> None:
    lines = TCP6.splitlines()
    assert find_owner(lines, "127.0.0.1", 0xD433) == 1003
    assert find_owner(lines, "::ffff:127.0.0.1", 0xD433) == 1003
    assert find_owner(lines, "::1", 0xD434) == 1004


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net/tcp (Linux)")
def test_real_connection_belongs_to_us() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        conn, peer = server.accept()
        try:
            assert owner_of(peer[0], peer[1]) == os.getuid()
        finally:
            conn.close()
            client.close()
