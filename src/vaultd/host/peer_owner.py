"""Which local user owns the client socket at the other end of one loopback TCP connection.

The client's socket is named by the connection's exact 4-tuple: its local side is our peer
(address and port), its remote side is what the client connected to — our listener, or,
when `vaultd network install`'s nftables redirect brought the connection here, the original
destination 169.254.169.254:80 that `SO_ORIGINAL_DST` returns. Matching less than the full
tuple is a hole (issue: two sockets may share a local 127.0.0.1:E when their destinations
differ, and `IP_LOCAL_PORT_RANGE` lets any user ask for that port).

Linux answers for exactly one socket through netlink `sock_diag` (`SOCK_DIAG_BY_FAMILY` with
an exact `inet_diag_sockid`, no dump; see sock_diag(7)): one small round trip whatever the
machine's socket count. Where netlink is unavailable, /proc/net/tcp{,6} is read and matched
on the same full tuple. Either way a socket is accepted only when exactly one row matches
and it is *live*: ESTABLISHED, or half-closed by the client (FIN_WAIT1/2), and still held
by a process (inode not 0). TIME_WAIT rows and orphaned sockets (listed with uid 0) and a
listener the kernel falls back to never match.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

log = logging.getLogger("vaultd.owner")

Address = tuple[str, int]
# The accepted (server-side) socket's own address and inode: a table that lists that very
# socket was read after the connection was made.
Accepted = tuple[Address, int]
PROC_TABLES: Final = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
# include/net/tcp_states.h
TCP_ESTABLISHED: Final = 1
TCP_FIN_WAIT1: Final = 4
TCP_FIN_WAIT2: Final = 5
TCP_TIME_WAIT: Final = 6
LIVE_STATES: Final = frozenset({TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2})
# linux/netfilter_ipv4.h and linux/netfilter_ipv6/ip6_tables.h: the same number at both levels.
SO_ORIGINAL_DST: Final = 80
# linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h
NETLINK_SOCK_DIAG: Final = 4
SOCK_DIAG_BY_FAMILY: Final = 20
NLM_F_REQUEST: Final = 0x1
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
_NLMSG = struct.Struct("=IHHII")
_REQ_HEAD = struct.Struct("=BBBxI")  # family, protocol, extensions, pad, states
_PORTS = struct.Struct("!HH")
_TAIL = struct.Struct("=III")  # interface, cookie (two words)
_MSG_HEAD = struct.Struct("=BBBB")  # family, state, timer, retransmits
_MSG_TAIL = struct.Struct("=IIIII")  # expires, rqueue, wqueue, uid, inode
_SOCKID_LEN: Final = 48
_MSG_LEN: Final = _MSG_HEAD.size + _SOCKID_LEN + _MSG_TAIL.size
_NO_COOKIE: Final = 0xFFFFFFFF
# A netlink answer for one socket comes back within the send; this only bounds a stuck kernel.
NETLINK_TIMEOUT: Final = 0.25


@dataclass(frozen=True)
class Row:
    """One socket as the kernel lists it: its own side, the side it talks to, and owner."""

    local: Address
    remote: Address
    state: int
    uid: int
    inode: int


class OwnerLookup(Protocol):
    """Answers `rows(client, server)`: the kernel's rows for sockets whose local side is
    `client` and whose remote side is `server` in this network namespace (usually one or
    none; other rows may come along, `matching` picks), or None when the lookup itself
    failed. `decide` turns them into an owner. `name` is shown by `vaultd status`.
    `keeps_reads`: what it read is kept until `forget()`, and `rows` is then given the
    `accepted` socket's side (`accepted_side`) to tell whether a kept read is recent enough."""

    name: str
    keeps_reads: bool

    def rows(
        self, client: Address, server: Address, accepted: Accepted | None = None
    ) -> list[Row] | None: ...

    def forget(self) -> None: ...


def normal(host: str) -> str:
    """An address as the kernel's tables compare it: no zone, v4-mapped IPv6 as IPv4."""
    addr = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def matching(rows: Sequence[Row], client: Address, server: Address) -> list[Row]:
    """The rows that are the socket client -> server (its local side `client`)."""
    want_local = (normal(client[0]), client[1])
    want_remote = (normal(server[0]), server[1])
    return [r for r in rows if r.local == want_local and r.remote == want_remote]


def decide(rows: Sequence[Row], client: Address, server: Address) -> int | None:
    """The owner when exactly one row is the socket client -> server and it is live."""
    matches = matching(rows, client, server)
    if len(matches) != 1:
        return None
    row = matches[0]
    if row.state not in LIVE_STATES or row.inode == 0:
        return None
    return row.uid


