# ruff: noqa: E501 - verbatim /proc/net/tcp6 lines
"""Finding the uid behind a loopback TCP peer: the exact socket, by netlink or /proc."""

from __future__ import annotations

import os
import socket
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from vaultd.host.peer_owner import (
    NLMSG_ERROR,
    PROC_TABLES,
    SOCK_DIAG_BY_FAMILY,
    Accepted,
    Address,
    NetlinkLookup,
    ProcLookup,
    Row,
    accepted_side,
    decide,
    diag_request,
    diag_rows,
    find_owner,
    lines_with,
    matching,
    owner_lookup,
    owner_of,
    server_side,
)

# 127.0.0.1:9169 is our listener (uid 1005); 127.0.0.1:8080 an attacker's listener.
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:23D1 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1
   1: 0100007F:D431 0100007F:23D1 01 00000000:00000000 00:00000000 00000000  1001        0 2 1
   2: 0100007F:23D1 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1005        0 3 1
   3: 0100007F:D432 FEA9FEA9:0050 01 00000000:00000000 00:00000000 00000000  1002        0 4 1
   4: 0100007F:D435 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1007        0 5 1
   5: 0100007F:D435 0100007F:23D1 01 00000000:00000000 00:00000000 00000000 65534        0 6 1
   6: 0100007F:D436 0100007F:23D1 06 00000000:00000000 03:00000000 00000000     0        0 0 1
   7: 0100007F:D437 0100007F:23D1 04 00000000:00000000 00:00000000 00000000  1009        0 0 1
   8: 0100007F:D438 0100007F:23D1 05 00000000:00000000 00:00000000 00000000  1008        0 9 1
"""
TCP6 = """\
  sl  local_address                         remote_address                        st
   0: 0000000000000000FFFF00000100007F:D433 0000000000000000FFFF00000100007F:23D1 01 00000000:00000000 00:00000000 00000000  1003 0 5 1
   1: 00000000000000000000000001000000:D434 00000000000000000000000001000000:23D1 01 00000000:00000000 00:00000000 00000000  1004 0 6 1
