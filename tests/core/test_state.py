"""When a slot is due for a refresh: pure arithmetic on a Slot, tested without a broker."""

from __future__ import annotations

import pytest

from tests.helpers import START, make_creds
from vaultd.core import schedule
from vaultd.core.state import Slot
from vaultd.errors import MfaRequired, StsError


def test_a_new_slot_is_due_at_once() -> None:
    slot = Slot("master")
    assert slot.due(START) and slot.next_due() is None


def test_held_credentials_are_due_at_their_refresh_time() -> None:
    slot = Slot("master", creds=make_creds(START, lifetime=3600))
    assert slot.next_due() == START + 1800
    assert not slot.due(START + 1799) and slot.due(START + 1800)


@pytest.mark.parametrize(
    ("lifetime", "due_after"),
    [(12 * 3600, 12 * 3600 - 1800), (7200, 5400), (3600, 1800), (900, 450), (61, 30.5)],
)
def test_refresh_starts_30_minutes_before_expiry_or_at_half_life(
    lifetime: int, due_after: float
) -> None:
    creds = make_creds(START, lifetime=lifetime)
    assert schedule.refresh_due(creds) == START + due_after


def test_a_failure_is_due_at_its_retry_time_only() -> None:
    slot = Slot("master", error=StsError("down"), retry_at=START + 30)
    assert slot.next_due() == START + 30
    assert not slot.due(START + 29) and slot.due(START + 30)
    assert not Slot("master", error=StsError("down")).due(START)  # failed, no retry set


def test_waiting_for_a_person_is_never_due() -> None:
    needs = MfaRequired("code", profile="master", serial="arn:aws:iam::1:mfa/x")
    slot = Slot("master", creds=make_creds(START), error=needs, retry_at=START)
    assert not slot.due(START + 10 * 3600) and slot.next_due() is None
