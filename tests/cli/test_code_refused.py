"""A code the daemon refuses (already sent to STS, or refused by STS) costs a retype on a
terminal, not the command; without a terminal the refusal stands, one line, one code sent."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.fake_control import SERVING_STATUS, Answer, Answers, FakeControl
from tests.e2e.harness import drive_tty, run_on_tty, watch_on_tty
from vaultd import settings
from vaultd.cli.common import CODES_ASKED

REJECTED: Answer = (422, {"error": "mfa_rejected", "message": "STS refused the MFA code"})
SPENT_MESSAGE = "that code was already sent to STS: wait for the next one"
SPENT: Answer = (400, {"error": "bad_mfa_code", "message": SPENT_MESSAGE})
OK: Answer = (200, SERVING_STATUS)
PROMPT = "MFA code: "


@pytest.fixture
def socket_path() -> Path:
    return settings.load().control_socket


def _codes(control: FakeControl, path: str, key: str) -> list[Any]:
    return [body.get(key) for method, p, body in control.received if p == path and body]


# (command, control path, body key of the code)
COMMANDS = [
    (["switch", "master", "--mfa", "111111"], "/v1/switch", "mfa_code"),
    (["mfa", "111111"], "/v1/mfa", "code"),
]


@pytest.mark.parametrize("refusal", [REJECTED, SPENT], ids=["rejected", "spent"])
@pytest.mark.parametrize(("argv", "path", "key"), COMMANDS, ids=["switch", "mfa"])
def test_a_refused_code_is_asked_again_on_a_terminal(
    socket_path: Path, refusal: Answer, argv: list[str], path: str, key: str
) -> None:
    answers: Answers = {
        ("POST", path): [refusal, OK],
        ("GET", "/v1/status"): (200, {**SERVING_STATUS, "mfa": {"profile": "master"}}),
    }
    with FakeControl(socket_path, answers) as control:
        code, output = run_on_tty(argv, "222222", PROMPT)
    assert code == 0, output
    assert refusal[1]["message"] in output
    assert "Serving master" in output
    assert _codes(control, path, key) == ["111111", "222222"]
    assert "222222" not in output  # asked without echo


@pytest.mark.parametrize(("argv", "path", "key"), COMMANDS, ids=["switch", "mfa"])
def test_the_last_refusal_stands_after_the_codes_asked(
    socket_path: Path, argv: list[str], path: str, key: str
) -> None:
    answers: Answers = {("POST", path): [REJECTED]}
    with FakeControl(socket_path, answers) as control:
        code, output = run_on_tty(argv, "222222", PROMPT, times=CODES_ASKED)
    assert code == 1, output
    assert output.count(PROMPT) == CODES_ASKED - 1
    assert _codes(control, path, key) == ["111111"] + ["222222"] * (CODES_ASKED - 1)


@pytest.mark.parametrize(("argv", "path", "key"), COMMANDS, ids=["switch", "mfa"])
def test_without_a_terminal_a_refused_code_is_one_line_and_one_try(
    socket_path: Path, argv: list[str], path: str, key: str
) -> None:
    answers: Answers = {("POST", path): [SPENT, OK]}
    with FakeControl(socket_path, answers) as control:
        done = subprocess.run(
            [sys.executable, "-m", "vaultd", *argv],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr == f"vaultd: {SPENT_MESSAGE}\n"
    assert _codes(control, path, key) == ["111111"]


def test_a_code_asked_for_an_open_request_is_asked_again_when_refused(
    socket_path: Path,
) -> None:
    needed: Answer = (
        409,
        {
            "error": "mfa_required",
            "message": "master needs an MFA code: vaultd mfa CODE",
            "profile": "master",
            "mfa_serial": "arn:aws:iam::111122223333:mfa/dev",
        },
    )
    answers: Answers = {
        ("POST", "/v1/switch"): [needed, OK],
        ("POST", "/v1/mfa"): [REJECTED, OK],
    }
    with FakeControl(socket_path, answers) as control:
        code, output = run_on_tty(
            ["switch", "master"],
            "333333",
            "MFA code for arn:aws:iam::111122223333:mfa/dev: ",
            times=2,
        )
    assert code == 0, output
    assert _codes(control, "/v1/mfa", "code") == ["333333", "333333"]
    # The switch is made again without a code: the one sent for the request is spent.
    assert [body for _, p, body in control.received if p == "/v1/switch"] == [
        {"profile": "master"},
        {"profile": "master"},
    ]


def test_one_command_sends_at_most_the_codes_asked_whatever_the_daemon_answers(
    socket_path: Path,
) -> None:
    """A refusal, then a request for a code: the prompt for the request spends what is left
    of the command's allowance, not a fresh one (STS locks a device after failures)."""
    needed: Answer = (
        409,
        {"error": "mfa_required", "message": "master needs an MFA code", "mfa_serial": "dev"},
    )
    answers: Answers = {
        ("POST", "/v1/switch"): [REJECTED, needed],
        ("POST", "/v1/mfa"): [REJECTED],
    }
    with FakeControl(socket_path, answers) as control:
        code, output = run_on_tty(
            ["switch", "master", "--mfa", "111111"], "222222", "code", times=CODES_ASKED + 3
        )
    sent = _codes(control, "/v1/switch", "mfa_code") + _codes(control, "/v1/mfa", "code")
    assert len(sent) == CODES_ASKED, output
    assert code != 0


