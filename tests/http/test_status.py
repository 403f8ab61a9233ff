"""The words and JSON rendered from the broker's typed status. Each expected document below
was produced by the broker's old dict-building `status()` on the same scenario: the control
API's /v1/status stays byte-for-byte (keys, order, values)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from dataclasses import replace
from typing import Any

from tests.helpers import FakeClock, FakeProvider, make_plan
from vaultd.core.broker import Broker
from vaultd.core.credentials import Credentials
from vaultd.core.state import MfaRequest, Reason, Slot, snapshot
from vaultd.errors import ConfigError, MfaRequired, StsError
from vaultd.http.status import NO_PROFILE, document, message


def same(broker: Broker, expected: dict[str, Any]) -> None:
    rendered = document(broker.status())
    assert json.dumps(rendered) == json.dumps(expected)  # order included


def make(clock: FakeClock, **kw: Any) -> Broker:
    return Broker(FakeProvider(clock, **kw), clock, rand=lambda: 0.5)


async def test_no_profile_and_startup_error(clock: FakeClock) -> None:
    broker = make(clock)
    assert broker.status().reason is Reason.NO_PROFILE
    same(broker, NONE)
    broker.startup_error = ConfigError("bad config line")
    same(broker, STARTUP)


async def test_serving(clock: FakeClock) -> None:
    broker = make(clock)
    await broker.switch("master")
    assert broker.status().reason is Reason.SERVING
    same(broker, SERVING)


async def test_a_sign_in_left_unrefreshed_is_in_the_credentials(clock: FakeClock) -> None:
    # The fetch's own word (signin.unrefreshed), carried with what it fetched.
    note = "IAM Identity Center corp: not refreshing the sign-in of 'dev-sso', since ..."

    class Unrefreshed(FakeProvider):
        def credentials(self, name: str, mfa_code: str | None = None) -> Credentials:
            return replace(super().credentials(name, mfa_code), unrefreshed=note)

    broker = Broker(Unrefreshed(clock), clock, rand=lambda: 0.5)
    await broker.switch("master")
    expected = {**SERVING, "credentials": {**SERVING["credentials"], "unrefreshed_signin": note}}
    same(broker, expected)


async def test_waiting_for_mfa(clock: FakeClock) -> None:
    broker = make(clock, needs_mfa=True)
    with contextlib.suppress(MfaRequired):
        await broker.switch("master")
    same(broker, WAITING)


async def test_failed_with_a_retry(clock: FakeClock) -> None:
    broker = make(clock, failure=StsError("cannot reach STS"))
    with contextlib.suppress(StsError):
        await broker.switch("master")
    status = broker.status()
    assert (status.reason, message(status)) == (Reason.FAILED, "cannot reach STS")
    same(broker, FAILED)


async def test_fetching(clock: FakeClock) -> None:
    provider = FakeProvider(clock)
    provider.gate = threading.Event()
    broker = Broker(provider, clock)
    broker.activate("master", make_plan())
    await asyncio.sleep(0)
    try:
        same(broker, FETCHING)
    finally:
        provider.gate.set()
        await broker.close()


async def test_early_mfa_request_while_serving(clock: FakeClock) -> None:
    broker = make(clock, lifetime=4 * 3600, session_ends=clock() + 2 * 3600)
    await broker.switch("master")
    clock.advance(100 * 60)
    broker.maintain()
    same(broker, EARLY)


def test_the_no_profile_sentence() -> None:
    assert NO_PROFILE == "no profile is active: run `vaultd switch PROFILE`"


NONE: dict[str, Any] = {
    "active": None,
    "role": None,
    "role_arn": None,
    "region": None,
    "state": "no_profile",
    "message": "no profile is active: run `vaultd switch PROFILE`",
    "credentials": None,
    "mfa": None,
    "last_error": None,
    "next_retry": None,
}
STARTUP: dict[str, Any] = {
    "active": None,
    "role": None,
    "role_arn": None,
    "region": None,
    "state": "config_error",
    "message": "bad config line",
    "credentials": None,
    "mfa": None,
    "last_error": None,
    "next_retry": None,
}
SERVING: dict[str, Any] = {
    "active": "master",
    "role": "DeveloperRole",
    "role_arn": None,
    "region": "eu-west-1",
    "state": "ok",
    "message": "serving master",
    "credentials": {
        "access_key_id": "****0001",
        "arn": "arn:aws:sts::222233334444:assumed-role/DeveloperRole/vaultd-test",
        "issued": "2027-01-15T08:00:00Z",
        "expires": "2027-01-15T09:00:00Z",
        "expires_in": 3600,
        "refresh_at": "2027-01-15T08:30:00Z",
        "unrefreshed_signin": None,
    },
    "mfa": None,
    "last_error": None,
    "next_retry": None,
}
WAITING: dict[str, Any] = {
    "active": "master",
    "role": "DeveloperRole",
    "role_arn": None,
    "region": "eu-west-1",
    "state": "mfa_required",
    "message": "waiting for an MFA code for master (arn:aws:iam::111122223333:mfa/e): "
    "run `vaultd mfa CODE`",
    "credentials": None,
    "mfa": {
        "profile": "master",
        "serial": "arn:aws:iam::111122223333:mfa/e",
        "since": "2027-01-15T08:00:00Z",
        "early": False,
        "session_ends": None,
        "command": "vaultd mfa CODE",
    },
    "last_error": {
        "error": "mfa_required",
        "message": "needs MFA",
        "profile": "master",
        "mfa_serial": "arn:aws:iam::111122223333:mfa/e",
        "at": "2027-01-15T08:00:00Z",
        "failures": 0,
    },
    "next_retry": None,
}
FAILED: dict[str, Any] = {
    "active": "master",
    "role": "DeveloperRole",
    "role_arn": None,
    "region": "eu-west-1",
    "state": "sts_error",
    "message": "cannot reach STS",
    "credentials": None,
    "mfa": None,
    "last_error": {
        "error": "sts_error",
        "message": "cannot reach STS",
        "at": "2027-01-15T08:00:00Z",
        "failures": 1,
    },
    "next_retry": "2027-01-15T08:00:00Z",
}
FETCHING: dict[str, Any] = {
    "active": "master",
    "role": "DeveloperRole",
    "role_arn": None,
    "region": "eu-west-1",
    "state": "refreshing",
    "message": "fetching credentials for master",
    "credentials": None,
    "mfa": None,
    "last_error": None,
    "next_retry": None,
}
EARLY: dict[str, Any] = {
    "active": "master",
    "role": "DeveloperRole",
    "role_arn": None,
    "region": "eu-west-1",
    "state": "ok",
    "message": "serving master",
    "credentials": {
        "access_key_id": "****0001",
        "arn": "arn:aws:sts::222233334444:assumed-role/DeveloperRole/vaultd-test",
        "issued": "2027-01-15T08:00:00Z",
        "expires": "2027-01-15T12:00:00Z",
        "expires_in": 8400,
        "refresh_at": "2027-01-15T11:30:00Z",
        "unrefreshed_signin": None,
    },
    "mfa": {
        "profile": "master",
        "serial": "arn:aws:iam::111122223333:mfa/e",
        "since": "2027-01-15T09:40:00Z",
        "early": True,
        "session_ends": "2027-01-15T10:00:00Z",
        "command": "vaultd mfa CODE",
    },
    "last_error": None,
    "next_retry": None,
}


def test_a_wait_behind_another_profiles_request_names_that_request(clock: FakeClock) -> None:
    # master waits for a code from its device, but the one open request is an exec's for
    # another device: `vaultd mfa CODE` answers that one, so the sentence must say so.
    mine = "arn:aws:iam::1:mfa/elmer"
    theirs = MfaRequest("other2", "arn:aws:iam::1:mfa/bugs", clock(), early=False)
    slot = Slot("master", plan=make_plan("master", serial=mine))
    slot.error = MfaRequired("needs MFA", profile="master", serial=mine)
    said = message(snapshot("master", slot, theirs, None, clock()))
    assert said == (
        f"waiting for an MFA code for master ({mine}), after the open request for other2: "
        "`vaultd mfa CODE` answers that one first, with a code from arn:aws:iam::1:mfa/bugs"
    )
    own = MfaRequest("master", mine, clock(), early=False)
    said = message(snapshot("master", slot, own, None, clock()))
    assert said == f"waiting for an MFA code for master ({mine}): run `vaultd mfa CODE`"


def test_a_wait_for_a_code_says_what_failed_before_a_person_was_asked(clock: FakeClock) -> None:
    # A failed mfa_process or ykman, or a code STS refused: the reason is on the state
    # line, since `vaultd status` leaves out a last error that is the state itself.
    mine = "arn:aws:iam::1:mfa/elmer"
    slot = Slot("master", plan=make_plan("master", serial=mine))
    why = "mfa_process exited with status 3: boom"
    slot.error = MfaRequired("needs MFA", profile="master", serial=mine, reason=why)
    said = message(snapshot("master", slot, None, None, clock()))
    assert said == f"waiting for an MFA code for master ({mine}); {why}: run `vaultd mfa CODE`"
