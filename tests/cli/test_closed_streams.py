"""`vaultd` started with a standard stream closed (`<&-`, `>&-`, `2>&-`), for which Python
leaves sys.stdin, sys.stdout or sys.stderr None: a closed stdin reads as an empty one that is
no terminal."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.fake_control import SERVING_STATUS, Answer, Answers, FakeControl
from tests.e2e.harness import run_vaultd, vaultd_env
from vaultd import settings
from vaultd.cli.exits import EXIT_ERROR, EXIT_MFA

NEEDS_A_CODE: Answer = (
    409,
    {"error": "mfa_required", "message": "other needs an MFA code", "mfa_serial": "dev"},
)
WAITING: Answer = (200, {**SERVING_STATUS, "mfa": {"profile": "other", "serial": "dev"}})


def run_closed(redirect: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`vaultd ARGS` started by a shell with `redirect` (`<&-`, `>&-`, `2>&-`) applied."""
    return subprocess.run(
        ["sh", "-c", f'exec "$0" -m vaultd "$@" {redirect}', sys.executable, *args],
        capture_output=True,
        env=vaultd_env(),
        text=True,
        timeout=60,
        check=False,
    )


# What reads stdin with no daemon asked: `-` for a code, a prompt's terminal check, the keys.
READERS = [
    (["mfa", "-"], EXIT_MFA),
    (["switch", "master", "--mfa", "-"], EXIT_MFA),
    (["exec", "master", "--mfa", "-", "--", "true"], EXIT_MFA),
    (["rotate", "identity", "--mfa", "-"], EXIT_MFA),
    (["rotate", "identity"], EXIT_MFA),
    (["add", "root2"], EXIT_ERROR),
    (["add", "root2", "--stdin"], EXIT_ERROR),
]


@pytest.mark.parametrize(("args", "code"), READERS, ids=[" ".join(a) for a, _ in READERS])
def test_a_closed_stdin_reads_as_an_empty_one(aws_config: Path, args: list[str], code: int) -> None:
    closed, empty = run_closed("<&-", *args), run_vaultd(*args, stdin="")
    assert (closed.returncode, closed.stderr) == (empty.returncode, empty.stderr)
    assert closed.returncode == code, closed.stderr
    assert closed.stderr.startswith("vaultd: ") and closed.stderr.count("\n") == 1


# What asks for a code once the daemon wants one, and the call that tells it so.
ASKERS = [
    (["mfa"], ("GET", "/v1/status")),
    (["switch", "other"], ("POST", "/v1/switch")),
    (["exec", "other", "--", "true"], ("POST", "/v1/exec-tokens")),
    (["login", "other"], ("POST", "/v1/console-credentials")),
]


@pytest.mark.parametrize(("args", "path"), ASKERS, ids=[" ".join(a) for a, _ in ASKERS])
def test_a_code_needed_with_stdin_closed_is_exit_3(args: list[str], path: tuple[str, str]) -> None:
    # The daemon waits for a code (status), or answers that the call needs one.
    answers: Answers = {("GET", "/v1/status"): (200, SERVING_STATUS), path: NEEDS_A_CODE}
    if path[0] == "GET":
        answers = {path: WAITING}
    with FakeControl(settings.load().control_socket, answers):
        closed, empty = run_closed("<&-", *args), run_vaultd(*args, stdin="")
    assert (closed.returncode, closed.stderr) == (empty.returncode, empty.stderr)
    assert closed.returncode == EXIT_MFA, closed.stderr
    assert closed.stderr.startswith("vaultd: ") and closed.stderr.count("\n") == 1


CREDENTIALS = {
    "AccessKeyId": "ASIAEXAMPLE",
    "SecretAccessKey": "secret",
    "Token": "token",
    "Expiration": "2030-01-01T00:00:00Z",
    "LastUpdated": "2029-12-31T23:00:00Z",
}
# The commands whose whole purpose is their output.
OUTPUTS = [
    ["status"],
    ["status", "--json"],
    ["export", "master", "--format", "json"],
    ["export", "master", "--format", "export"],
    ["env", "--listen", "127.0.0.1:9169"],
    ["list", "--json"],
    ["completion", "bash"],
    ["--help"],  # argparse's own writes: it swallowed their failure, exit 0
    ["switch", "--help"],
]


@pytest.mark.parametrize("args", OUTPUTS, ids=" ".join)
def test_output_with_stdout_closed_from_the_start_is_a_failure(
    aws_config: Path, args: list[str]
) -> None:
    """Nothing could be written, so the command did not do what it is for: one line and exit
    1, as for any output that cannot be written, never a silent exit 0 (nor a traceback)."""
    answers: Answers = {
        ("GET", "/v1/status"): (200, SERVING_STATUS),
        ("POST", "/v1/credentials"): (200, CREDENTIALS),
    }
    with FakeControl(settings.load().control_socket, answers):
        assert run_vaultd(*args).returncode == 0  # what it does with somewhere to write
        done = run_closed(">&-", *args)
    assert (done.returncode, done.stderr) == (
        1,
        "vaultd: cannot write the output: stdout is closed\n",
    )


NO_PROFILE: Answers = {
    ("POST", "/v1/credentials"): (
        404,
        {"error": "no_such_profile", "message": "no profile 'nosuch' in the AWS config"},
    )
}
# (words, what the fake daemon answers or None for no daemon, the exit code)
ERRORS = [
    (["export", "nosuch", "--format", "export"], NO_PROFILE, EXIT_ERROR),  # the daemon's error
    (["export", "master", "--format", "export"], None, 4),  # no daemon
    (["switch", "master", "--mfa", "12"], None, 2),  # a malformed code
    (["export", "master", "--format", "yaml"], None, 2),  # argparse's usage error
]


@pytest.mark.parametrize(("args", "answers", "code"), ERRORS, ids=[" ".join(e[0]) for e in ERRORS])
def test_errors_with_stderr_closed_never_reach_stdout(
    args: list[str], answers: Answers | None, code: int
) -> None:
    # `eval "$(vaultd export ...)"` would run whatever reached stdout.
    if answers is None:
        done = run_closed("2>&-", *args)
    else:
        with FakeControl(settings.load().control_socket, answers):
            done = run_closed("2>&-", *args)
    assert (done.returncode, done.stdout) == (code, "")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc/PID/fd")
def test_the_daemon_started_with_every_stream_closed_keeps_0_1_2_for_them(
    aws_config: Path,
) -> None:
    # Else its next file took the number: its epoll was fd 2, where a fatal error writes.
    daemon = subprocess.Popen(
        ["sh", "-c", 'exec "$0" -m vaultd serve --listen 127.0.0.1:0 <&- >&- 2>&-', sys.executable],
        env=vaultd_env(),
    )
    try:
        deadline = time.monotonic() + 30
        while run_vaultd("status").returncode != 0:
            assert daemon.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        held = [os.readlink(f"/proc/{daemon.pid}/fd/{fd}") for fd in (0, 1, 2)]
        assert held == [os.devnull] * 3
    finally:
        daemon.terminate()
        assert daemon.wait(15) == 0
