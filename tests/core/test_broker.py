"""Broker lifecycle rules, driven by a fake clock and a scripted provider: no sockets, no sleeps."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import replace

import pytest

from tests.helpers import FakeClock, FakeProvider, RecordingAnnouncer, make_plan, settle
from vaultd.core import schedule
from vaultd.core.broker import LEFT_REQUEST_STANDS, Broker
from vaultd.core.credentials import Credentials
from vaultd.core.resolve import Plan
from vaultd.errors import (
    BadMfaCode,
    ConfigError,
    KeyringError,
    KeyringLocked,
    MfaRejected,
    MfaRequestChanged,
    MfaRequired,
    NoPendingMfa,
    StsError,
    VaultdError,
)
from vaultd.http.status import document, message


def make(clock: FakeClock, **kw: object) -> tuple[Broker, FakeProvider]:
    provider = FakeProvider(clock, **kw)  # type: ignore[arg-type]
    return Broker(provider, clock, rand=lambda: 0.5), provider


async def test_no_profile_serves_nothing(clock: FakeClock) -> None:
    broker, provider = make(clock)
    assert broker.current() is None
    assert broker.status().state == "no_profile"
    assert provider.calls == []


async def test_switch_fetches_and_serves(clock: FakeClock) -> None:
    broker, provider = make(clock)
    await broker.switch("master")
    creds = broker.current()
    assert creds is not None
    assert creds.remaining(clock()) == 3600
    assert broker.status().state == "ok"
    assert provider.calls == [("master", None)]


async def test_refresh_starts_when_thirty_minutes_remain(clock: FakeClock) -> None:
    broker, provider = make(clock)
    await broker.switch("master")
    first = broker.current()
    clock.advance(29 * 60)  # 31 minutes left: not yet
    assert broker.current() is first
    await settle(broker)
    assert len(provider.calls) == 1
    clock.advance(60)  # exactly 30 minutes left: due
    assert broker.current() is first  # the old set is still served while the new one comes
    await settle(broker)
    second = broker.current()
    assert second is not None and second is not first
    assert len(provider.calls) == 2
    assert second.remaining(clock()) >= 20 * 60


async def test_short_lifetimes_refresh_at_half_life(clock: FakeClock) -> None:
    broker, provider = make(clock, lifetime=900)
    await broker.switch("master")
    creds = broker.current()
    assert creds is not None
    assert schedule.refresh_due(creds) == creds.issued + 450
    clock.advance(449)
    broker.maintain()
    await settle(broker)
    assert len(provider.calls) == 1
    clock.advance(1)
    broker.maintain()
    await settle(broker)
    assert len(provider.calls) == 2


async def test_served_credentials_keep_twenty_minutes_while_sts_answers(clock: FakeClock) -> None:
    broker, _ = make(clock)
    await broker.switch("master")
    least = float("inf")
    for _ in range(6 * 60):  # six hours, minute by minute, with the maintenance loop
        clock.advance(60)
        broker.maintain()
        await settle(broker)
        creds = broker.current()
        assert creds is not None
        least = min(least, creds.remaining(clock()))
    assert least >= 20 * 60


async def test_one_sts_call_for_many_concurrent_callers(clock: FakeClock) -> None:
    broker, provider = make(clock)
    broker.activate("master", make_plan())
    provider.gate = threading.Event()
    waits = [broker.wait_current(2.0) for _ in range(200)]
    gather = asyncio.gather(*waits)
    await asyncio.sleep(0)
    provider.gate.set()
    results = await gather
    assert all(r is not None for r in results)
    assert len({id(r) for r in results}) == 1
    assert len(provider.calls) == 1


async def test_failures_back_off_and_old_credentials_are_served_until_expiry(
    clock: FakeClock,
) -> None:
    broker, provider = make(clock)
    await broker.switch("master")
    held = broker.current()
    assert held is not None
    provider.failure = StsError("cannot reach STS")
    clock.advance(31 * 60)  # due
    broker.maintain()
    await settle(broker)
    status = broker.status()
    assert status.last_error is not None and status.last_error.error.code == "sts_error"
    assert status.next_retry is not None
    assert broker.current() is held
    delays = []
    for _ in range(12):
        slot = broker.active_slot()
        assert slot is not None and slot.retry_at is not None
        delays.append(slot.retry_at - clock())
        clock.now = slot.retry_at - 0.01
        broker.maintain()  # not yet: no call before the retry time
        calls = len(provider.calls)
        await settle(broker)
        assert len(provider.calls) == calls
        clock.now = slot.retry_at
        broker.maintain()
        await settle(broker)
    assert delays == sorted(delays)
    assert delays[0] == pytest.approx(0.75)  # 1 s step, jitter at its middle
    assert max(delays) <= schedule.BACKOFF_MAX
    # Until the very end the old set is served; after that, nothing.
    clock.now = held.expiration - schedule.SERVE_MIN_LEFT - 1
    assert broker.current() is held
    clock.now = held.expiration
    assert broker.current() is None
    # STS comes back: the next retry recovers without help.
    provider.failure = None
    slot = broker.active_slot()
    assert slot is not None and slot.retry_at is not None
    clock.now = max(clock.now, slot.retry_at)
    broker.maintain()
    await settle(broker)
    assert broker.current() is not None
    assert broker.status().state == "ok"


async def test_backoff_is_jittered_and_bounded() -> None:
    assert schedule.backoff(1, lambda: 0.0) == 0.5
    assert schedule.backoff(1, lambda: 1.0) == 1.0
    assert schedule.backoff(3, lambda: 0.0) == 2.0
    assert schedule.backoff(50, lambda: 1.0) == schedule.BACKOFF_MAX


async def test_after_sleep_first_request_answers_at_once_and_one_refresh_starts(
    clock: FakeClock,
) -> None:
    broker, provider = make(clock)
    await broker.switch("master")
    clock.advance(8 * 3600)  # the laptop slept through expiry
    answers = [broker.current() for _ in range(50)]
    assert answers == [None] * 50  # expired: never served, and no waiting
    await settle(broker)
    assert len(provider.calls) == 2  # one refresh, not fifty
    assert broker.current() is not None


async def test_mfa_request_opens_and_code_satisfies_it(clock: FakeClock) -> None:
    broker, provider = make(clock, needs_mfa=True)
    with pytest.raises(MfaRequired):
        await broker.switch("master")
    assert broker.active == "master"
    status = broker.status()
    assert status.state == "mfa_required"
    assert status.mfa is not None and status.mfa.profile == "master"
    assert broker.current() is None
    # Waiting for a person: the loop does not keep calling the provider.
    calls = len(provider.calls)
    clock.advance(3600)
    broker.maintain()
    await settle(broker)
    assert len(provider.calls) == calls
    await broker.submit_mfa("123456")
    assert broker.current() is not None
    assert broker.status().mfa is None


async def test_wrong_code_is_reported_and_request_stays_open(clock: FakeClock) -> None:
    broker, _ = make(clock, needs_mfa=True)
    with pytest.raises(MfaRequired):
        await broker.switch("master")
    with pytest.raises(MfaRejected):
        await broker.submit_mfa("000000")
    assert broker.status().mfa is not None
    assert broker.status().state == "mfa_required"
    with pytest.raises(BadMfaCode, match="already"):
        await broker.submit_mfa("000000")  # never sent twice
    with pytest.raises(BadMfaCode, match="six digits"):
        await broker.submit_mfa("12345")
    await broker.submit_mfa("123456")
    assert broker.current() is not None


async def test_a_code_typed_for_another_device_is_refused_unsent(clock: FakeClock) -> None:
    # The daemon keeps one request; a code typed for a device it no longer waits on would
    # count as a failure against the device it does wait on.
    broker, provider = make(clock, needs_mfa=True)
    with pytest.raises(MfaRequired):
        await broker.switch("master")
    request = broker.status().mfa
    assert request is not None and request.serial
    calls = len(provider.calls)
    with pytest.raises(
        MfaRequestChanged, match=f"master now waits for a code from {request.serial}"
    ):
        await broker.submit_mfa("123456", "arn:aws:iam::999988887777:mfa/other")
    assert len(provider.calls) == calls  # STS not asked
    assert broker.status().mfa == request
    await broker.submit_mfa("123456", request.serial)  # not spent: it was never sent
    assert broker.current() is not None
    assert provider.calls[calls:] == [("master", "123456")]


async def test_mfa_without_request_is_refused(clock: FakeClock) -> None:
    broker, _ = make(clock)
    with pytest.raises(NoPendingMfa):
        await broker.submit_mfa("123456")


async def test_switch_with_code_needs_no_second_step(clock: FakeClock) -> None:
    broker, provider = make(clock, needs_mfa=True)
    await broker.switch("master", "123456")
    assert broker.current() is not None
    assert provider.calls == [("master", "123456")]


async def test_status_never_contains_secrets(clock: FakeClock) -> None:
    broker, _ = make(clock)
    await broker.switch("master")
    creds = broker.current()
    assert creds is not None
    shown = repr(broker.status()) + json.dumps(document(broker.status()))
    text = shown + repr(creds) + str(creds)
    assert creds.secret_access_key.reveal() not in text
    assert creds.session_token.reveal() not in text
    assert creds.access_key_id not in shown  # only its last four characters


async def test_close_cancels_refreshes_in_flight(clock: FakeClock) -> None:
    # The provider call never returns by itself (a hung STS call): close() must cancel the
    # refresh rather than wait for it. Counted in turns of the event loop, not in seconds.
    entered, cancelled, never = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def hung(*call: object) -> object:
        entered.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return None

    broker = Broker(FakeProvider(clock), clock, run_blocking=hung)
    broker.activate("master", make_plan())
    await entered.wait()
    in_flight = [t for t in broker._tasks if not t.done()]
    assert in_flight
    closing = asyncio.create_task(broker.close())
    for _ in range(100):
        if closing.done():
            break
        await asyncio.sleep(0)  # one turn of the loop
    done = closing.done()
    never.set()  # let anything left over finish, so a failure leaves no task behind
    await closing
    assert done and cancelled.is_set()
    assert all(t.cancelled() for t in in_flight)


async def test_mfa_needed_while_old_credentials_last_does_not_spin(clock: FakeClock) -> None:
    broker, provider = make(clock)
    await broker.switch("master")
    provider.needs_mfa = True  # the session ran out: the next refresh needs a person
    clock.advance(31 * 60)
    broker.maintain()
    await settle(broker)
    assert broker.status().mfa is not None
    calls = len(provider.calls)
    for _ in range(100):
        assert broker.maintain() >= 1.0  # sleeps, not a busy loop
        await settle(broker)
    assert len(provider.calls) == calls
    assert broker.current() is not None  # the old set is still served until it lapses


async def test_early_mfa_request_before_the_session_ends(clock: FakeClock) -> None:
    announcer = RecordingAnnouncer()
    provider = FakeProvider(clock, session_ends=clock() + 2 * 3600)
    broker = Broker(provider, clock, rand=lambda: 0.5, announcer=announcer)
    await broker.switch("master")
    ask_at = schedule.mfa_request_due(clock() + 2 * 3600)
    assert ask_at == clock() + 2 * 3600 - 20 * 60
    while clock.now + 300 < ask_at:  # the daemon's loop, five minutes at a time
        clock.advance(300)
        broker.maintain()
        await settle(broker)
    clock.now = ask_at - 1
    assert broker.maintain() <= 1
    assert broker.mfa is None
    clock.now = ask_at
    broker.maintain()
    status = broker.status()
    assert status.mfa is not None and status.mfa.early is True
    assert status.state == "ok"  # still serving while the person is asked
    assert announcer.requests == [("master", True)]
    broker.maintain()
    assert announcer.requests == [("master", True)]  # asked once
    await broker.submit_mfa("123456")
    assert broker.mfa is None
    creds = broker.current()
    assert creds is not None and creds.source_expiration == clock() + 12 * 3600
    assert announcer.statuses[-1] == "serving master"


async def test_an_early_request_stays_open_across_role_refreshes(clock: FakeClock) -> None:
    # 15-minute role credentials are refreshed at half-life from the same MFA session.
    # Before, each of those refreshes closed the early request and the next pass opened
    # and announced it again: three announcements in one early window.
    announcer = RecordingAnnouncer()
    provider = FakeProvider(clock, lifetime=900, session_ends=clock() + 2 * 3600)
    broker = Broker(provider, clock, rand=lambda: 0.5, announcer=announcer)
    await broker.switch("master")
    ends = clock() + 2 * 3600
    while clock.now < ends - schedule.MIN_SESSION_LEFT - 60:
        await tick(broker, clock, 60)
    assert announcer.requests == [("master", True)]
    assert broker.mfa is not None and broker.mfa.early
    assert len(provider.calls) > 8  # role credentials were refreshed meanwhile
    await broker.submit_mfa("123456")
    assert broker.mfa is None  # a new session ends the request


async def test_no_early_request_when_codes_come_by_themselves(clock: FakeClock) -> None:
    provider = FakeProvider(clock, session_ends=clock() + 3600, auto_code=True)
    broker = Broker(provider, clock)
    await broker.switch("master")
    clock.advance(3000)
    broker.maintain()
    assert broker.mfa is None


async def test_person_needed_is_announced(clock: FakeClock) -> None:
    announcer = RecordingAnnouncer()
    broker = Broker(FakeProvider(clock, needs_mfa=True), clock, announcer=announcer)
    with pytest.raises(MfaRequired):
        await broker.switch("master")
    assert announcer.requests == [("master", False)]


async def test_console_credentials_federate_only_without_a_role(clock: FakeClock) -> None:
    broker, provider = make(clock)
    plan, creds = await broker.console_credentials("master", 1800)  # make_plan has no role
    assert (plan.roles, creds.lifetime) == ((), 1800)
    assert provider.calls == [("master", "federate 1800")]
    assert broker.active is None  # a console session changes nothing IMDS serves


async def test_clear_wakes_the_maintenance_loop_so_a_code_is_asked_for_at_once(
    clock: FakeClock,
) -> None:
    broker, provider = make(clock)
    await broker.switch("master")
    maintenance = asyncio.create_task(broker.run())
    try:
        for _ in range(3):
            await asyncio.sleep(0)  # the loop finds nothing due and sleeps for half an hour
        provider.needs_mfa = True  # the dropped session was what spared the code
        broker.clear()
        for _ in range(3):
            await asyncio.sleep(0)
        await settle(broker)
        # Asked now, with no SDK request to start it: `vaultd status` shows the request
        # and `vaultd mfa CODE` answers it, as after any other lost session.
        assert provider.calls == [("master", None), ("master", None)]
        assert broker.status().state == "mfa_required"
    finally:
        maintenance.cancel()
        await asyncio.gather(maintenance, return_exceptions=True)


async def test_the_maintenance_loop_ends_when_cancelled_as_it_is_woken(
    clock: FakeClock,
) -> None:
    """An exec token's hold wakes the loop, and SIGTERM cancels it in the same turn: the
    cancellation was swallowed (asyncio.wait_for on 3.11) and the daemon hung, not stopping."""
    broker, _ = make(clock)
    maintenance = asyncio.create_task(broker.run())
    for _ in range(3):
        await asyncio.sleep(0)  # asleep until woken
    broker.hold("master")
    await asyncio.sleep(0)  # the wake-up is delivered...
    maintenance.cancel()  # ...and the cancellation lands with it
    done, _ = await asyncio.wait([maintenance], timeout=5)
    assert done == {maintenance}, "the loop went round again"
    assert maintenance.cancelled()


async def master_waits_behind_other(broker: Broker) -> None:
    """Switch to master, which needs a code; then an exec on other, which needs one too
    and takes the daemon's one request."""
    with pytest.raises(MfaRequired):
        await broker.switch("master")
    with pytest.raises(MfaRequired):
        await broker.ensure("other")