# -- the other end of an accepted connection -----------------------------------------------
def _sockaddr(raw: bytes, family: int) -> Address | None:
    if family == socket.AF_INET and len(raw) >= 8:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), struct.unpack("!H", raw[2:4])[0]
    if family == socket.AF_INET6 and len(raw) >= 24:
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), struct.unpack("!H", raw[2:4])[0]
    return None


class AcceptedSocket(Protocol):
    """What `server_side` needs of a socket (asyncio hands out a wrapper, not the socket)."""

    @property
    def family(self) -> int: ...

    def getsockopt(self, level: int, option: int, buflen: int, /) -> bytes: ...

    def getsockname(self) -> Any: ...


def server_side(sock: AcceptedSocket) -> Address:
    """What the client connected to: the original destination when a NAT redirect (nftables
    `redirect`) rewrote it, else this socket's own address. Raises OSError when the socket is
    already gone."""
    level = socket.SOL_IP if sock.family == socket.AF_INET else socket.IPPROTO_IPV6
    try:
        original = _sockaddr(sock.getsockopt(level, SO_ORIGINAL_DST, 28), sock.family)
    except OSError:  # no conntrack entry: not redirected
        original = None
    if original is not None:
        return original
    name = sock.getsockname()
    return str(name[0]), int(name[1])


def accepted_side(sock: Any) -> Accepted:
    """The accepted socket's own address and inode (what `ProcLookup` checks a kept read
    against). Raises OSError when the socket is already gone."""
    own = sock.getsockname()
    return (str(own[0]), int(own[1])), os.fstat(sock.fileno()).st_ino


# -- netlink sock_diag ---------------------------------------------------------------------
def _packed(host: str) -> tuple[int, bytes]:
    addr = ipaddress.ip_address(normal(host))
    if addr.version == 4:
        return socket.AF_INET, addr.packed + bytes(12)
    return socket.AF_INET6, addr.packed


def diag_request(seq: int, client: Address, server: Address, interface: int = 0) -> bytes:
    """A SOCK_DIAG_BY_FAMILY request for exactly the TCP socket client -> server; for a
    socket bound to a device (SO_BINDTODEVICE), `interface` must be that device's index."""
    family, src = _packed(client[0])
    _, dst = _packed(server[0])
    body = (
        _REQ_HEAD.pack(family, socket.IPPROTO_TCP, 0, 0xFFFFFFFF)
        + _PORTS.pack(client[1], server[1])
        + src
        + dst
        + _TAIL.pack(interface, _NO_COOKIE, _NO_COOKIE)
    )
    return _NLMSG.pack(_NLMSG.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq, 0) + body


def _unpack_sockid(family: int, raw: bytes) -> tuple[Address, Address]:
    sport, dport = _PORTS.unpack_from(raw)
    if family == socket.AF_INET:
        src, dst = raw[4:8], raw[20:24]
    else:
        src, dst = raw[4:20], raw[20:36]
    fam = socket.AF_INET if family == socket.AF_INET else socket.AF_INET6
    return (
        (normal(socket.inet_ntop(fam, src)), sport),
        (normal(socket.inet_ntop(fam, dst)), dport),
    )


def diag_rows(data: bytes, seq: int) -> list[Row]:
    """The inet_diag_msg rows of a netlink answer to request `seq`. An error message
    (ENOENT: no such socket) yields no rows; other errors raise OSError."""
    rows: list[Row] = []
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, kind, _flags, got_seq, _pid = _NLMSG.unpack_from(data, offset)
        if length < _NLMSG.size or offset + length > len(data):
            break
        body = data[offset + _NLMSG.size : offset + length]
        offset += (length + 3) & ~3
        if got_seq != seq or kind == NLMSG_DONE:
            continue
        if kind == NLMSG_ERROR:
            code = -struct.unpack_from("=i", body)[0] if len(body) >= 4 else errno.EIO
            if code in (0, errno.ENOENT):
                continue
            raise OSError(code, f"sock_diag: {errno.errorcode.get(code, code)}")
        if kind != SOCK_DIAG_BY_FAMILY or len(body) < _MSG_LEN:
            continue
        family, state, _timer, _retrans = _MSG_HEAD.unpack_from(body)
        local, remote = _unpack_sockid(family, body[4 : 4 + _SOCKID_LEN])
        *_, uid, inode = _MSG_TAIL.unpack_from(body, 4 + _SOCKID_LEN)
        rows.append(Row(local, remote, state, uid, inode))
    return rows


