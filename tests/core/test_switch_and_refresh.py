"""A failed switch keeps the profile that was served, and a manual refresh never makes a
second STS call for a refresh that is in flight or just landed (the tester's findings).
Fake clock and a counting fake provider: no sockets, no sleeps."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.helpers import FakeClock, FakeProvider, settle
from vaultd.core import schedule
from vaultd.core.broker import Broker
from vaultd.errors import BadMfaCode, MfaRequired, StsError, VaultdError


class PerProfile(FakeProvider):
    """Fails for the profiles in `broken` (the tester's `ssox` before sign-in support, a
    bad source) and works for every other."""

    broken: frozenset[str] = frozenset()

    def credentials(self, name: str, mfa_code: str | None = None):  # type: ignore[no-untyped-def]
        if name in self.broken:
            self.calls.append((name, mfa_code))
            raise StsError(f"profile {name!r} cannot be served")
        return super().credentials(name, mfa_code)


def make(clock: FakeClock) -> tuple[Broker, PerProfile]:
    provider = PerProfile(clock)
    provider.broken = frozenset({"broken"})
    return Broker(provider, clock, rand=lambda: 0.5), provider


async def test_a_failed_switch_keeps_serving_the_working_profile(clock: FakeClock) -> None:
    broker, _ = make(clock)
    await broker.switch("master")
    served = broker.current()
    assert served is not None
    with pytest.raises(StsError):
        await broker.switch("broken")
    assert broker.active == "master"
    assert broker.current() is served
    assert broker.status().active == "master"


async def test_a_switch_waiting_for_mfa_takes_effect(clock: FakeClock) -> None:
    broker, provider = make(clock)
    await broker.switch("master")
    provider.needs_mfa = True
    with pytest.raises(MfaRequired):
        await broker.switch("other")
    assert broker.active == "other"
    assert broker.mfa is not None and broker.mfa.profile == "other"
    await broker.submit_mfa("123456")
    assert broker.current() is not None and broker.mfa is None


async def test_a_code_that_made_the_cached_session_is_not_refused(clock: FakeClock) -> None:
    broker, provider = make(clock)
    provider.needs_mfa = True
    await broker.switch("master", "123456")
    # The session is cached now: switching elsewhere with the same code needs no code.
    await broker.switch("../../etc", "123456")
    assert broker.active == "../../etc"
    assert provider.calls[-1] == ("../../etc", None)


async def in_backoff(clock: FakeClock) -> tuple[Broker, PerProfile, float]:
    """master served, then a refresh failed: its retry is due at the time returned (epoch
    seconds), and STS is back."""
    broker, provider = make(clock)
    await broker.switch("master")
    provider.failure = StsError("cannot reach STS")
    clock.advance(31 * 60)
    broker.maintain()
    await settle(broker)
    slot = broker.active_slot()
    assert slot is not None and slot.retry_at is not None
    provider.failure = None
    return broker, provider, slot.retry_at


async def test_a_manual_refresh_joins_a_backoff_retry_in_flight(clock: FakeClock) -> None:
    broker, provider, retry_at = await in_backoff(clock)
    provider.gate = threading.Event()
    before = len(provider.calls)
    clock.now = retry_at
    broker.maintain()  # the retry starts and blocks in the provider
    manual = asyncio.ensure_future(broker.refresh())
    await asyncio.sleep(0)
    provider.gate.set()
    await manual
    await settle(broker)
    assert len(provider.calls) - before == 1


async def test_a_manual_refresh_just_after_a_retry_landed_reuses_it(clock: FakeClock) -> None:
    broker, provider, retry_at = await in_backoff(clock)
    clock.now = retry_at
    broker.maintain()
    await settle(broker)
    landed = broker.current()
    before = len(provider.calls)
    clock.advance(0.1)
    await broker.refresh()
    assert len(provider.calls) == before and broker.current() is landed
    # Later, a manual refresh is a new call again.
    clock.advance(schedule.JUST_RECOVERED)
    await broker.refresh()
    assert len(provider.calls) == before + 1


async def test_a_failed_first_switch_stands_and_is_retried(clock: FakeClock) -> None:
    # Nothing was served, so nothing is lost: the daemon keeps trying, as at start-up.
    broker, _ = make(clock)
    with pytest.raises(VaultdError):
        await broker.switch("broken")
    slot = broker.active_slot()
    assert broker.active == "broken" and slot is not None and slot.retry_at is not None


async def test_a_manual_refresh_after_an_ordinary_one_asks_sts_again(clock: FakeClock) -> None:
    broker, provider = make(clock)
    await broker.switch("master")
    before = len(provider.calls)
    await broker.refresh()
    assert len(provider.calls) == before + 1


@pytest.mark.parametrize("command", ["switch", "ensure"])
async def test_a_spent_code_when_a_code_is_needed_after_all_is_named_as_spent(
    clock: FakeClock, command: str
) -> None:
    """The session a code made is gone (`vaultd clear`): the same code again must not read
    as no code at all (exit 3, "needs an MFA code"), but as the spent one it is."""
    broker, provider = make(clock)
    provider.needs_mfa = True
    await broker.switch("master", "123456")
    provider.needs_mfa = True  # the cached session was dropped
    with pytest.raises(BadMfaCode) as raised:
        await getattr(broker, command)("other", "123456")
    assert raised.value.message == "that code was already sent to STS: wait for the next one"
    assert provider.calls[-1] == ("other", None)  # the spent code was never sent again
    if command == "switch":  # it waits for the next code, as any switch that needs one
        assert broker.active == "other" and broker.mfa is not None
