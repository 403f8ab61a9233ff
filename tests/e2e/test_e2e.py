"""End to end: moto as STS/IAM, `vaultd serve` as a subprocess, boto3 and the AWS CLI as
subprocesses that find credentials only through IMDS."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path
from typing import Any, cast

import keyring
import pytest

from tests.e2e.harness import (
    Daemon,
    awscli_whoami,
    boto3_whoami,
    client_env,
    run_on_tty,
    run_vaultd,
)

ROLE_ARN_PREFIX = "arn:aws:sts::222233334444:assumed-role/DeveloperRole/"


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_role_credentials_reach_boto3_and_the_cli(
    user_keys: tuple[str, str], daemon: Daemon, moto: str, isolated: Path, loop: str
) -> None:
    """On uvloop (the default where installed) and on asyncio's own loop (--event-loop)."""
    daemon.args = (*daemon.args, "--event-loop", loop)
    daemon.start()
    expected = f"uvloop {version('uvloop')}" if loop == "auto" else "asyncio"
    assert daemon.status["event_loop"] == expected
    done = run_vaultd("switch", "master", "--mfa", "123456")
    assert done.returncode == 0, done.stderr
    env = client_env(daemon.endpoint, moto, isolated / "client")

    seen = boto3_whoami(env)
    assert seen["method"] == "iam-role"
    assert seen["arn"].startswith(ROLE_ARN_PREFIX)
    assert awscli_whoami(env)["Arn"].startswith(ROLE_ARN_PREFIX)

    # IMDSv2 only, as on an instance with HttpTokens=required.
    v2 = boto3_whoami({**env, "AWS_EC2_METADATA_V1_DISABLED": "true"})
    assert v2["arn"].startswith(ROLE_ARN_PREFIX)

    # identity: the session credentials the daemon holds for it, no role.
    done = run_vaultd("switch", "identity")
    assert done.returncode == 0, done.stderr
    seen = boto3_whoami(env)
    held = _held_session_key()
    assert seen["access_key"] == held
    assert not seen["arn"].startswith(ROLE_ARN_PREFIX)
    assert awscli_whoami(env)["Arn"] == seen["arn"]


def _held_session_key() -> str:
    raw = keyring.get_password("vaultd", "session:identity")
    assert raw is not None
    return str(json.loads(raw)["AccessKeyId"])


def test_restart_needs_no_code_and_secrets_stay_in_the_keyring(
    user_keys: tuple[str, str], daemon: Daemon, moto: str, isolated: Path
) -> None:
    key_id, secret = user_keys
    daemon.start()
    assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0
    env = client_env(daemon.endpoint, moto, isolated / "client")
    served = boto3_whoami(env)
    assert daemon.stop() == 0

    daemon.start()
    done = run_vaultd("switch", "master")  # no code, no terminal: the cached session suffices
    assert done.returncode == 0, done.stderr
    env = client_env(daemon.endpoint, moto, isolated / "client")
    assert boto3_whoami(env)["arn"].startswith(ROLE_ARN_PREFIX)
    assert run_vaultd("status").returncode == 0
    daemon.stop()

    keyring_file = Path(cast(Any, keyring.get_keyring()).file_path).resolve()
    session_raw = keyring.get_password("vaultd", "session:identity")
    assert session_raw is not None
    session_secret = json.loads(session_raw)["SecretAccessKey"]
    secrets = [secret, session_secret, "123456"]
    for path in isolated.rglob("*"):
        if path.is_file() and path.resolve() != keyring_file and "client" not in path.parts:
            text = path.read_bytes().decode("utf-8", "replace")
            for value in secrets:
                assert value not in text, f"a secret leaked into {path}"
    log = daemon.log()
    assert key_id not in log
    assert served["access_key"] not in log
    assert "Traceback" not in log


def test_mfa_pending_answers_at_once_and_mfa_command_completes(
    user_keys: tuple[str, str], daemon: Daemon, moto: str, isolated: Path
) -> None:
    daemon.start()
    done = run_vaultd("switch", "master")
    assert done.returncode == 3
    assert "vaultd mfa" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1

    started = time.monotonic()
    status, body = http_get(
        daemon.endpoint + "latest/meta-data/iam/security-credentials/DeveloperRole"
    )
    elapsed = time.monotonic() - started
    assert status == 200
    document = json.loads(body)
    assert document["Code"] != "Success"
    assert "vaultd mfa" in document["Message"]
    assert elapsed < 1.0
    assert http_get(daemon.endpoint + "latest/meta-data/iam/security-credentials/") == (
        200,
        "DeveloperRole",
    )

    status_out = json.loads(run_vaultd("status", "--json").stdout)
    assert status_out["state"] == "mfa_required"
    assert status_out["mfa"]["serial"].endswith(":mfa/elmerfudd")
    # Which owner lookup guards the listener (on Linux: netlink on the exact socket).
    if sys.platform.startswith("linux"):
        assert status_out["owner_check"] == "netlink sock_diag (exact socket)"
        text = run_vaultd("status").stdout
        assert "owner check: netlink sock_diag (exact socket)" in text
    # The event loop the daemon really runs on (uvloop is a dependency where it builds).
    assert status_out["event_loop"] == f"uvloop {version('uvloop')}"
    assert f"event loop:  uvloop {version('uvloop')}" in run_vaultd("status").stdout

    done = run_vaultd("mfa", "123456")
    assert done.returncode == 0, done.stderr
    env = client_env(daemon.endpoint, moto, isolated / "client")
    assert boto3_whoami(env)["arn"].startswith(ROLE_ARN_PREFIX)


