"""systemd's notify protocol and desktop notifications."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaultd.host.notify import Announcer, sd_notify, watchdog_interval


def test_sd_notify_sends_one_datagram(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        assert sd_notify("READY=1\nSTATUS=hi", {"NOTIFY_SOCKET": str(path)})
        assert sock.recv(4096) == b"READY=1\nSTATUS=hi"


def test_sd_notify_abstract_address() -> None:
    name = f"vaultd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert sd_notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(4096) == b"STOPPING=1"


def test_sd_notify_without_systemd_is_a_no_op(tmp_path: Path) -> None:
    assert not sd_notify("READY=1", {})
    assert not sd_notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")})


def test_watchdog_interval() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "3", "WATCHDOG_PID": str(os.getpid())}) == 0.5
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None


@contextlib.contextmanager
def linux_announcer(
    tmp_path: Path, spawned: list[list[str]]
) -> Iterator[tuple[socket.socket, Announcer]]:
    """An Announcer on Linux with notify-send found, its NOTIFY_SOCKET bound to a test
    socket, and the programs it starts recorded in `spawned` instead of run."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        yield (
            sock,
            Announcer(
                env={"NOTIFY_SOCKET": str(path)},
                platform="linux",
                which=lambda tool: f"/usr/bin/{tool}",
                spawn=spawned.append,
            ),
        )


def test_mfa_announcement_status_and_desktop(tmp_path: Path) -> None:
    spawned: list[list[str]] = []
    with linux_announcer(tmp_path, spawned) as (sock, announcer):
        announcer.mfa_needed("master", "arn:aws:iam::111122223333:mfa/e", early=False)
        assert sock.recv(4096) == b"STATUS=waiting for MFA for master"
    assert spawned[0][0] == "notify-send"
    assert "master" in spawned[0][-1] and "vaultd mfa CODE" in spawned[0][-1]
    mac = Announcer(env={}, platform="darwin", which=lambda t: t, spawn=spawned.append)
    mac.mfa_needed("master", "x", early=True)
    assert spawned[1][:2] == ["osascript", "-e"]
    assert "renew" in spawned[1][2]


def test_a_missing_or_failing_notifier_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, "vaultd.host.notify")
    missing = Announcer(env={}, platform="linux", which=lambda tool: None)
    for _ in range(3):
        missing.mfa_needed("master", "x", early=False)
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage() == (
        "notify-send not found: no desktop notification for sign-in and MFA requests"
        " (further notifier problems are not logged)"
    )

    caplog.clear()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "notify-send"
    tool.write_text("#!/bin/sh\nexit 1\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    failing = Announcer(env={}, platform="linux")
    before = set(threading.enumerate())
    failing.mfa_needed("master", "x", early=False)  # the real spawner, in its own thread
    failing.mfa_needed("master", "x", early=False)
    for thread in set(threading.enumerate()) - before:
        thread.join(10)
    assert [r.getMessage() for r in caplog.records if "notify-send" in r.getMessage()] == [
        "notify-send exited with status 1 (further notifier problems are not logged)"
    ]


def test_sign_in_announcement_names_the_command(tmp_path: Path) -> None:
    spawned: list[list[str]] = []
    with linux_announcer(tmp_path, spawned) as (sock, announcer):
        message = "IAM Identity Center corp: expired: run `aws sso login --sso-session corp`"
        announcer.login_needed("aws sso login --sso-session corp", message)
        assert sock.recv(4096) == b"STATUS=waiting for sign-in: aws sso login --sso-session corp"
    assert spawned == [
        ["notify-send", "--app-name=vaultd", "vaultd: sign-in needed", message],
    ]