def test_the_watch_asks_again_by_the_same_rule_and_escapes_what_it_is_told(
    socket_path: Path,
) -> None:
    hostile = "STS refused it \x1b]0;pwned\x07"
    request = {"profile": "master", "serial": "dev\x1b[2J", "since": "2026-11-30T05:00:00Z"}
    waiting = {**SERVING_STATUS, "mfa": request}
    answers: Answers = {
        ("GET", "/v1/status"): (200, waiting),
        ("POST", "/v1/mfa"): [(422, {"error": "mfa_rejected", "message": hostile}), OK],
    }
    with FakeControl(socket_path, answers) as control:
        code, output = watch_on_tty(times=2)
    assert code == 0, output
    assert "\x1b" not in output and "\\x1b]0;pwned" in output and "dev\\x1b[2J" in output
    assert _codes(control, "/v1/mfa", "code") == ["222222", "222222"]


def _tty(args: list[str], inputs: list[bytes], prompt: bytes = b"MFA code") -> tuple[int, bytes]:
    """`vaultd ARGS` on a pseudo-terminal, typing `inputs` (raw bytes) one per prompt shown;
    the run ends when the command exits, or with Ctrl-C after 10 s. Exit code, output."""
    return drive_tty(args, inputs, prompt, timeout=10, at_deadline=signal.SIGINT)


def _needs(serial: str) -> Answer:
    return (409, {"error": "mfa_required", "message": "needs a code", "mfa_serial": serial})


def _waiting(serial: str, since: str | None = "2026-11-30T05:00:00Z") -> Answer:
    request = {"profile": "p", "serial": serial, **({"since": since} if since else {})}
    return (200, {**SERVING_STATUS, "mfa": request})


def test_the_serial_of_an_open_request_is_escaped_in_every_prompt(socket_path: Path) -> None:
    answers: Answers = {
        ("POST", "/v1/switch"): [_needs("dev\x1b]0;pwned\x07\x1b[2J"), OK],
        ("POST", "/v1/mfa"): [REJECTED, OK],
    }
    with FakeControl(socket_path, answers):
        _, out = _tty(["switch", "master"], [b"222222\n", b"333333\n"])
    assert b"\x1b" not in out and out.count(b"dev\\x1b]0;pwned") == 2, out


@pytest.mark.parametrize("watch", [False, True], ids=["retry", "watch"])
def test_a_byte_no_terminal_reads_is_a_malformed_code_not_a_traceback(
    socket_path: Path, watch: bool
) -> None:
    if watch:
        argv, prompt = ["mfa", "--watch", "--interval", "0.2"], b"MFA code for"
        answers: Answers = {("GET", "/v1/status"): _waiting("dev"), ("POST", "/v1/mfa"): OK}
    else:
        argv, prompt = ["switch", "master", "--mfa", "111111"], PROMPT.encode()
        answers = {("POST", "/v1/switch"): [REJECTED, OK]}
    with FakeControl(socket_path, answers) as control:
        _, out = _tty(argv, [b"\xe9\n", b"222222\n"], prompt)
    assert b"Traceback" not in out and b"an MFA code is six digits" in out, out
    assert (
        _codes(control, "/v1/mfa" if watch else "/v1/switch", "code" if watch else "mfa_code")[-1]
        == "222222"
    )


def test_the_watch_looks_again_after_a_failed_look(socket_path: Path) -> None:
    broken: Answer = (500, {"error": "internal", "message": "boom"})
    answers: Answers = {
        ("GET", "/v1/status"): [OK, broken, broken, _waiting("dev")],
        ("POST", "/v1/mfa"): OK,
    }
    with FakeControl(socket_path, answers) as control:
        _, out = _tty(["mfa", "--watch", "--interval", "0.1"], [b"222222\n"])
    assert _codes(control, "/v1/mfa", "code") == ["222222"], out
    assert out.count(b"vaultd: boom") == 1, out  # said once, not at every look


