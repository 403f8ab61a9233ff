"""The daemon's children (credential_process, mfa_process, ykman) end with it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vaultd.host.children import Children

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="process groups")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead; only its parent's wait would clear it.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def wait_gone(pid: int, within: float = 10) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_it_runs_a_command_as_subprocess_run_does() -> None:
    done = Children()(
        ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], capture_output=True, text=True
    )
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    with pytest.raises(subprocess.CalledProcessError):
        Children()(["/bin/sh", "-c", "exit 1"], check=True)


def test_a_timeout_kills_what_the_shell_started_too(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with pytest.raises(subprocess.TimeoutExpired):
        Children()(
            ["/bin/sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], timeout=0.5, text=True
        )
    assert wait_gone(int(pidfile.read_text()))


def test_stop_ends_a_child_a_worker_thread_waits_on(tmp_path: Path) -> None:
    children, pidfile = Children(), tmp_path / "pid"
    results: list[int] = []
    worker = threading.Thread(
        target=lambda: results.append(
            children(
                ["/bin/sh", "-c", f"echo $$ > {pidfile}; sleep 60"], timeout=120, text=True
            ).returncode
        )
    )
    worker.start()
    deadline = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert children.stop() == 1
    worker.join(10)
    assert results == [-9] and wait_gone(int(pidfile.read_text()))
    with pytest.raises(OSError, match="stopping"):
        children(["/bin/true"])


def test_a_descendant_that_left_the_group_cannot_hold_the_timeout_open(tmp_path: Path) -> None:
    # `setsid sleep &` keeps the output pipe open from outside the group: the wait after
    # the kill took as long as it lived (the refresh hung, past its own timeout).
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        Children()(
            ["/bin/sh", "-c", f"setsid sleep 60 & echo $! > {pidfile}; wait"],
            capture_output=True,
            timeout=0.5,
            text=True,
        )
    assert time.monotonic() - started < 10
    os.kill(int(pidfile.read_text()), 9)  # out of vaultd's reach: the test ends it