class DeviceEach(FakeProvider):
    """Each profile with its own MFA device: a code for one makes no session for another."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.waiting = {"master", "other"}

    def plan(self, name: str) -> Plan:
        return make_plan(name, serial=f"arn:aws:iam::111122223333:mfa/{name}")

    def credentials(self, name: str, mfa_code: str | None = None) -> Credentials:
        if name in self.waiting and mfa_code is None:
            self.calls.append((name, None))
            raise MfaRequired("needs MFA", profile=name, serial=self.plan(name).mfa_serial or "")
        self.waiting.discard(name)
        return super().credentials(name, mfa_code)


@pytest.mark.parametrize("shared_session", [False, True], ids=["own-device", "shared-session"])
async def test_answering_another_profiles_request_gives_the_active_its_request_back(
    clock: FakeClock, shared_session: bool
) -> None:
    # exec on `other` while the active profile waits for a code: the daemon's one request
    # becomes other's; once that is answered, master must not be left waiting with nothing
    # open to answer (before: stuck until `vaultd refresh`).
    announcer = RecordingAnnouncer()
    provider = FakeProvider(clock, needs_mfa=True) if shared_session else DeviceEach(clock)
    broker = Broker(provider, clock, rand=lambda: 0.5, announcer=announcer)
    await master_waits_behind_other(broker)
    assert broker.mfa is not None and broker.mfa.profile == "other"
    await broker.submit_mfa("123456")
    broker.maintain()
    await settle(broker)
    if shared_session:  # other's code made the session master is built on: served
        assert broker.current() is not None and broker.mfa is None
    else:
        assert broker.current() is None
        assert broker.mfa is not None and broker.mfa.profile == "master"
        assert announcer.requests[-1] == ("master", False)
        calls = len(provider.calls)
        broker.maintain()  # one request again: nothing more is tried until it is answered
        await settle(broker)
        assert len(provider.calls) == calls
        await broker.submit_mfa("654321", broker.mfa.serial)
        assert broker.current() is not None


async def test_a_left_exec_request_gives_way_to_the_active_profiles_early_request(
    clock: FakeClock,
) -> None:
    # An exec whose code nobody typed leaves its request open (its exit says: `vaultd mfa
    # CODE`, then run it again). Before, that request kept the one place until answered:
    # master was never asked early, and its session ran out with SDKs refused.
    announcer = RecordingAnnouncer()
    provider = DeviceEach(clock)
    provider.waiting = {"other"}
    provider.session_ends = clock() + 2 * 3600
    broker = Broker(provider, clock, rand=lambda: 0.5, announcer=announcer)
    await broker.switch("master")
    ask_at = schedule.mfa_request_due(clock() + 2 * 3600)

    async def run_until(when: float) -> None:  # the daemon's loop, a minute at a time
        while clock.now < when:
            await tick(broker, clock, min(60, when - clock.now))

    await run_until(ask_at - 60)  # the exec asks a minute before master's early request
    with pytest.raises(MfaRequired):
        await broker.ensure("other")
    await run_until(ask_at - 60 + LEFT_REQUEST_STANDS - 1)
    # Still other's: a person at the exec's prompt may be typing its code.
    assert broker.mfa is not None and broker.mfa.profile == "other"
    await run_until(ask_at - 60 + LEFT_REQUEST_STANDS)
    assert broker.mfa is not None and (broker.mfa.profile, broker.mfa.early) == ("master", True)
    assert announcer.requests[-1] == ("master", True)
    assert broker.current() is not None  # master still served while asked
    await broker.submit_mfa("123456", broker.mfa.serial)
    creds = broker.current()
    assert creds is not None and creds.source_expiration == clock() + 12 * 3600


async def tick(broker: Broker, clock: FakeClock, seconds: float) -> None:
    """`seconds` of the daemon's time, then one maintenance pass and what it started."""
    clock.advance(seconds)
    broker.maintain()
    await settle(broker)


