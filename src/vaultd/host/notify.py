"""Telling the world what the daemon waits for: systemd's notify protocol and the desktop.

sd_notify is one datagram to $NOTIFY_SOCKET (an abstract address when it starts with `@`);
desktop notifications use `notify-send` (Linux) or `osascript` (macOS). A notifier that is
missing or fails is logged once and otherwise ignored: announcing must never break serving.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger("vaultd.notify")


def sd_notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send one notify datagram; False when not under systemd or when it fails."""
    env = os.environ if env is None else env
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as exc:
        log.debug("sd_notify failed: %s", exc)
        return False
    return True


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Half the watchdog period systemd asked for, or None when there is no watchdog."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.5, int(usec) / 2_000_000)
    except ValueError:
        return None


def _osascript_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Announcer:
    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        platform: str = sys.platform,
        which: Callable[[str], str | None] = shutil.which,
        spawn: Callable[[list[str]], None] | None = None,
        desktop: bool = True,
    ) -> None:
        self.env = os.environ if env is None else env
        self.platform = platform
        self.which = which
        self.spawn = spawn or self._spawn
        self.desktop = desktop
        self._warned = False

    def status(self, text: str) -> None:
        sd_notify(f"STATUS={text}", self.env)

    def mfa_needed(self, profile: str, serial: str, early: bool) -> None:
        why = "to renew the session before it ends" if early else "to get credentials"
        self.status(f"waiting for MFA for {profile}")
        self._desktop("vaultd: MFA code needed", f"{profile} needs a code {why}: vaultd mfa CODE")

    def login_needed(self, command: str, message: str) -> None:
        """A sign-in (IAM Identity Center, `aws login`) must be renewed by a person."""
        self.status(f"waiting for sign-in: {command}")
        self._desktop("vaultd: sign-in needed", message)

    def _desktop(self, title: str, body: str) -> None:
        if not self.desktop:
            return
        if self.platform == "darwin":
            tool = "osascript"
            script = (
                f"display notification {_osascript_quote(body)} "
                f"with title {_osascript_quote(title)}"
            )
            argv = [tool, "-e", script]
        else:
            tool = "notify-send"
            argv = [tool, "--app-name=vaultd", title, body]
        if self.which(tool) is None:
            self._warn_once(
                f"{tool} not found: no desktop notification for sign-in and MFA requests"
            )
            return
        self.spawn(argv)

    def _spawn(self, argv: list[str]) -> None:
        def run() -> None:
            try:
                done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                self._warn_once(f"{argv[0]} failed: {type(exc).__name__}")
                return
            if done.returncode != 0:
                self._warn_once(f"{argv[0]} exited with status {done.returncode}")

        threading.Thread(target=run, name="vaultd-notify", daemon=True).start()

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("%s (further notifier problems are not logged)", message)
