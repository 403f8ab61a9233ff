"""Another local user (uid 65534) squats the control socket's place with a fake control
server: `vaultd switch`, `mfa`, `export` and `exec` refuse it and send it nothing.

Issue 13 section 2. Acting as another uid needs root and setpriv (CI runs as root).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import vaultd_env
from vaultd import sources

NOBODY = 65534
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="acting as another uid needs root"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) missing"),
]

# The attacker's control server: records every byte it receives, answers as vaultd would
# with the attacker's role and keys. Listens on an inherited socket when given `fd:N`.
FAKE_SERVER = r"""
import json, os, socket, sys
path, record = sys.argv[1], sys.argv[2]
if path.startswith("fd:"):
    srv = socket.socket(fileno=int(path[3:]))
else:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    os.chmod(path, 0o777)
srv.listen(8)
open(record, "ab").close()
os.chmod(record, 0o666)
doc = {"active": "master", "role_arn": "arn:aws:iam::666666666666:role/Attacker",
       "credentials": {"expires": "2030-01-01T00:00:00Z"}, "state": "ok", "message": "ok",
       "AccessKeyId": "ASIAATTACKER", "SecretAccessKey": "attacker", "Token": "attacker",
       "Expiration": "2030-01-01T00:00:00Z", "id": "x", "token": "x.attacker",
       "url": "http://127.0.0.1:1/attacker", "profile": "master"}
body = json.dumps(doc).encode()
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    conn.settimeout(2)
    got = b""
    try:
        while chunk := conn.recv(65536):
            got += chunk
            if b"\r\n\r\n" in got:
                break
    except OSError:
        pass
    if got:  # a client that checks us and leaves sends nothing
        with open(record, "ab") as fh:
            fh.write(got + b"\n--\n")
    try:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n"
                     b"Connection: close\r\n\r\n" + body)
    except OSError:
        pass
    conn.close()
"""


def as_nobody(*argv: str) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]


class Attacker:
    """A fake control server run as uid 65534, and the file of what it received."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.record = workspace / "received"
        self.proc: subprocess.Popen[str] | None = None

    def serve(self, path: Path | None, inherited: socket.socket | None = None) -> None:
        where = f"fd:{inherited.fileno()}" if inherited else str(path)
        self.proc = subprocess.Popen(
            as_nobody(sys.executable, "-c", FAKE_SERVER, where, str(self.record)),
            stdout=subprocess.PIPE,
            text=True,
            pass_fds=(inherited.fileno(),) if inherited else (),
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def received(self) -> bytes:
        return self.record.read_bytes() if self.record.exists() else b""

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def attacker() -> Iterator[Attacker]:
    # A world-writable, sticky place like /tmp, but private to this test.
    workspace = Path(tempfile.mkdtemp(prefix="vd-squat-"))
    workspace.chmod(0o1777)
    a = Attacker(workspace)
    try:
        yield a
    finally:
        a.stop()
        shutil.rmtree(workspace, ignore_errors=True)


def attacker_dir(attacker: Attacker) -> Path:
    """The directory the victim's socket would be in, made first by uid 65534, 0777."""
    folder = attacker.workspace / f"vaultd-{os.getuid()}"
    subprocess.run(as_nobody("mkdir", "-m", "0777", str(folder)), check=True)
    folder.chmod(0o777)  # mkdir's mode is cut by the umask
    return folder


COMMANDS = [
    ("switch", "master", "--mfa", "111111"),
    ("mfa", "222222"),
    ("export", "master"),
    ("exec", "master", "--", sys.executable, "-c", "pass"),
    ("status",),
]


def run_victim(socket_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = vaultd_env()
    env["VAULTD_CONTROL_SOCKET"] = str(socket_path)
    return subprocess.run(
        [sys.executable, "-m", "vaultd", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_refused(attacker: Attacker, socket_path: Path, reason: str) -> None:
    for args in COMMANDS:
        done = run_victim(socket_path, *args)
        assert done.returncode != 0, (args, done.stdout)
        assert "refusing the control socket" in done.stderr, (args, done.stderr)
        assert reason in done.stderr, (args, done.stderr)
        assert "Attacker" not in done.stdout and "ASIAATTACKER" not in done.stdout, args
    assert attacker.received() == b""


def test_a_squatted_world_writable_directory_is_refused(attacker: Attacker) -> None:
    folder = attacker_dir(attacker)
    attacker.serve(folder / "control.sock")
    assert_refused(attacker, folder / "control.sock", f"belongs to uid {NOBODY}")


def test_a_symbolic_link_to_the_attackers_directory_is_refused(attacker: Attacker) -> None:
    target = attacker_dir(attacker)
    attacker.serve(target / "control.sock")
    link = attacker.workspace / "vaultd-link"
    subprocess.run(as_nobody("ln", "-s", str(target), str(link)), check=True)
    assert_refused(attacker, link / "control.sock", "is a symbolic link")


def test_a_server_of_another_uid_is_refused_before_a_byte_is_sent(
    attacker: Attacker, tmp_path: Path
) -> None:
    # Our own private directory passes every path check; the server listening in it runs
    # as uid 65534 (it called listen() on a socket handed to it), which only SO_PEERCRED
    # can tell.
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    path = folder / "control.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    try:
        attacker.serve(None, inherited=sock)
    finally:
        sock.close()
    assert_refused(attacker, path, f"its server runs as uid {NOBODY}")


def test_our_own_private_socket_is_used(tmp_path: Path) -> None:
    """The control: the same fake server, run as ourselves in our 0700 directory, is
    trusted; so the refusals above come from the uid and path checks, nothing else."""
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    path = folder / "control.sock"
    record = tmp_path / "received"
    proc = subprocess.Popen(
        [sys.executable, "-c", FAKE_SERVER, str(path), str(record)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        done = run_victim(path, "switch", "master", "--mfa", "111111")
        assert done.returncode == 0, done.stderr
        assert "Attacker" in done.stdout
        deadline = time.monotonic() + 5
        while b"111111" not in record.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b"111111" in record.read_bytes()
    finally:
        proc.kill()
        proc.wait(10)


def test_the_fallback_socket_is_under_the_home_directory() -> None:
    uid = os.getuid()
    home = {"HOME": "/home/elmer"}
    where = sources.default_socket_path
    assert where({"XDG_RUNTIME_DIR": "/run/user/7", **home}) == "/run/user/7/vaultd/control.sock"
    assert where(home) == "/home/elmer/.local/state/vaultd/control.sock"
    assert where({"XDG_STATE_HOME": "/s", **home}) == "/s/vaultd/control.sock"
    # No home, a relative one, or one too long for a Unix socket path: /tmp, checked.
    fallback = f"/tmp/vaultd-{uid}/control.sock"
    assert where({}) == fallback
    assert where({"HOME": "relative"}) == fallback
    assert where({"HOME": "/h" + "o" * 100}) == fallback