class NetlinkLookup:
    """Asks the kernel about one socket over NETLINK_SOCK_DIAG. Raises OSError at creation
    when netlink sock_diag is not available (not Linux, a sandbox without it)."""

    name = "netlink sock_diag (exact socket)"
    keeps_reads = False  # each answer is the kernel's at that moment

    def __init__(self) -> None:
        family = getattr(socket, "AF_NETLINK", None)
        if family is None:
            raise OSError(errno.EAFNOSUPPORT, "no AF_NETLINK on this platform")
        self._sock = socket.socket(family, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
        self._sock.settimeout(NETLINK_TIMEOUT)
        self._seq = 0

    def rows(
        self, client: Address, server: Address, accepted: Accepted | None = None
    ) -> list[Row] | None:
        """The socket's row, asked for with no device first. The kernel matches a socket
        bound to a device (SO_BINDTODEVICE, which any user may set since Linux 5.7) only
        when the request names that device, so "no such socket" is asked again for each
        of the namespace's interfaces before it is believed: otherwise such a client of
        another user would pass for a container (`Owners.check`, elsewhere)."""
        try:
            found = self._ask(client, server, 0)
            if found:
                return found
            for interface, _name in socket.if_nameindex():
                found = self._ask(client, server, interface)
                if found:
                    return found
        except (OSError, ValueError) as exc:
            log.warning("sock_diag lookup failed: %s", exc)
            return None
        return []

    def _ask(self, client: Address, server: Address, interface: int) -> list[Row]:
        self._seq = (self._seq + 1) & 0x7FFFFFFF
        seq = self._seq
        self._sock.send(diag_request(seq, client, server, interface))
        rows: list[Row] = []
        while True:
            data = self._sock.recv(16384)
            rows += diag_rows(data, seq)
            if _answered(data, seq):
                return rows

    def forget(self) -> None:
        """Nothing is kept."""

    def close(self) -> None:
        self._sock.close()


def _answered(data: bytes, seq: int) -> bool:
    """A non-dump answer is one message (a row or an error) carrying our sequence number."""
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, _kind, _flags, got_seq, _pid = _NLMSG.unpack_from(data, offset)
        if got_seq == seq:
            return True
        if length < _NLMSG.size:
            return False
        offset += (length + 3) & ~3
    return False


# -- /proc fallback ------------------------------------------------------------------------
def _decode(field: str) -> Address | None:
    """`0100007F:1F90` -> ("127.0.0.1", 8080); IPv6 in four little-endian words."""
    addr_hex, _, port_hex = field.partition(":")
    try:
        raw = bytes.fromhex(addr_hex)
        port = int(port_hex, 16)
    except ValueError:
        return None
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1]), port
    if len(raw) == 16:
        words = struct.unpack("<4I", raw)
        return normal(str(ipaddress.IPv6Address(struct.pack(">4I", *words)))), port
    return None


def proc_rows(lines: Iterable[str]) -> list[Row]:
    """Rows of /proc/net/tcp or tcp6 (header and malformed lines skipped)."""
    rows: list[Row] = []
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or fields[0] == "sl":
            continue
        local, remote = _decode(fields[1]), _decode(fields[2])
        try:
            state, uid, inode = int(fields[3], 16), int(fields[7]), int(fields[9])
        except ValueError:
            continue
        if local is not None and remote is not None:
            rows.append(Row(local, remote, state, uid, inode))
    return rows


def find_owner(lines: Iterable[str], client: Address, server: Address) -> int | None:
    """The owner of the one live socket client -> server among /proc/net/tcp* lines."""
    return decide(proc_rows(lines), client, server)


def lines_with(text: str, needle: str) -> Iterator[str]:
    """The lines of `text` that contain `needle` (str.find, not a parse of every line)."""
    at = text.find(needle)
    while at != -1:
        start = text.rfind("\n", 0, at) + 1
        end = text.find("\n", at)
        end = len(text) if end == -1 else end
        yield text[start:end]
        at = text.find(needle, end)


