"""A code typed at a prompt goes back with the MFA device the prompt named, so that the
daemon refuses it unsent if another request has taken the open one's place meanwhile; a
code given outright (`vaultd mfa CODE`) answers whatever request is open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.fake_control import SERVING_STATUS, Answer, Answers, FakeControl
from tests.e2e.harness import run_on_tty, watch_on_tty
from vaultd import settings

DEV_A = "arn:aws:iam::111122223333:mfa/a"
DEV_B = "arn:aws:iam::444455556666:mfa/b"
OK: Answer = (200, SERVING_STATUS)
CHANGED: Answer = (
    409,
    {"error": "mfa_request_changed", "message": f"the MFA request changed: now {DEV_B}"},
)


def _waiting(serial: str) -> Answer:
    request = {"profile": "master", "serial": serial, "since": "2026-11-30T05:00:00Z"}
    return (200, {**SERVING_STATUS, "mfa": request})


def _sent(control: FakeControl) -> list[dict[str, Any]]:
    return [body for _, path, body in control.received if path == "/v1/mfa"]


@pytest.fixture
def socket_path() -> Path:
    return settings.load().control_socket


NEEDS_A: Answer = (409, {"error": "mfa_required", "message": "needs a code", "mfa_serial": DEV_A})


@pytest.mark.parametrize(
    ("argv", "answers", "prompt", "interrupt"),
    [
        (["switch", "master"], {("POST", "/v1/switch"): [NEEDS_A, OK]}, f"for {DEV_A}: ", None),
        (["mfa"], {("GET", "/v1/status"): _waiting(DEV_A)}, f"for {DEV_A}: ", None),
        (
            ["mfa", "--watch", "--interval", "0.1"],
            {("GET", "/v1/status"): _waiting(DEV_A)},
            f"for {DEV_A}: ",
            "Serving master",
        ),
    ],
    ids=["switch", "mfa", "watch"],
)
def test_each_prompt_sends_the_device_it_named(
    socket_path: Path, argv: list[str], answers: Answers, prompt: str, interrupt: str | None
) -> None:
    with FakeControl(socket_path, {("POST", "/v1/mfa"): OK, **answers}) as control:
        code, output = run_on_tty(argv, "222222", prompt, interrupt_after=interrupt)
    assert code == 0, output
    assert _sent(control) == [{"code": "222222", "serial": DEV_A}], output


def test_a_code_given_outright_answers_whatever_is_open(socket_path: Path) -> None:
    with FakeControl(socket_path, {("POST", "/v1/mfa"): OK}) as control:
        code, output = run_on_tty(["mfa", "222222"], "", "never asked")
    assert code == 0, output
    assert _sent(control) == [{"code": "222222"}]


def test_the_watch_asks_for_the_request_that_took_the_place_of_its_own(
    socket_path: Path,
) -> None:
    answers: Answers = {
        ("GET", "/v1/status"): [_waiting(DEV_A), _waiting(DEV_B)],
        ("POST", "/v1/mfa"): [CHANGED, OK],
    }
    with FakeControl(socket_path, answers) as control:
        code, output = watch_on_tty(times=2)
    assert code == 0, output
    assert [(body["serial"]) for body in _sent(control)] == [DEV_A, DEV_B], output
    assert "the MFA request changed" in output
    assert "not asking again" not in output  # it does ask: the new request is another one
