"""`vaultd mfa --watch` with no daemon: it says so, and that it keeps watching, and Ctrl-C
ends it with exit 0 (a watcher left open at login outlives daemon restarts)."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import drive_tty


def test_the_watch_says_that_it_waits_for_a_daemon(tmp_path: Path) -> None:
    socket_path = tmp_path / "no-daemon.sock"
    args = ["mfa", "--watch", "--interval", "0.1", "--control-socket", str(socket_path)]
    code, shown = drive_tty(args, [], b"MFA code for", interrupt_after=b"Ctrl-C stops)", timeout=10)
    text = shown.decode(errors="replace")
    assert code == 0, text
    assert "vaultd is not running" in text
    assert f"no daemon on {socket_path}" in text
    assert "(still watching: Ctrl-C stops)" in text
