"""Credentials that never lapse by surprise, end to end: an STS outage and recovery, the
MFA watch terminal, clearing sessions, and no secrets anywhere along the way."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import pytest
from moto.server import ThreadedMotoServer

from tests.e2e.harness import Daemon, client_env, reset_moto, run_on_tty, run_vaultd, wait_for
from tests.e2e.test_clients import BOTO3_CREDS, run
from vaultd.demo import seed_accounts


@pytest.fixture
def own_moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """A moto server of this test's own, so the test may stop and restart it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    reset_moto(url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", url)
    holder: list[Any] = [server, url, port]
    yield holder
    holder[0].stop()


def test_sts_outage_keeps_serving_and_recovers_by_itself(
    own_moto: list[Any], aws_config: Path, isolated: Path
) -> None:
    server, url, port = own_moto
    key_id, secret = seed_accounts(url)
    assert run_vaultd("add", "identity", "--stdin", stdin=f"{key_id}\n{secret}\n").returncode == 0
    daemon = Daemon(isolated / "daemon.log").start()
    try:
        assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0
        env = client_env(daemon.endpoint, url, isolated / "client")
        before = json.loads(run([sys.executable, "-c", BOTO3_CREDS], env))["key"]

        server.stop()
        done = run_vaultd("refresh")
        assert done.returncode == 1
        assert "cannot reach STS" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        status = json.loads(run_vaultd("status", "--json").stdout)
        assert status["state"] == "ok"  # still serving the set it holds
        assert status["last_error"]["error"] == "sts_error"
        assert status["next_retry"] is not None
        human = run_vaultd("status").stdout
        assert "last error:" in human and "next retry:" in human
        during = json.loads(run([sys.executable, "-c", BOTO3_CREDS], env))["key"]
        assert during == before

        restarted = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        restarted.start()
        own_moto[0] = restarted
        status = wait_for(lambda s: s["last_error"] is None)
        assert status["state"] == "ok"
        after = json.loads(run([sys.executable, "-c", BOTO3_CREDS], env))["key"]
        assert after != before  # the retried refresh brought a new set
    finally:
        assert daemon.stop() == 0
    log = daemon.log()
    assert "Traceback" not in log
    assert "Task was destroyed" not in log
    assert "cannot reach STS" in log
    for value in (secret, before, after):
        assert value not in log


def test_mfa_watch_answers_requests_as_they_come(
    user_keys: tuple[str, str], daemon: Daemon, moto: str, isolated: Path
) -> None:
    daemon.start()
    assert run_vaultd("switch", "master").returncode == 3  # opens the request
    code, output = run_on_tty(
        ["mfa", "--watch", "--interval", "0.2"],
        "123456",
        "MFA code for",
        interrupt_after="Serving master",
    )
    assert code == 0, output
    # The watch says what the request is, asks once, and the code is what serves master.
    assert "master: a code is needed." in output
    assert output.count("MFA code for") == 1, output
    assert "Serving master" in output
    assert json.loads(run_vaultd("status", "--json").stdout)["state"] == "ok"


def test_clear_forgets_sessions_so_mfa_is_needed_again(
    user_keys: tuple[str, str], daemon: Daemon, moto: str
) -> None:
    daemon.start()
    assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0
    assert keyring.get_password("vaultd", "session:identity") is not None
    done = run_vaultd("clear", "master")
    assert done.returncode == 0
    assert "Cleared 1 cached session." in done.stdout
    assert keyring.get_password("vaultd", "session:identity") is None
    assert run_vaultd("switch", "identity").returncode == 3
    daemon.stop()
    assert run_vaultd("clear").stdout.startswith("Cleared 0")  # works without a daemon too
