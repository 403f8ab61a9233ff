"""Login service files, socket activation, and the notify protocol, with a real daemon."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.harness import run_vaultd, vaultd_env
from vaultd.host import service

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not found (Debian package systemd): rendered units not verified",
)
def test_rendered_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    # The units as `vaultd service install` writes them, checked by systemd's own parser:
    # an unknown key, a bad value or a missing ExecStart binary is a warning or an error there.
    plan = service.plan(
        "install", platform="linux", python=sys.executable, home=tmp_path, env={}, uid=1000
    )
    sockets = service.plan(
        "install",
        platform="linux",
        python=sys.executable,
        home=tmp_path,
        env={},
        socket_activation=True,
    )
    units = {**plan.write, **sockets.write}
    assert {p.name for p in units} == {"vaultd.service", "vaultd.socket"}
    for path, text in units.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stderr


def test_repository_plist_is_the_packaged_template_and_parses() -> None:
    import plistlib

    # The repository's launchd/ file links to the packaged template; what is installed is
    # the template rendered, which must parse as a property list with the agent's label.
    repo_plist = REPO / "launchd" / "dev.vaultd.plist"
    assert repo_plist.resolve() == (REPO / "src/vaultd/host/units/dev.vaultd.plist").resolve()
    data = plistlib.loads(service.render("dev.vaultd.plist", "/opt/v/bin/python", REPO).encode())
    assert data["Label"] == service.LAUNCHD_LABEL


def test_systemd_install_plan(tmp_path: Path) -> None:
    plan = service.plan(
        "install", platform="linux", python="/opt/v/bin/python", home=tmp_path, env={}, uid=1000
    )
    unit = plan.write[tmp_path / ".config/systemd/user/vaultd.service"]
    assert "ExecStart=/opt/v/bin/python -m vaultd serve" in unit
    assert "Type=notify" in unit and "RuntimeDirectory=vaultd" in unit
    assert "RuntimeDirectoryMode=0700" in unit and "WantedBy=default.target" in unit
    assert "Restart=on-failure" in unit
    assert ["systemctl", "--user", "enable", "--now", "vaultd.service"] in plan.run
    sockets = service.plan(
        "install", platform="linux", home=tmp_path, env={}, socket_activation=True
    )
    assert any(p.name == "vaultd.socket" for p in sockets.write)
    assert ["systemctl", "--user", "enable", "--now", "vaultd.socket"] in sockets.run
    undo = service.plan("uninstall", platform="linux", home=tmp_path, env={})
    assert {p.name for p in undo.remove} == {"vaultd.service", "vaultd.socket"}


def test_launchd_install_plan(tmp_path: Path) -> None:
    import plistlib

    plan = service.plan(
        "install", platform="darwin", python="/opt/v/bin/python", home=tmp_path, env={}, uid=501
    )
    path = tmp_path / "Library/LaunchAgents/dev.vaultd.plist"
    data = plistlib.loads(plan.write[path].encode())
    assert data["ProgramArguments"] == ["/opt/v/bin/python", "-m", "vaultd", "serve"]
    assert data["RunAtLoad"] is True
    assert data["KeepAlive"] == {"SuccessfulExit": False}
    assert data["StandardErrorPath"] == f"{tmp_path}/Library/Logs/vaultd/vaultd.log"
    assert ["launchctl", "bootstrap", "gui/501", str(path)] in plan.run


def test_service_print_changes_nothing(isolated: Path) -> None:
    done = run_vaultd("service", "install", "--print")
    assert done.returncode == 0
    assert f"ExecStart={Path(sys.executable).absolute()} -m vaultd serve" in done.stdout
    assert not (isolated / "xdgconfig" / "systemd").exists()


LAUNCHER = """
import fcntl, os, sys
# What systemd does: the listeners as fds 3 and 4, named, with LISTEN_PID = the service's pid.
# Move them out of the way first: either may already sit on 3 or 4.
high = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3]]
for target, fd in zip((3, 4), high):
    os.dup2(fd, target)  # inheritable, unlike the originals
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="2", LISTEN_FDNAMES="imds:control")
os.execv(sys.executable, [sys.executable, "-m", "vaultd", "serve"])
"""


def test_socket_activation_and_notify(isolated: Path, aws_config: Path) -> None:
    tcp = socket.create_server(("127.0.0.1", 0))
    port = tcp.getsockname()[1]
    ctl_path = Path(os.environ["XDG_RUNTIME_DIR"]) / "activated.sock"
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(ctl_path))
    unix.listen()
    notify_path = Path(os.environ["XDG_RUNTIME_DIR"]) / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(30)
    env = vaultd_env()
    env.update(
        VAULTD_CONTROL_SOCKET=str(ctl_path),
        NOTIFY_SOCKET=str(notify_path),
        WATCHDOG_USEC="1000000",  # systemd's WatchdogSec=1: pings every half second
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(tcp.fileno()), str(unix.fileno())],
        env=env,
        pass_fds=(tcp.fileno(), unix.fileno()),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        try:
            ready = notify.recv(4096).decode()
        except TimeoutError:
            proc.kill()
            raise AssertionError(proc.communicate()[1]) from None
        assert ready.startswith("READY=1")
        assert "STATUS=no profile is active" in ready
        assert notify.recv(4096) == b"WATCHDOG=1"
        status = json.loads(
            subprocess.run(
                [sys.executable, "-m", "vaultd", "status", "--json"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            ).stdout
        )
        assert status["endpoint"] == f"http://127.0.0.1:{port}/"
        assert any("socket-activated" in item for item in status["listeners"])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(
                b"GET /latest/meta-data/instance-id HTTP/1.1\r\n"
                b"Host: 169.254.169.254\r\nConnection: close\r\n\r\n"
            )
            assert client.recv(4096).startswith(b"HTTP/1.1 200")
        proc.send_signal(signal.SIGTERM)
        while (message := notify.recv(4096)) == b"WATCHDOG=1":
            pass
        assert message == b"STOPPING=1"
        assert proc.wait(15) == 0
        assert ctl_path.exists()  # systemd's socket: left for systemd to remove
    finally:
        if proc.poll() is None:
            proc.kill()
        for s in (tcp, unix, notify):
            s.close()
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")


def test_stale_socket_is_replaced(isolated: Path, aws_config: Path) -> None:
    path = Path(os.environ["XDG_RUNTIME_DIR"]) / "vaultd" / "control.sock"
    path.parent.mkdir(mode=0o700)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # a crashed daemon's socket file, with nobody listening
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaultd", "serve", "--listen", "127.0.0.1:0"],
        env=vaultd_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while run_vaultd("status").returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
        assert not path.exists()  # ours this time: removed on the way out
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read() if proc.stderr else ""
    assert "removed a stale control socket" in err
    assert "Traceback" not in err