class ProcLookup:
    """The fallback: reads all of /proc/net/tcp{,6}, so its cost grows with the socket count.

    Two things keep a flood of connections from stalling the event loop on it: only the
    lines holding the client's port (`:PPPP ` in the kernel's hex) are parsed, and the
    tables read are kept until `forget()` (the caller's next loop turn), so connections
    accepted together share one read. A kept read serves a connection only when it lists
    the `accepted` socket itself (its address and inode): then it was read after that
    connection was made, and the client row beside it, or its absence (a container,
    another host), is that connection's, not an earlier one's with the same address pair.
    Any other lookup reads the tables afresh."""

    name = "/proc/net/tcp (full 4-tuple)"
    keeps_reads = True

    def __init__(self, tables: Sequence[Path] = PROC_TABLES) -> None:
        self.tables = tables
        self._read: list[str] | None = None

    def rows(
        self, client: Address, server: Address, accepted: Accepted | None = None
    ) -> list[Row] | None:
        needle = f":{client[1]:04X} "
        if self._read is not None and accepted is not None:
            kept = self._rows(self._read, needle)
            if _lists(kept, accepted, client):  # read after this connection was made
                return kept
        read = []
        for table in self.tables:
            try:
                with table.open(encoding="ascii", errors="replace") as fh:
                    read.append(fh.read())
            except OSError:
                continue
        if not read:
            return None  # no table at all: nothing is known
        self._read = read
        return self._rows(read, needle)

    @staticmethod
    def _rows(texts: list[str], needle: str) -> list[Row]:
        return [row for text in texts for row in proc_rows(lines_with(text, needle))]

    def forget(self) -> None:
        """Drop the tables read: the next lookup reads them afresh."""
        self._read = None


def _lists(rows: Sequence[Row], accepted: Accepted, client: Address) -> bool:
    """Whether `rows` hold the accepted socket itself: its address, the client, its inode."""
    (host, port), inode = accepted
    mine, theirs = (normal(host), port), (normal(client[0]), client[1])
    return any(r.local == mine and r.remote == theirs and r.inode == inode for r in rows)


def owner_of(
    lookup: OwnerLookup, client: Address, server: Address, accepted: Accepted | None = None
) -> int | None:
    """The uid of the one live socket client -> server (`decide`), or None."""
    rows = lookup.rows(client, server, accepted)
    return None if rows is None else decide(rows, client, server)


def answers_for_itself(lookup: OwnerLookup) -> bool:
    """Whether `lookup` finds this process as the owner of a loopback connection it makes
    to itself. A kernel can take sock_diag requests and still answer ENOENT for every
    socket (inet_diag built as a module that cannot be loaded): every client would then be
    refused while status named the lookup as working."""
    try:
        with socket.create_server(("127.0.0.1", 0)) as server:
            address = server.getsockname()
            with socket.create_connection(address, timeout=1) as _client:
                conn, peer = server.accept()
                with conn:
                    return owner_of(lookup, peer, address) == os.geteuid()
    except OSError:
        return False


def listener_owner(
    lookup: OwnerLookup, address: Address, timeout: float = 1.0, tries: int = 20
) -> int | None:
    """The uid of whatever listens on `address` (host, port), or None when nothing accepts
    a connection there (or `address` is no address) or its owner is not found. The kernel
    makes the listener's side of the connection made to ask with the listener's owner,
    before any accept(2): that socket has no inode yet, which `decide` (for clients)
    rightly refuses, and here it is the point. A listener with TCP_DEFER_ACCEPT keeps that
    side a half-made request socket (owned by no one) until data arrives, so two bytes are
    sent (CR LF, which an HTTP server skips before a request line) and the lookup is asked
    again, up to `tries` times 10 ms apart, until the side is a whole socket."""
    try:
        with socket.create_connection(address, timeout=timeout) as conn:
            server, mine = conn.getpeername()[:2], conn.getsockname()[:2]
            conn.sendall(b"\r\n")
            for _ in range(tries):
                found = matching(lookup.rows(server, mine, None) or (), server, mine)
                if len(found) == 1 and found[0].state == TCP_ESTABLISHED:
                    return found[0].uid
                time.sleep(0.01)
    except (OSError, UnicodeError, ValueError):  # getaddrinfo's IDNA step raises UnicodeError
        return None
    return None


def owner_lookup(netlink: Callable[[], OwnerLookup] = NetlinkLookup) -> OwnerLookup:
    """Netlink sock_diag when the kernel offers it and it answers for a connection of our
    own (`answers_for_itself`), else the /proc tables."""
    try:
        lookup = netlink()
    except OSError as exc:
        log.info("netlink sock_diag unavailable (%s); reading /proc/net/tcp instead", exc)
        return ProcLookup()
    if answers_for_itself(lookup):
        return lookup
    close = getattr(lookup, "close", None)
    if close is not None:
        close()
    log.warning(
        "netlink sock_diag does not find this process's own connection (inet_diag missing?); "
        "reading /proc/net/tcp instead"
    )
    return ProcLookup()
