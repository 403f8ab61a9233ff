"""How the daemon stops: SIGTERM and SIGHUP (a terminal's hang-up under `vaultd serve &`)
alike, cleanly; and SIGTERM while an STS call hangs, promptly, abandoning the call instead of
waiting out botocore's read timeouts (18.9 s before; issue 13 section 7)."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Daemon, run_vaultd
from vaultd.client import ControlClient

CONFIG = """\
[profile base]
region = us-east-1

[profile hung]
source_profile = base
role_arn = arn:aws:iam::222233334444:role/DeveloperRole
"""
# A bound on behaviour, not a benchmark: the call it abandons would take 10 s or more.
PROMPT_EXIT = 5.0


class BlackHole:
    """A loopback "STS" that accepts connections and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepted = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)
            self.accepted.set()

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def black_hole(monkeypatch: pytest.MonkeyPatch, isolated: Path) -> Iterator[BlackHole]:
    hole = BlackHole()
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", hole.url)
    (isolated / "home" / ".aws" / "config").write_text(CONFIG)
    done = run_vaultd("add", "base", "--stdin", stdin="AKIAEXAMPLE000000001\n" + "s" * 40 + "\n")
    assert done.returncode == 0, done.stderr
    try:
        yield hole
    finally:
        hole.close()


def test_sigterm_during_a_hung_sts_call_exits_promptly(
    black_hole: BlackHole, daemon: Daemon
) -> None:
    daemon.args = ("--profile", "hung")
    daemon.start()
    assert black_hole.accepted.wait(20), "the daemon never called STS"
    assert daemon.proc is not None
    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    code = daemon.proc.wait(30)
    took = time.monotonic() - started
    log = daemon.log()
    assert code == 0, log
    assert took < PROMPT_EXIT, f"took {took:.1f}s to exit\n{log}"
    assert "Traceback" not in log, log


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stopping_signal_stops_the_daemon_cleanly(
    user_keys: tuple[str, str], daemon: Daemon, sig: signal.Signals
) -> None:
    daemon.start()
    assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0
    socket_path = daemon.control_socket()
    grant = ControlClient(socket_path).call("POST", "/v1/exec-tokens", {"profile": "master"})
    assert daemon.proc is not None
    daemon.proc.send_signal(sig)
    try:
        code = daemon.proc.wait(30)
    except subprocess.TimeoutExpired:
        daemon.proc.kill()  # not left running: it ignored the signal
        raise AssertionError(f"the daemon did not stop on {sig.name}:\n{daemon.log()}") from None
    log = daemon.log()
    assert code == 0, log
    # The clean way: said, the exec tokens ended, the control socket removed.
    assert " INFO stopping\n" in log
    assert f"exec token {grant['id']} for master ended: the daemon is stopping" in log
    assert not socket_path.exists()
    assert "Traceback" not in log
