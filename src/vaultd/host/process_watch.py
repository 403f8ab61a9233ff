"""Noticing on the event loop when another process exits.

A `vaultd exec` that is killed (`kill -9`) never runs its `finally`: the daemon must notice
by itself that the process that asked for an exec token is gone. Linux answers that without
polling through a pidfd (pidfd_open(2), Linux 5.3+), readable once the process exits; the
pid comes from the control connection's SO_PEERCRED, so it names the process that
connected, not one it claims to be. Elsewhere `watch_exit` returns None and the token's
lifetime is the only bound.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


def watch_exit(
    loop: asyncio.AbstractEventLoop, pid: int, on_exit: Callable[[], None]
) -> Callable[[], None] | None:
    """Call `on_exit()` on `loop` once process `pid` has exited (at once if it already has).

    Returns a function that stops watching, or None where the OS offers no process handle
    (then nothing is called).
    """
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd = opener(pid)
    except ProcessLookupError:
        loop.call_soon(on_exit)
        return lambda: None
    except OSError:
        return None
    closed = False

    def stop() -> None:
        nonlocal closed
        if not closed:
            closed = True
            loop.remove_reader(fd)
            os.close(fd)

    def exited() -> None:
        stop()
        on_exit()

    loop.add_reader(fd, exited)
    return stop