def test_bad_input_gets_one_line_errors_and_the_daemon_keeps_running(
    user_keys: tuple[str, str], daemon: Daemon, isolated: Path, aws_config: Path
) -> None:
    done = run_vaultd("status")
    assert done.returncode == 4
    assert "vaultd serve" in done.stderr

    daemon.start()
    done = run_vaultd("switch", "nosuch")
    assert done.returncode == 1
    assert "nosuch" in done.stderr and len(done.stderr.strip().splitlines()) == 1

    second = run_vaultd("serve", "--listen", "127.0.0.1:0", timeout=30)
    assert second.returncode == 1
    assert "already running" in second.stderr
    assert "Traceback" not in second.stderr

    # A busy IMDS port, with a socket of its own so the control socket is not the problem.
    busy_port = int(daemon.endpoint.rsplit(":", 1)[1].strip("/"))
    third = run_vaultd(
        "serve", "--listen", f"127.0.0.1:{busy_port}", "--control-socket", str(isolated / "s.sock")
    )
    assert third.returncode == 1
    assert "already in use" in third.stderr
    assert "Traceback" not in third.stderr

    # Garbage on the control socket.
    sock_path = daemon.status["control_socket"]
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(sock_path)
        body = b"{not json"
        sock.sendall(
            b"POST /v1/switch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        reply = sock.recv(65536).decode()
    assert reply.startswith("HTTP/1.1 400")
    assert '"error": "bad_request"' in reply

    # A config that stops parsing mid-flight is a one-line error too.
    aws_config.write_text("[profile master\nrole_arn = nope\n")
    done = run_vaultd("switch", "master")
    assert done.returncode == 1
    assert "not valid INI" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1

    aws_config.write_text("[profile a]\nsource_profile = b\n[profile b]\nsource_profile = a\n")
    done = run_vaultd("switch", "a")
    assert done.returncode == 1
    assert "loop" in done.stderr

    assert run_vaultd("status").returncode == 0
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert "Traceback" not in daemon.log()


def test_switch_asks_for_the_code_on_a_terminal(
    user_keys: tuple[str, str], daemon: Daemon, moto: str, isolated: Path
) -> None:
    daemon.start()
    code, output = run_on_tty(["switch", "master"], "123456", "MFA code for")
    assert code == 0, output
    assert "Serving master" in output
    assert "123456" not in output  # the prompt does not echo
    env = client_env(daemon.endpoint, moto, isolated / "client")
    assert boto3_whoami(env)["arn"].startswith(ROLE_ARN_PREFIX)


def test_missing_keys_are_explained(daemon: Daemon, aws_config: Path) -> None:
    daemon.start()
    done = run_vaultd("switch", "master", "--mfa", "123456")
    assert done.returncode == 1
    assert "vaultd add identity" in done.stderr
    status = json.loads(run_vaultd("status", "--json").stdout)
    assert status["state"] == "no_keys"
    assert "vaultd add identity" in status["message"]


@pytest.mark.skipif(
    not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() != 0,
    reason="needs root to connect as another uid",
)
def test_control_socket_refuses_other_users(daemon: Daemon, aws_config: Path) -> None:
    import shutil
    import subprocess

    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 that another user can run")
    daemon.start()
    sock = Path(daemon.status["control_socket"])
    # Defeat the file permissions on purpose: the uid check must hold on its own.
    sock.parent.parent.chmod(0o755)
    sock.parent.chmod(0o755)
    sock.chmod(0o666)
    probe = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
        "s.sendall(b'GET /v1/status HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')\n"
        "print(s.recv(4096).decode().splitlines()[0])\n"
    )
    done = subprocess.run(
        [python, "-c", probe, str(sock)],
        user=65534,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("HTTP/1.1 403"), done.stdout
    # The refusal is the uid check's, not a broken socket: the owner is still served, and
    # the daemon names the uid it refused.
    assert run_vaultd("status").returncode == 0
    assert "control connection from uid 65534 refused" in daemon.log()


def test_doctor_explains_each_link(
    user_keys: tuple[str, str], daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = run_vaultd("doctor")
    assert done.returncode == 1
    assert "[FAIL] daemon: not running: `vaultd serve`" in done.stdout
    assert "[  ok] keys: identity: stored" in done.stdout

    daemon.start()
    assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", daemon.endpoint)
    done = run_vaultd("doctor")
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout
    assert any(line.startswith("[  ok] config:") for line in lines)
    assert any(
        line.startswith("[  ok] keyring: keyrings.alt.file.PlaintextKeyring") for line in lines
    )
    assert any(line.startswith("[  ok] daemon: pid") for line in lines)
    assert any(line.startswith("[  ok] shell:") for line in lines)
    assert any(line.startswith("[  ok] fetch: botocore got role DeveloperRole") for line in lines)
    assert all(len(line) < 300 for line in lines)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="a network namespace of the test's own (no interface but lo) needs root",
)
def test_status_says_when_the_listener_takes_every_interface(daemon: Daemon) -> None:
    daemon.args = ("--listen", "0.0.0.0:0")  # the last --listen given is the one used
    # Every interface of a namespace with only lo: nothing outside can reach it.
    daemon.wrap = ("unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "serve")
    daemon.start()
    [imds] = [
        x for x in json.loads(run_vaultd("status", "--json").stdout)["listeners"] if "imds" in x
    ]
    # SDKs are pointed at loopback, and the line says what is really bound.
    assert imds.startswith("imds http://127.0.0.1:") and imds.endswith(
        " (bound to 0.0.0.0: every interface)"
    ), imds