"""
US = ("127.0.0.1", 0x23D1)


def test_matches_the_exact_socket_only() -> None:
    lines = TCP.splitlines()
    assert find_owner(lines, ("127.0.0.1", 0xD431), US) == 1001
    # Redirected from 169.254.169.254:80: the client's remote side is the original destination.
    assert find_owner(lines, ("127.0.0.1", 0xD432), ("169.254.169.254", 80)) == 1002
    assert find_owner(lines, ("127.0.0.1", 0xD432), US) is None
    # Two sockets share 127.0.0.1:0xD435; only the one talking to us is our client, although
    # the victim's row (to the attacker's listener) is listed first.
    assert find_owner(lines, ("127.0.0.1", 0xD435), US) == 65534
    # Neither our listener (uid 1000) nor our accepted socket (uid 1005) is ever a client.
    assert find_owner(lines, US, ("0.0.0.0", 0)) is None  # noqa: S104 - the LISTEN row
    assert find_owner(lines, US, ("127.0.0.1", 0xD431)) == 1005  # only asked the other way
    assert find_owner(lines, ("127.0.0.1", 1), US) is None


def test_only_a_live_socket_held_by_a_process_counts() -> None:
    lines = TCP.splitlines()
    assert find_owner(lines, ("127.0.0.1", 0xD436), US) is None  # TIME_WAIT, listed as uid 0
    assert find_owner(lines, ("127.0.0.1", 0xD437), US) is None  # orphaned (inode 0)
    assert find_owner(lines, ("127.0.0.1", 0xD438), US) == 1008  # half-closed, still held


def test_more_than_one_matching_row_is_refused() -> None:
    row = Row(("127.0.0.1", 5), US, 1, 1000, 7)
    assert decide([row], ("127.0.0.1", 5), US) == 1000
    assert decide([row, Row(row.local, row.remote, 1, 1001, 8)], ("127.0.0.1", 5), US) is None
    assert decide([], ("127.0.0.1", 5), US) is None


def test_ipv6_and_mapped_addresses() -> None:
    lines = TCP6.splitlines()
    assert find_owner(lines, ("127.0.0.1", 0xD433), US) == 1003
    assert find_owner(lines, ("::ffff:127.0.0.1", 0xD433), ("::ffff:127.0.0.1", 0x23D1)) == 1003
    assert find_owner(lines, ("::1", 0xD434), ("::1", 0x23D1)) == 1004
    assert find_owner(lines, ("::1", 0xD434), US) is None


def test_netlink_request_names_one_socket() -> None:
    raw = diag_request(7, ("127.0.0.1", 0xD431), ("169.254.169.254", 80))
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", raw)
    assert (length, kind, seq) == (len(raw), SOCK_DIAG_BY_FAMILY, 7)
    assert flags == 1  # NLM_F_REQUEST only: an exact lookup, never a dump (NLM_F_DUMP 0x300)
    family, proto = raw[16], raw[17]
    assert (family, proto) == (socket.AF_INET, socket.IPPROTO_TCP)
    sport, dport = struct.unpack_from("!HH", raw, 24)
    assert (sport, dport) == (0xD431, 80)
    assert raw[28:32] == socket.inet_aton("127.0.0.1")
    assert raw[44:48] == socket.inet_aton("169.254.169.254")


def _diag_msg(seq: int, state: int, uid: int, inode: int) -> bytes:
    sockid = (
        struct.pack("!HH", 0xD431, 0x23D1)
        + socket.inet_aton("127.0.0.1")
        + bytes(12)
        + socket.inet_aton("127.0.0.1")
        + bytes(12)
        + struct.pack("=III", 0, 1, 2)
    )
    body = struct.pack("=BBBB", socket.AF_INET, state, 0, 0) + sockid
    body += struct.pack("=IIIII", 0, 0, 0, uid, inode)
    return struct.pack("=IHHII", 16 + len(body), SOCK_DIAG_BY_FAMILY, 0, seq, 0) + body


def test_netlink_answers_are_parsed_and_judged() -> None:
    client = ("127.0.0.1", 0xD431)
    rows = diag_rows(_diag_msg(3, 1, 4242, 99), 3)
    assert rows == [Row(client, US, 1, 4242, 99)]
    assert decide(rows, client, US) == 4242
    assert diag_rows(_diag_msg(2, 1, 4242, 99), 3) == []  # another request's answer
    assert decide(diag_rows(_diag_msg(3, 6, 0, 0), 3), client, US) is None  # TIME_WAIT
    assert decide(diag_rows(_diag_msg(3, 10, 1, 5), 3), client, US) is None  # LISTEN
    two = _diag_msg(3, 1, 4242, 99) + _diag_msg(3, 1, 65534, 98)
    assert decide(diag_rows(two, 3), client, US) is None
    not_found = struct.pack("=IHHII", 20, NLMSG_ERROR, 0, 3, 0) + struct.pack("=i", -2)
    assert diag_rows(not_found, 3) == []
    denied = struct.pack("=IHHII", 20, NLMSG_ERROR, 0, 3, 0) + struct.pack("=i", -13)
    with pytest.raises(OSError, match="EACCES"):
        diag_rows(denied, 3)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="netlink and /proc (Linux)")
@pytest.mark.parametrize("lookup", [NetlinkLookup, ProcLookup])
def test_real_connections(lookup: type[NetlinkLookup] | type[ProcLookup]) -> None:
    owners = lookup()
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        conn, peer = server.accept()
        try:
            ours = server_side(conn)
            assert ours == server.getsockname()
            assert owner_of(owners, peer, ours) == os.getuid()
            assert owner_of(owners, peer, ("127.0.0.1", 1)) is None  # not the socket talking to us
            client.shutdown(socket.SHUT_WR)  # half-closed: still answered
            assert owner_of(owners, peer, ours) == os.getuid()
            client.close()  # orphaned at once (inode 0): never matches again
            assert owner_of(owners, peer, ours) is None
        finally:
            conn.close()
            client.close()


class CountingReads(ProcLookup):
    """The /proc lookup, noting for each lookup whether it read the tables afresh (`looked`,
    in order) and counting only the fresh reads (`fresh`)."""

    def __init__(self, tables: Sequence[Path] = PROC_TABLES) -> None:
        super().__init__(tables)
        self.looked: list[bool] = []
        self.fresh: list[int] = []

    def rows(
        self, client: Address, server: Address, accepted: Accepted | None = None
    ) -> list[Row] | None:
        before = self._read
        found = super().rows(client, server, accepted)
        self.looked.append(self._read is not before)
        if self._read is not before:
            self.fresh.append(1)
        return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc (Linux)")
def test_the_proc_fallback_shares_a_read_only_with_connections_it_lists() -> None:
    owners = CountingReads()
    reads = owners.fresh
    with socket.create_server(("127.0.0.1", 0)) as server:
        first = socket.create_connection(server.getsockname())
        conn1, peer1 = server.accept()
        ours, mine1 = server_side(conn1), accepted_side(conn1)
        assert owner_of(owners, peer1, ours, mine1) == os.getuid()
        assert owner_of(owners, peer1, ours, mine1) == os.getuid()
        assert len(reads) == 1  # the second lookup used the first read
        # The same address pair, another socket (as after a close and a reuse of the pair):
        # the kept read does not list that socket, so it is read again.
        assert owner_of(owners, peer1, ours, (mine1[0], mine1[1] + 1)) == os.getuid()
        assert len(reads) == 2
        second = socket.create_connection(server.getsockname())  # made after that read
        conn2, peer2 = server.accept()
        assert owner_of(owners, peer2, ours, accepted_side(conn2)) == os.getuid()
        assert len(reads) == 3  # not in the kept read: read again
        assert owner_of(owners, peer2, ours) == os.getuid()  # nothing to check it by: read
        assert len(reads) == 4
        for s in (first, second, conn1, conn2):
            s.close()


def test_only_the_lines_holding_the_clients_port_are_parsed() -> None:
    text = "  sl  local_address\n 0: 0100007F:1F90 0100007F:A1B2 01\n 1: 0100007F:A1B2 x\n 2: y\n"
    assert list(lines_with(text, ":A1B2 ")) == [
        " 0: 0100007F:1F90 0100007F:A1B2 01",
        " 1: 0100007F:A1B2 x",
    ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="netlink (Linux)")
def test_netlink_is_the_lookup_on_linux() -> None:
    assert isinstance(owner_lookup(), NetlinkLookup)


class Blind(NetlinkLookup):
    """sock_diag that takes every request and finds no socket (ENOENT), as a kernel without
    inet_diag answers."""

    def rows(
        self, client: Address, server: Address, accepted: Accepted | None = None
    ) -> list[Row] | None:
        return []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="netlink and /proc (Linux)")
def test_a_netlink_that_cannot_find_our_own_connection_gives_way_to_proc(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Before: every client refused, while status said "netlink sock_diag".
    lookup = owner_lookup(Blind)
    assert isinstance(lookup, ProcLookup)
    assert "does not find this process's own connection" in caplog.text


def test_a_kept_read_that_lists_the_accepted_socket_answers_for_a_remote_client(
    tmp_path: Path,
) -> None:
    """A container's connection has no client row on this machine; when the kept read
    lists our accepted socket (address and inode), it was read after the connection was
    made, so that absence is this connection's: no second read."""
    server_row = (
        "   0: 0100007F:1F90 0A09090A:A1B2 01 00000000:00000000 00:00000000 00000000"
        "  1000        0 4242 1 0000000000000000 20 4 30 10 -1\n"
    )
    table = tmp_path / "tcp"
    table.write_text("  sl  local_address rem_address   st\n" + server_row)
    lookup = CountingReads((table,))
    reads = lookup.looked
    client, ours = ("10.9.9.10", 0xA1B2), ("127.0.0.1", 0x1F90)
    for _ in range(2):
        found = lookup.rows(client, ours, (ours, 4242))
        assert found is not None and matching(found, client, ours) == []
    assert reads == [True, False]
    lookup.rows(client, ours, (ours, 4243))  # another socket: read again
    assert reads == [True, False, True]
