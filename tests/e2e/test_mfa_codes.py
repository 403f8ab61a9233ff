"""MFA codes through the command line against a real daemon and moto: a code kept out of argv
(`--mfa -`, `vaultd mfa -`), and what a command says when it needs a code and has none."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import (
    Daemon,
    boto3_whoami,
    client_env,
    run_on_tty,
    run_vaultd,
    wait_for,
)
from vaultd.client import ControlClient, ControlError

ROLE_ARN = "arn:aws:iam::222233334444:role/DeveloperRole"


def test_a_needed_code_without_a_terminal_is_exit_3_with_the_hint_once(
    user_keys: tuple[str, str], daemon: Daemon
) -> None:
    daemon.start()
    for profile in ("identity", "master"):
        done = run_vaultd("switch", profile)
        assert done.returncode == 3, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert done.stderr.count("vaultd mfa CODE") == 1, done.stderr
        assert "no terminal" in done.stderr
    # The request is open now; `vaultd mfa` without a code is the same case, the same code.
    done = run_vaultd("mfa")
    assert done.returncode == 3 and "no terminal" in done.stderr


def test_mfa_codes_from_stdin_reach_sts(
    user_keys: tuple[str, str], daemon: Daemon, moto: str, isolated: Path
) -> None:
    daemon.start()
    done = run_vaultd("switch", "master", "--mfa", "-", stdin="123456\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Serving master ({ROLE_ARN}) until ")
    env = client_env(daemon.endpoint, moto, isolated / "client")
    assert ":assumed-role/DeveloperRole/" in boto3_whoami(env)["arn"]

    assert run_vaultd("clear").returncode == 0
    assert run_vaultd("switch", "identity").returncode == 3  # opens a request
    done = run_vaultd("mfa", "-", stdin="234567\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Serving identity until ")  # no role, and no ARN known

    # On a terminal, `-` asks without echo rather than reading a line the user can see.
    assert run_vaultd("clear").returncode == 0
    assert run_vaultd("switch", "identity").returncode == 3
    code, output = run_on_tty(["mfa", "-"], "345678", "MFA code: ")
    assert code == 0, output
    assert "Serving identity" in output and "345678" not in output


def test_a_code_on_stdin_that_is_empty_or_malformed_sends_nothing(
    user_keys: tuple[str, str], daemon: Daemon
) -> None:
    daemon.start()
    done = run_vaultd("switch", "master", "--mfa", "-", stdin="")
    assert done.returncode == 3 and "stdin held none" in done.stderr
    done = run_vaultd("switch", "master", "--mfa", "-", stdin="12 34\n")
    assert done.returncode == 2 and "not six digits" in done.stderr
    # Neither reached the daemon: no profile was switched to, no request opened.
    status = json.loads(run_vaultd("status", "--json").stdout)
    assert (status["active"], status["mfa"]) == (None, None)


def test_a_spent_code_on_a_terminal_asks_for_the_next_one(
    user_keys: tuple[str, str], daemon: Daemon, moto: str, isolated: Path
) -> None:
    daemon.start()
    assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0
    assert run_vaultd("clear").returncode == 0  # the MFA session is gone: a code is needed
    # Without a terminal the spent code is refused, and nothing else is sent.
    done = run_vaultd("switch", "master", "--mfa", "123456")
    assert done.returncode == 1 and "already sent to STS" in done.stderr
    calls = json.loads(run_vaultd("status", "--json").stdout)["sts_calls"]
    # On a terminal the person is told why and asked for the next code, which STS gets.
    code, output = run_on_tty(["switch", "master", "--mfa", "123456"], "234567", "MFA code: ")
    assert code == 0, output
    assert "already sent to STS" in output and f"Serving master ({ROLE_ARN}) until " in output
    assert json.loads(run_vaultd("status", "--json").stdout)["sts_calls"] > calls
    env = client_env(daemon.endpoint, moto, isolated / "client")
    assert ":assumed-role/DeveloperRole/" in boto3_whoami(env)["arn"]


def test_a_code_typed_for_another_device_is_refused_by_the_daemon_unsent(
    user_keys: tuple[str, str], daemon: Daemon, moto: str, isolated: Path
) -> None:
    daemon.start()
    assert run_vaultd("switch", "master").returncode == 3  # opens a request
    client = ControlClient(daemon.control_socket(), timeout=10)
    serial = client.status()["mfa"]["serial"]
    other = serial.replace(":mfa/", ":mfa/someone-else-")
    with pytest.raises(ControlError) as refused:
        client.mfa("123456", other)
    assert refused.value.code == "mfa_request_changed", refused.value
    assert json.loads(run_vaultd("status", "--json").stdout)["state"] == "mfa_required"
    # The code was not sent, so it is not spent: the same code answers the request.
    done = client.mfa("123456", serial)
    assert done["state"] == "ok" and done["active"] == "master"


def test_the_active_profile_is_not_left_waiting_after_an_exec_took_its_request(
    user_keys: tuple[str, str], daemon: Daemon
) -> None:
    daemon.start()
    assert run_vaultd("switch", "master").returncode == 3  # master's request is open
    done = run_vaultd("exec", "identity", "--", sys.executable, "-c", "pass")
    assert done.returncode == 3, done.stderr  # identity's request takes its place
    assert json.loads(run_vaultd("status", "--json").stdout)["mfa"]["profile"] == "identity"
    assert run_vaultd("mfa", "123456").returncode == 0
    # That code made the MFA session master is built on: master is served without another.
    status = wait_for(lambda s: s["state"] != "mfa_required" or s["mfa"] is not None)
    assert (status["state"], status["active"], status["mfa"]) == ("ok", "master", None)