@pytest.mark.parametrize("other_in_use", [False, True], ids=["exec-ended", "exec-running"])
async def test_a_left_exec_request_gives_way_to_the_active_profile_waiting_for_a_code(
    clock: FakeClock, other_in_use: bool
) -> None:
    # master waits for its code; an exec on other takes the one request. While the exec's
    # child holds other's credentials, the request stays other's; once nobody uses other,
    # it stands LEFT_REQUEST_STANDS seconds, then is handed to master: opened for master's
    # device, with no refresh tried (nothing changed for master: a retry would only run a
    # refused automatic code again).
    announcer = RecordingAnnouncer()
    provider = DeviceEach(clock)
    broker = Broker(provider, clock, rand=lambda: 0.5, announcer=announcer)
    await master_waits_behind_other(broker)
    if other_in_use:
        broker.hold("other")
    calls = len(provider.calls)
    await tick(broker, clock, LEFT_REQUEST_STANDS - 1)
    assert broker.mfa is not None and broker.mfa.profile == "other"
    await tick(broker, clock, 1)
    assert broker.mfa is not None
    assert broker.mfa.profile == ("other" if other_in_use else "master")
    assert len(provider.calls) == calls
    if not other_in_use:
        assert broker.mfa.serial.endswith("mfa/master")
        assert announcer.requests[-1] == ("master", False)
        await broker.submit_mfa("123456", broker.mfa.serial)
        assert broker.current() is not None


