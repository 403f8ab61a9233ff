"""Which local user owns the other end of a loopback TCP connection (Linux).

The kernel lists every TCP socket in /proc/net/tcp and /proc/net/tcp6 with its local and
remote address and the uid that owns it. The client's socket is the one whose *local*
address is our peer's address; its remote address is our listener, or 169.254.169.254:80
when an nftables redirect brought the connection here, so only the local side is matched.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable
from pathlib import Path

PROC_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
# States in which a client socket can be talking to us: ESTABLISHED, FIN_WAIT1/2, CLOSE_WAIT...
_TCP_LISTEN = "0A"


def _decode(field: str) -> tuple[str, int] | None:
    """`0100007F:1F90` -> ("127.0.0.1", 8080); IPv6 in four little-endian words."""
    addr_hex, _, port_hex = field.partition(":")
    try:
        raw = bytes.fromhex(addr_hex)
        port = int(port_hex, 16)
    except ValueError:
        return None
    if len(raw) == 4:
        host = socket.inet_ntop(socket.AF_INET, raw[::-1])
    elif len(raw) == 16:
        words = struct.unpack("<4I", raw)
        addr = ipaddress.IPv6Address(struct.pack(">4I", *words))
        host = str(addr.ipv4_mapped) if addr.ipv4_mapped else str(addr)
    else:
        return None
    return host, port


def _normal(host: str) -> str:
    addr = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def find_owner(lines: Iterable[str], peer_host: str, peer_port: int) -> int | None:
    """The uid of the socket bound to (peer_host, peer_port), from /proc/net/tcp* lines."""
    want = (_normal(peer_host), peer_port)
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or fields[0] == "sl" or fields[3] == _TCP_LISTEN:
            continue
        if _decode(fields[1]) == want:
            try:
                return int(fields[7])
            except ValueError:
                return None
    return None


def owner_of(peer_host: str, peer_port: int, tables: Iterable[Path] = PROC_TABLES) -> int | None:
    for table in tables:
        try:
            with table.open(encoding="ascii", errors="replace") as fh:
                uid = find_owner(fh, peer_host, peer_port)
        except OSError:
            continue
        if uid is not None:
            return uid
    return None
