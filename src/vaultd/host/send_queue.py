"""How much of what was written to a connection its peer has yet to take from the kernel.

The IMDS listener's idle deadline keeps a connection whose client reads its replies. The
transport's own buffer shows that only when it drains below its low-water mark, and for a
slow reader with megabytes queued in the kernel that can take longer than the deadline:
Linux reports a socket writable again only once a third of its send buffer is free
(`sk_stream_wspace`). The kernel's send queue shrinks as soon as the client reads anything.
"""

from __future__ import annotations

import fcntl
import struct
import termios
from typing import Protocol

# Linux's SIOCOUTQ (tcp(7)) is TIOCOUTQ; other systems have no such ioctl here.
_OUTQ: int | None = getattr(termios, "TIOCOUTQ", None)


class HasFileno(Protocol):
    def fileno(self) -> int: ...


def unsent(sock: HasFileno | None) -> int | None:
    """Bytes the kernel holds for the peer of TCP socket `sock`, not yet acknowledged by
    it (Linux: the SIOCOUTQ ioctl, tcp(7)); None where this cannot be read (no socket, a
    closed one, another system)."""
    if sock is None or _OUTQ is None:
        return None
    try:
        raw = fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return None
    value: int = struct.unpack("i", raw)[0]
    return value