@pytest.mark.parametrize("use", ["exec-again", "refresh", "code-typed", "exec-child-ends"])
async def test_a_left_request_stands_from_when_its_profile_was_last_used(
    clock: FakeClock, use: str
) -> None:
    # Before: the 5 minutes ran from when the request opened, so a person at a second
    # exec's prompt, retyping a mistyped code, or whose exec child had just ended lost it.
    provider = DeviceEach(clock)
    broker = Broker(provider, clock, rand=lambda: 0.5)
    with pytest.raises(MfaRequired):
        await broker.switch("master")
    if use == "exec-child-ends":  # its session ends while an exec child holds other
        provider.waiting.discard("other")
        await broker.ensure("other")
        broker.hold("other")
        provider.waiting.add("other")
        with pytest.raises(MfaRequired):
            await broker.refresh("other")
    else:
        with pytest.raises(MfaRequired):
            await broker.ensure("other")
    await tick(broker, clock, LEFT_REQUEST_STANDS - 10)
    if use == "exec-again":
        with pytest.raises(MfaRequired):
            await broker.ensure("other")
    elif use == "refresh":
        with pytest.raises(MfaRequired):
            await broker.refresh("other")
    elif use == "code-typed":
        with pytest.raises(BadMfaCode):  # not sent; and with it the person is there
            await broker.submit_mfa("12345", broker.mfa.serial if broker.mfa else None)
    else:
        broker.release("other")
    await tick(broker, clock, 10)
    assert broker.mfa is not None and broker.mfa.profile == "other"
    await tick(broker, clock, LEFT_REQUEST_STANDS - 10)
    assert broker.mfa is not None and broker.mfa.profile == "master"


