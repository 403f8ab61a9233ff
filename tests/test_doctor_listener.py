"""`vaultd doctor` with the daemon stopped: whatever holds the port the SDKs use is named.

The squatter runs as uid 65534 through setpriv with the system python (CI runs as root)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest

from tests.e2e.harness import run_vaultd

SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")
OTHER_UID = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
LISTEN = """
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
if sys.argv[1] == "defer":  # no accept-side socket until data arrives
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 30)
s.listen()
print(s.getsockname()[1], flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux")
    or os.geteuid() != 0
    or SYSTEM_PYTHON is None
    or shutil.which("setpriv") is None,
    reason="acting as another uid needs Linux, root (CI runs as root), setpriv, /usr/bin/python3",
)
@pytest.mark.parametrize("how", ["plain", "defer"])
def test_doctor_names_another_uid_on_the_port_while_vaultd_is_stopped(
    monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    squatter = subprocess.Popen(
        [*OTHER_UID, str(SYSTEM_PYTHON), "-c", LISTEN, how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert squatter.stdout is not None
        port = int(squatter.stdout.readline())
        monkeypatch.setenv("VAULTD_LISTEN", f"127.0.0.1:{port}")
        done = run_vaultd("doctor")
        assert (
            f"[FAIL] listener: uid 65534 listens on 127.0.0.1:{port}, where SDKs look for "
            "vaultd: it can hand them credentials of its choosing"
        ) in done.stdout, done.stdout
        assert done.returncode == 1
    finally:
        squatter.kill()
        squatter.wait()


def test_doctor_says_nothing_of_a_free_port(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    monkeypatch.setenv("VAULTD_LISTEN", f"127.0.0.1:{port}")
    assert "listener:" not in run_vaultd("doctor").stdout


@pytest.mark.parametrize("endpoint", ["http://a..b:9169/", f"http://{'x' * 64}.example:9169/"])
def test_doctor_takes_an_endpoint_whose_host_is_no_name(
    monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    # getaddrinfo's IDNA step raised UnicodeError: a traceback, and no findings at all.
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint)
    done = run_vaultd("doctor")
    assert "Traceback" not in done.stderr and "[FAIL] daemon: not running" in done.stdout
