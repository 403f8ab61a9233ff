"""Sockets handed over by systemd (socket activation: LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES).

The first inherited fd is 3. Sockets named `imds` or `control` (FileDescriptorName=) are
used as named; unnamed ones are told apart by family: TCP is IMDS, Unix is control.
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

FIRST_FD = 3


def inherited(
    env: MutableMapping[str, str] | None = None, pid: int | None = None
) -> dict[str, socket.socket]:
    env = os.environ if env is None else env
    pid = os.getpid() if pid is None else pid
    if env.get("LISTEN_PID") != str(pid):
        return {}
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return {}
    names = env.get("LISTEN_FDNAMES", "").split(":")
    found: dict[str, socket.socket] = {}
    for i in range(count):
        sock = socket.socket(fileno=FIRST_FD + i)
        os.set_inheritable(sock.fileno(), False)
        name = names[i] if i < len(names) and names[i] in ("imds", "control") else None
        if name is None:
            name = "control" if sock.family == socket.AF_UNIX else "imds"
        found.setdefault(name, sock)
    # Our children (notifiers, code sources) must not think these are theirs.
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(var, None)
    return found