async def test_a_polled_profile_keeps_its_request_rather_than_flipping(clock: FakeClock) -> None:
    # `credential_process = vaultd export --format json other`, polled once a minute by a
    # tool with no terminal. With the 5 minutes counted from when the request opened, the
    # request went to master and back at every poll: 13 announcements in 30 minutes.
    announcer = RecordingAnnouncer()
    broker = Broker(DeviceEach(clock), clock, rand=lambda: 0.5, announcer=announcer)
    with pytest.raises(MfaRequired):
        await broker.switch("master")
    for _ in range(30):
        with pytest.raises(MfaRequired):
            await broker.ensure("other")
        await tick(broker, clock, 60)
    assert announcer.requests == [("master", False), ("other", False)]


class AutoForMaster(DeviceEach):
    """master's code comes from mfa_process, and STS refuses it while master waits."""

    def has_auto_code(self, plan: Plan) -> bool:
        return plan.target == "master"

    def credentials(self, name: str, mfa_code: str | None = None) -> Credentials:
        if name == "master" and mfa_code is None and "master" in self.waiting:
            self.calls.append((name, "auto"))
            raise MfaRejected("STS rejected the MFA code")
        return super().credentials(name, mfa_code)


async def test_a_refused_code_with_another_profiles_request_open_names_its_own_device(
    clock: FakeClock,
) -> None:
    # Before: master's refused automatic code took the device of the request open then
    # (an exec's on other), and the request handed to master asked for other's device.
    provider = AutoForMaster(clock)
    provider.waiting = {"other"}
    broker = Broker(provider, clock, rand=lambda: 0.5)
    await broker.switch("master")
    clock.advance(29 * 60)  # master's refresh is due in a minute
    with pytest.raises(MfaRequired):
        await broker.ensure("other")
    provider.waiting.add("master")
    for _ in range(6):
        await tick(broker, clock, 60)
    error = broker.slots["master"].error
    assert isinstance(error, MfaRequired) and error.serial.endswith("mfa/master")
    assert broker.mfa is not None and broker.mfa.profile == "master"
    assert broker.mfa.serial.endswith("mfa/master")
    assert provider.calls.count(("master", "auto")) == 1  # never run again


