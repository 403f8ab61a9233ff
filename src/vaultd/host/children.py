"""The daemon's child processes (credential_process, mfa_process, ykman): run like
`subprocess.run`, and stopped when the daemon stops.

They run in worker threads, each bounded by its own timeout. A daemon that stops meanwhile
takes the thread's wait with it, and the child would run on with no timeout left (a hung
ykman, an mfa_process waiting for a touch), re-parented to init. Each child is started in
a process group of its own, so that `stop` reaches what its shell started too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from typing import Any


class Children:
    """A `subprocess.run` stand-in (`__call__`) that remembers the children it has running;
    `stop()` kills them (SIGKILL to each one's process group) and any started after it.
    Thread-safe: children are started from worker threads, `stop` runs on the event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[Any]] = set()
        self._stopped = False

    def __call__(
        self, argv: list[str], *, timeout: float | None = None, check: bool = False, **kw: Any
    ) -> subprocess.CompletedProcess[Any]:
        """As `subprocess.run(argv, timeout=..., check=..., **kw)`; raises what it raises
        (TimeoutExpired after killing the child's group, CalledProcessError, OSError)."""
        with self._lock:
            if self._stopped:
                raise OSError("the daemon is stopping")
            if kw.pop("capture_output", False):
                kw["stdout"] = kw["stderr"] = subprocess.PIPE
            proc = subprocess.Popen(argv, start_new_session=True, **kw)
            self._running.add(proc)
        try:
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                _reap(proc)
                raise
            except BaseException:
                _kill_group(proc)
                _reap(proc)
                raise
        finally:
            with self._lock:
                self._running.discard(proc)
        done = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        if check:
            done.check_returncode()
        return done

    def stop(self) -> int:
        """Kill every child still running, and refuse new ones; returns how many."""
        with self._lock:
            self._stopped = True
            running = list(self._running)
        for proc in running:
            _kill_group(proc)
        return len(running)


def _reap(proc: subprocess.Popen[Any], grace: float = 2.0) -> None:
    """Wait for `proc`, killed, and what is left of its output. A descendant that left its
    group (setsid) may hold the pipes open for ever: after `grace` seconds they are closed
    unread. (That descendant itself is out of reach: no process group holds it.)"""
    try:
        proc.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait()


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL the process group `proc` leads (its own session), gone or not."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