def test_the_watch_asks_for_a_request_without_a_since(socket_path: Path) -> None:
    answers: Answers = {("GET", "/v1/status"): _waiting("dev", since=None), ("POST", "/v1/mfa"): OK}
    with FakeControl(socket_path, answers) as control:
        _tty(["mfa", "--watch", "--interval", "0.1"], [b"222222\n"])  # ends with Ctrl-C
    assert _codes(control, "/v1/mfa", "code") == ["222222"]


def test_a_code_wanted_again_after_codes_were_typed_is_exit_1_not_3(socket_path: Path) -> None:
    answers: Answers = {
        ("POST", "/v1/switch"): [_needs("devA"), OK],
        ("POST", "/v1/mfa"): [_needs("devB")],
    }
    with FakeControl(socket_path, answers):
        code, out = _tty(["switch", "master"], [b"222222\n"])
    assert code == 1 and b"(no code given)" not in out and b"needs a code" in out, out


@pytest.mark.parametrize("interval", ["-1", "nan", "inf", "0"])
def test_a_watch_interval_out_of_range_is_a_usage_error(socket_path: Path, interval: str) -> None:
    with FakeControl(socket_path, {("GET", "/v1/status"): OK}):
        code, out = _tty(["mfa", "--watch", "--interval", interval], [])
    assert code == 2 and b"Traceback" not in out and b"invalid poll_interval value" in out, out


def test_the_watch_sends_at_most_the_codes_asked_for_one_request(socket_path: Path) -> None:
    answers: Answers = {("GET", "/v1/status"): _waiting("dev"), ("POST", "/v1/mfa"): [REJECTED]}
    with FakeControl(socket_path, answers) as control:
        _, out = _tty(["mfa", "--watch", "--interval", "0.1"], [b"222222\n"] * 10)
    assert _codes(control, "/v1/mfa", "code") == ["222222"] * CODES_ASKED, out
    assert b"`vaultd mfa CODE` answers it" in out


@pytest.mark.parametrize("active", ["master", "dev"])
def test_a_refused_switch_says_when_it_stands_all_the_same(socket_path: Path, active: str) -> None:
    # Broker.switch: a profile left waiting for a person becomes the active one, so what was
    # served before no longer is; the one line says so when the daemon's status agrees.
    answers: Answers = {
        ("POST", "/v1/switch"): [REJECTED],
        ("GET", "/v1/status"): (200, {**SERVING_STATUS, "active": active}),
    }
    with FakeControl(socket_path, answers):
        done = subprocess.run(
            [sys.executable, "-m", "vaultd", "switch", "master", "--mfa", "111111"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
    stands = "; the switch stands: master is the active profile and waits for a code"
    assert done.returncode == 1
    assert done.stderr.startswith(f"vaultd: {REJECTED[1]['message']}"), done.stderr
    assert (stands in done.stderr) == (active == "master"), done.stderr
    assert done.stderr.count("\n") == 1


def test_refresh_asks_for_a_needed_code_on_a_terminal(socket_path: Path) -> None:
    # Before: exit 3 at a terminal, whose table entry says "no terminal to ask on".
    answers: Answers = {
        ("POST", "/v1/refresh"): [_needs("arn:aws:iam::111122223333:mfa/dev"), OK],
        ("POST", "/v1/mfa"): OK,
    }
    with FakeControl(socket_path, answers) as control:
        code, output = run_on_tty(["refresh"], "222222", "for arn:aws:iam::111122223333:mfa/dev: ")
    assert code == 0, output
    assert [b for _, p, b in control.received if p == "/v1/mfa"] == [
        {"code": "222222", "serial": "arn:aws:iam::111122223333:mfa/dev"}
    ]


def test_a_switch_left_waiting_says_it_stands_without_a_code_or_when_interrupted(
    socket_path: Path,
) -> None:
    waiting = (200, {**SERVING_STATUS, "active": "master"})
    answers: Answers = {("POST", "/v1/switch"): [_needs("dev")], ("GET", "/v1/status"): waiting}
    with FakeControl(socket_path, answers):
        done = subprocess.run(
            [sys.executable, "-m", "vaultd", "switch", "master"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
        assert done.returncode == 3, done.stderr
        assert done.stderr == (
            "vaultd: needs a code (no terminal to ask for the code on); the switch stands: "
            "master is the active profile, waiting for that code\n"
        )
        # Ctrl-C at the prompt: the daemon has made master active all the same.
        code, out = drive_tty(
            ["switch", "master"], [], b"MFA code for", interrupt_after=b"MFA code for", timeout=20
        )
    assert code == 130, out
    assert b"interrupted; the switch stands: master is the active profile" in out, out