async def test_the_request_goes_to_the_active_profile_refused_before_an_early_one(
    clock: FakeClock,
) -> None:
    # Before: profiles in use were taken in the order they were first used, so an exec
    # child's early request (x, still served) went before master, whose SDKs were refused.
    class EarlyX(DeviceEach):
        def credentials(self, name: str, mfa_code: str | None = None) -> Credentials:
            creds = super().credentials(name, mfa_code)
            return replace(creds, source_expiration=clock() + 600) if name == "x" else creds

    broker = Broker(EarlyX(clock), clock, rand=lambda: 0.5)
    await broker.ensure("x")
    broker.hold("x")  # an exec child on x: its session ends in 10 minutes
    await master_waits_behind_other(broker)
    await tick(broker, clock, LEFT_REQUEST_STANDS)
    assert broker.mfa is not None and (broker.mfa.profile, broker.mfa.early) == ("master", False)


@pytest.mark.parametrize("master", ["asked-early", "refused"])
async def test_the_request_goes_to_a_refused_profile_first_then_to_the_active_one(
    clock: FakeClock, master: str
) -> None:
    # y, held by an exec child, waits for a code. Against master asked early (still
    # served), y's refusal comes first; against master refused too, the active one does,
    # though y was in use before it.
    provider = DeviceEach(clock)
    provider.lifetime = 4 * 3600
    provider.session_ends = clock() + 3600
    provider.waiting = {"y", "other"} | ({"master"} if master == "refused" else set())
    broker = Broker(provider, clock, rand=lambda: 0.5)
    with pytest.raises(MfaRequired):
        await broker.ensure("y")
    broker.hold("y")
    if master == "refused":
        with pytest.raises(MfaRequired):
            await broker.switch("master")
    else:
        await broker.switch("master")
        clock.now = schedule.mfa_request_due(clock() + 3600)
    with pytest.raises(MfaRequired):
        await broker.ensure("other")
    await tick(broker, clock, LEFT_REQUEST_STANDS)
    expected = "master" if master == "refused" else "y"
    assert broker.mfa is not None and (broker.mfa.profile, broker.mfa.early) == (expected, False)


async def test_a_code_for_another_profile_serves_the_one_asked_when_the_session_is_shared(
    clock: FakeClock,
) -> None:
    # One device for both: `vaultd exec --mfa CODE other` after other's request was handed
    # to master makes the session master needs. Before, master kept asking for a code.
    broker = Broker(FakeProvider(clock, needs_mfa=True), clock, rand=lambda: 0.5)
    await master_waits_behind_other(broker)
    await tick(broker, clock, LEFT_REQUEST_STANDS)
    assert broker.mfa is not None and broker.mfa.profile == "master"
    await broker.ensure("other", "123456")
    await settle(broker)
    assert broker.current() is not None and broker.mfa is None


async def test_a_code_for_another_device_leaves_the_one_asked_asking_once(
    clock: FakeClock,
) -> None:
    # The same, one device each: the code cannot serve master, so master is not tried
    # (before: one STS call for nothing at every such code), keeps its request, and is
    # not announced again.
    announcer = RecordingAnnouncer()
    provider = DeviceEach(clock)
    broker = Broker(provider, clock, rand=lambda: 0.5, announcer=announcer)
    await master_waits_behind_other(broker)
    await tick(broker, clock, LEFT_REQUEST_STANDS)
    asked, calls = list(announcer.requests), len(provider.calls)
    await broker.ensure("other", "123456")
    for _ in range(5):
        await tick(broker, clock, 30)
    assert provider.calls[calls:] == [("other", "123456")]
    assert announcer.requests == asked
    assert broker.mfa is not None and broker.mfa.profile == "master"


async def test_a_code_for_another_profile_never_reruns_a_refused_automatic_code(
    clock: FakeClock,
) -> None:
    # master's mfa_process code was refused; codes typed for other (another device) must
    # not make the broker run master's automatic code at STS again (device lock).
    provider = AutoForMaster(clock)
    provider.waiting = {"master"}
    broker = Broker(provider, clock, rand=lambda: 0.5)
    with pytest.raises(MfaRejected):
        await broker.switch("master")
    for code in ("111111", "222222", "333333"):
        await broker.ensure("other", code)
        await settle(broker)
    assert provider.calls.count(("master", "auto")) == 1


async def test_a_code_for_another_profile_renews_the_shared_session_asked_for_early(
    clock: FakeClock,
) -> None:
    # master's early request is open; a code given to an exec on other, on the same
    # session, renews it: master takes the new session and its request closes, rather
    # than asking for a code nobody needs until its next refresh.
    provider = FakeProvider(clock, lifetime=4 * 3600, session_ends=clock() + 3600)
    broker = Broker(provider, clock, rand=lambda: 0.5)
    await broker.switch("master")
    clock.now = schedule.mfa_request_due(clock() + 3600)
    broker.maintain()
    await settle(broker)
    assert broker.mfa is not None and broker.mfa.early
    calls = len(provider.calls)
    await broker.ensure("other", "123456")
    await settle(broker)
    assert provider.calls[calls:] == [("other", "123456"), ("master", None)]
    assert broker.mfa is None
    creds = broker.current()
    assert creds is not None and creds.source_expiration == clock() + 12 * 3600


class AutoCodeRefused(FakeProvider):
    """An automatic code source (mfa_process, ykman) whose codes STS refuses: wrong device
    or secret, a clock out of step."""

    def credentials(self, name: str, mfa_code: str | None = None) -> Credentials:
        if mfa_code is None:  # the provider used its automatic source
            self.calls.append((name, "auto"))
            raise MfaRejected("STS rejected the MFA code")
        return super().credentials(name, mfa_code)


async def test_a_refused_automatic_code_asks_a_person_once_and_is_not_retried(
    clock: FakeClock,
) -> None:
    # Before: no request opened, and every maintenance pass sent a fresh automatic code,
    # towards the device lock STS applies after repeated failures.
    broker = Broker(AutoCodeRefused(clock, auto_code=True), clock, rand=lambda: 0.5)
    provider = broker.provider
    assert isinstance(provider, AutoCodeRefused)
    with pytest.raises(MfaRejected):
        await broker.switch("master")
    assert broker.mfa is not None and broker.mfa.profile == "master"  # a person can answer
    for _ in range(5):
        clock.advance(60)
        broker.maintain()
        await settle(broker)
    assert provider.calls == [("master", "auto")]
    await broker.submit_mfa("123456", broker.mfa.serial)
    assert broker.current() is not None


async def test_status_names_the_active_profiles_own_device_while_another_is_asked(
    clock: FakeClock,
) -> None:
    # Before: "waiting for an MFA code for master (arn:...:mfa/other)", the exec's device.
    broker = Broker(DeviceEach(clock), clock, rand=lambda: 0.5)
    await master_waits_behind_other(broker)
    assert broker.mfa is not None and broker.mfa.serial.endswith("mfa/other")
    assert broker.status().mfa_serial == "arn:aws:iam::111122223333:mfa/master"


async def test_refreshing_a_profile_no_longer_in_use_asks_for_its_code(clock: FakeClock) -> None:
    # Before: `vaultd refresh other` said "run `vaultd mfa CODE`" while the open request
    # stayed master's, so that command answered master, or "no MFA code is being waited for".
    provider = DeviceEach(clock)
    broker = Broker(provider, clock, rand=lambda: 0.5)
    with pytest.raises(MfaRequired):
        await broker.switch("other")
    await broker.submit_mfa("123456")  # other served, then left for master
    with pytest.raises(MfaRequired):
        await broker.switch("master")
    provider.waiting.add("other")
    broker.slots["other"].creds = None
    with pytest.raises(MfaRequired):
        await broker.refresh("other")
    assert broker.mfa is not None and broker.mfa.profile == "other"


@pytest.mark.parametrize("maintenance", [False, True], ids=["alone", "with-maintenance-loop"])
@pytest.mark.parametrize("shared_session", [False, True], ids=["own-device", "shared-session"])
async def test_the_answer_to_another_profiles_code_is_already_true_for_the_active_one(
    clock: FakeClock, shared_session: bool, maintenance: bool
) -> None:
    # `vaultd mfa CODE` prints the state submit_mfa leaves: before, it said master waited
    # for a code when the code had served it. With the maintenance loop running (as in the
    # daemon), the loop, woken by other's refresh, may start master's retry first.
    provider = FakeProvider(clock, needs_mfa=True) if shared_session else DeviceEach(clock)
    broker = Broker(provider, clock, rand=lambda: 0.5)
    await master_waits_behind_other(broker)
    loop_task = asyncio.create_task(broker.run()) if maintenance else None
    try:
        answered = await broker.submit_mfa("123456")
    finally:
        if loop_task is not None:
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)
    assert answered.profile == "other"
    if shared_session:
        assert broker.current() is not None and broker.mfa is None
    else:  # master's own request is open again, and the status says so
        assert broker.current() is None
        assert broker.mfa is not None and broker.mfa.profile == "master"
        assert "after the open request" not in message(broker.status())


class BrokenOnce(FakeProvider):
    """A config that cannot be read, or a keyring that fails to give the keys, at first (a
    typo being fixed, a keyring being unlocked), then works."""

    def __init__(self, clock: FakeClock, fault: VaultdError) -> None:
        super().__init__(clock, needs_mfa=True)
        self.fault = fault
        self.broken = False

    def plan(self, name: str) -> Plan:
        if self.broken and isinstance(self.fault, ConfigError):
            raise self.fault
        return super().plan(name)

    def credentials(self, name: str, mfa_code: str | None = None) -> Credentials:
        if self.broken:
            raise self.fault
        return super().credentials(name, mfa_code)


@pytest.mark.parametrize(
    "fault",
    [
        ConfigError("config line 7 is not valid INI: '[profile'"),
        KeyringError("the keyring failed to read keys:identity"),
        KeyringLocked("the keyring is locked"),
    ],
    ids=lambda e: e.code,
)
async def test_a_code_given_with_a_refresh_that_fails_before_sts_was_never_sent(
    clock: FakeClock, fault: VaultdError
) -> None:
    # Before any STS call: the code is not spent, so once the fault is mended the same
    # code answers (before: "that code was already sent to STS").
    provider = BrokenOnce(clock, fault)
    broker = Broker(provider, clock, rand=lambda: 0.5)
    with pytest.raises(MfaRequired):
        await broker.switch("master")
    provider.broken = True
    with pytest.raises(type(fault)):
        await broker.submit_mfa("123456")
    provider.broken = False
    await broker.submit_mfa("123456")
    assert broker.current() is not None
    assert ("master", "123456") in provider.calls


async def test_a_person_has_chosen_from_the_moment_a_switch_begins(clock: FakeClock) -> None:
    # The daemon's retry of a refused start-up profile stops once a person chooses one. It
    # looked only at the active profile, which a switch sets once it succeeds (or needs a
    # code), so a switch still fetching was overridden and then lost (the breaker's race).
    broker, provider = make(clock)
    assert not broker.chosen
    provider.gate = threading.Event()
    switching = asyncio.create_task(broker.switch("master"))
    await asyncio.sleep(0)  # the switch has begun: its plan is being read
    # The second breaker's race: chosen only once the plan was read, so the start-up
    # profile could be activated meanwhile and stand if the switch then failed.
    assert broker.chosen
    for _ in range(500):  # until the switch, its plan made, fetches (held at the gate)
        if provider.calls:
            break
        await asyncio.sleep(0.01)
    assert broker.active is None and broker.chosen
    provider.gate.set()
    await switching
    assert broker.active == "master" and broker.chosen
