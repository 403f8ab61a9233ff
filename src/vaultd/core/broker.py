"""The daemon's state: which profile is active, the credentials held for each profile in use,
background refresh with backoff, the one pending MFA request, and single-flight STS calls.

Plain asyncio with an injected clock and provider, so it is tested without sockets or sleeps:
tests move the clock and call `maintain()`. HTTP surfaces only ever read `current()` (which
never blocks) or await a short bounded `wait_current()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn

from vaultd.core import schedule, state
from vaultd.core.asks import SPENT, Asks
from vaultd.core.credentials import Credentials, iso8601, mask_key_id
from vaultd.core.mfa import SourceFailed
from vaultd.core.resolve import Plan, describe_source
from vaultd.core.state import (
    AnnouncerLike,
    MfaRequest,
    ProviderLike,
    Silent,
    Slot,
    Status,
    waits_for_person,
)
from vaultd.errors import (
    BadMfaCode,
    ConfigError,
    KeyringError,
    LoginRequired,
    MfaRequestChanged,
    MfaRequired,
    NoKeys,
    NoPendingMfa,
    NoProfile,
    StaleCredentials,
    StsError,
    VaultdError,
)

log = logging.getLogger("vaultd.broker")
# Longest the maintenance loop sleeps: a laptop that slept through a due time notices soon.
MAX_IDLE = 30.0
# How often a sign-in that waits for a person (`aws sso login`, `aws login`) is looked at
# again: a look costs a few stat() calls until the AWS CLI's cache changes, and the person
# expects to be served within seconds of signing in, without telling vaultd.
SIGNIN_POLL = 3.0
# An MFA request for a profile no longer in use (an exec that has ended, whose request stands
# so that `vaultd mfa CODE` and then the exec again work) keeps its place this long after the
# profile was last used, then gives way to a profile in use that needs a code: time enough
# for a person at the exec's prompt, or doing what its exit said, to answer it; and well
# inside the 15 minutes the early request leaves before an MFA session ends
# (`schedule.MFA_EARLY`).
LEFT_REQUEST_STANDS = 5 * 60.0

Blocking = Callable[..., Awaitable[Any]]
# Refresh failures that come before any STS call with the code: the config could not be
# read or names no such profile (the plan), the keyring holds no keys, cannot be read or
# is locked, a sign-in is needed, or the root's credential_process failed. A code given with
# such a refresh was never sent, so it is not spent. (A keyring that fails only when the
# new session is stored, after STS, is taken for one that failed before: the code may then
# be sent again, and STS refuses it, which asks the person for a new one.)
NEVER_SENT = (ConfigError, NoKeys, KeyringError, LoginRequired, SourceFailed)


class Broker:
    def __init__(
        self,
        provider: ProviderLike,
        clock: Callable[[], float],
        *,
        rand: Callable[[], float] = random.random,
        call_timeout: float = 120.0,
        run_blocking: Blocking = asyncio.to_thread,
        announcer: AnnouncerLike | None = None,
    ) -> None:
        self.provider = provider
        self.clock = clock
        self.rand = rand
        self.call_timeout = call_timeout
        self.run_blocking = run_blocking
        self.announcer: AnnouncerLike = announcer or Silent()
        self.active: str | None = None
        self.slots: dict[str, Slot] = {}
        self.asks = Asks(clock, self.announcer)
        self.startup_error: VaultdError | None = None
        # Profiles a switch is fetching for: not active yet, but a person is waiting.
        self._switching: set[str] = set()
        self._wake = asyncio.Event()
        # Strong references: the loop keeps only weak ones to tasks.
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def mfa(self) -> MfaRequest | None:
        """The one pending MFA request, if any."""
        return self.asks.mfa

    @property
    def signins_wanted(self) -> dict[str, float]:
        """Sign-in commands a person has been told to run, and since when (epoch seconds)."""
        return self.asks.signins_wanted

    # -- reading (never blocks) ------------------------------------------------------------
    def active_slot(self) -> Slot | None:
        return self.slots.get(self.active) if self.active else None

    def current(self) -> Credentials | None:
        """Credentials fit to serve for the active profile, or None. Starts a due refresh."""
        return self.current_for(self.active) if self.active else None

    async def wait_current(self, within: float) -> Credentials | None:
        """`current()`, but give an in-flight refresh up to `within` seconds to land first."""
        return await self.wait_for(self.active, within) if self.active else None

    # -- commands ------------------------------------------------------------------------
    async def switch(self, profile: str, mfa_code: str | None = None) -> Slot:
        """Make `profile` the one IMDS serves once it has credentials.

        A failure never takes away a profile that is serving: the switch raises and the
        active profile, and its credentials, stay. The switch stands despite a failure
        only when the new profile waits for a person (an MFA code, which `vaultd mfa CODE`
        then completes, a sign-in or an unlocked keyring: `state.waits_for_person`), or
        when nothing was being served (it is then retried with backoff, as at start-up).
        """
        self._switching.add(profile)  # chosen from now on (`chosen`), while its plan is read
        try:
            slot, _ = await self._planned(profile, mfa_code)  # a config error: nothing stands
            try:
                await self._given(slot, mfa_code)
            except Exception:
                if waits_for_person(slot.error) or not self._serving():
                    self._make_active(profile)
                raise
        finally:
            self._switching.discard(profile)
        self._make_active(profile)
        return slot

    @property
    def chosen(self) -> bool:
        """Whether a person has chosen a profile: one is active, or a switch is under way
        (it becomes active only once it succeeds or needs a code)."""
        return self.active is not None or bool(self._switching)

    def _serving(self) -> bool:
        slot = self.active_slot()
        return slot is not None and schedule.servable(slot.creds, self.clock())

    def _make_active(self, profile: str) -> None:
        self.active = profile
        if self.mfa is not None and self.mfa.profile != profile:
            self.asks.close_mfa(self.active)
        self._wake.set()

    async def ensure(self, profile: str, mfa_code: str | None = None) -> tuple[Plan, Credentials]:
        """Credentials for `profile` without making it the active one (`vaultd exec`,
        `vaultd export`): served from memory while fresh, fetched otherwise."""
        slot, plan = await self._planned(profile, mfa_code)
        slot.requested = True
        return plan, await self._given(slot, mfa_code)

    async def _planned(self, profile: str, mfa_code: str | None) -> tuple[Slot, Plan]:
        """The slot for `profile` with a current plan; a given code must look like one."""
        plan = await self.run_blocking(self.provider.plan, profile)
        if mfa_code is not None:
            self.asks.check_shape(mfa_code)
        slot = self._slot(profile)
        slot.plan = plan
        slot.touched = self.clock()
        return slot, plan

    async def _given(self, slot: Slot, mfa_code: str | None) -> Credentials:
        """`_fresh` with the code a person gave to a switch or exec, if any. A code that
        already made the device's current MFA session (`switch a --mfa C`, then `switch b
        --mfa C`) is left out, so that cached session is used instead of refusing a code
        nobody needed; when a code is needed all the same, the person is told theirs was
        spent, not asked for one as if they had given none (BadMfaCode)."""
        serial = slot.plan.mfa_serial if slot.plan else None
        spent = mfa_code is not None and self.asks.is_spent(serial or "", mfa_code)
        try:
            return await self._fresh(slot, None if spent else mfa_code)
        except MfaRequired:
            if spent:
                raise BadMfaCode(SPENT) from None
            raise

    async def _fresh(self, slot: Slot, mfa_code: str | None) -> Credentials:
        """What the slot holds while it is fresh and no code asks for more, else a refresh."""
        held, now = slot.creds, self.clock()
        fresh = held is not None and schedule.servable(held, now) and not slot.due(now)
        if mfa_code is None and held is not None and fresh:
            return held
        return await self._refresh_now(slot, mfa_code)

    def current_for(self, profile: str) -> Credentials | None:
        """Like `current()`, for any profile in use."""
        slot = self.slots.get(profile)
        if slot is None:
            return None
        now = self.clock()
        self._kick(slot, now)
        return slot.creds if schedule.servable(slot.creds, now) else None

    async def wait_for(self, profile: str, within: float) -> Credentials | None:
        creds = self.current_for(profile)
        slot = self.slots.get(profile)
        if creds is None and slot is not None and slot.task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(slot.task), within)
            creds = self.current_for(profile)
        return creds

    def hold(self, profile: str) -> None:
        self._slot(profile).holders += 1
        self._wake.set()

    def release(self, profile: str) -> None:
        slot = self.slots.get(profile)
        if slot is not None and slot.holders > 0:
            slot.holders -= 1
            slot.touched = self.clock()

    def activate(self, profile: str, plan: Plan) -> None:
        """Start serving `profile` in the background (daemon start-up): errors go to status.
        The plan comes first so IMDS names the role while the first refresh runs."""
        self.active = profile
        slot = self._slot(profile)
        slot.plan = plan
        self._kick(slot, self.clock())
        self._wake.set()

    async def submit_mfa(self, code: str, serial: str | None = None) -> Slot:
        """Answer the open MFA request with `code`, typed for the device `serial` (None:
        for whatever request is open, as `vaultd mfa CODE` sends it). Returns the request's
        slot once its refresh has run.

        Raises NoPendingMfa when no request is open, MfaRequestChanged when the open one is
        for another device than `serial` (the daemon keeps one request, and another profile
        may have replaced it since the person was asked), BadMfaCode for a malformed or spent
        code, and the refresh's own errors (MfaRejected, StsError, ...). STS is not asked
        in the first three cases."""
        request = self.mfa
        if request is None:
            raise NoPendingMfa("no MFA code is being waited for: `vaultd status` shows why")
        if serial is not None and serial != request.serial:
            raise MfaRequestChanged(
                f"the MFA request changed: {request.profile} now waits for a code from "
                f"{request.serial or 'its MFA device'}, and the code was for {serial}; it "
                "was not sent (`vaultd mfa` asks for the new one)"
            )
        slot = self._slot(request.profile)
        slot.touched = self.clock()  # a person is there, even with a code mistyped
        self.asks.check_code(request.serial, code)
        await self._refresh_now(slot, code)
        # The active profile, if it waits for a code behind this request (an exec's), is
        # tried now, and the answer waits for it, so that it says what is true: served, if
        # this code made a session it can use, or waiting, with its own request open. The
        # maintenance loop, woken by this refresh, may have started that try already.
        if self.mfa is None:
            self._ask_again()
        active = self.active_slot()
        if active is not None and active is not slot and active.task is not None:
            await asyncio.wait([active.task], timeout=self.call_timeout)
        return slot

    async def refresh(self, profile: str | None = None) -> Slot:
        slot = self.slots.get(profile) if profile else self.active_slot()
        if slot is None:
            if profile:
                raise NoProfile(f"{profile!r} is not in use: nothing to refresh")
            raise NoProfile("no profile is active: run `vaultd switch PROFILE`")
        if slot.task is None and schedule.just_recovered(slot.recovered_at, self.clock()):
            return slot  # a backoff retry landed while this request was on its way
        # A person asked for it: a code it needs is asked for, as for an exec.
        slot.requested = True
        slot.touched = self.clock()
        await self._refresh_now(slot, None)
        return slot

    async def clear_sessions(self, profile: str | None = None) -> int:
        """Drop cached MFA sessions from the keyring (all, or those `profile` is built on),
        forget the credentials built on them, and return how many sessions there were."""
        names, dropped = await self.run_blocking(self.provider.drop_sessions, profile)
        self.clear(names if profile else None)
        return int(dropped)

    async def profiles(self, exec_tokens: Mapping[str, int]) -> list[dict[str, Any]]:
        """One row per profile (`vaultd list`), the active one marked."""
        rows: list[dict[str, Any]] = await self.run_blocking(
            self.provider.inventory, self.active, exec_tokens
        )
        return rows

    async def console_credentials(
        self, profile: str, duration: int, mfa_code: str | None = None
    ) -> tuple[Plan, Credentials]:
        """Credentials for a console sign-in: the role's own set, or for a profile with no
        role a GetFederationToken set of `duration` seconds (role session credentials
        cannot federate, and federation takes no MFA)."""
        plan = await self.run_blocking(self.provider.plan, profile)
        if plan.roles:
            return await self.ensure(profile, mfa_code)
        creds = await self.run_blocking(self.provider.federation_token, profile, duration)
        return plan, creds

    def clear(self, profiles: list[str] | None = None) -> None:
        """Forget credentials held in memory (all, or those built on `profiles`)."""
        for slot in self.slots.values():
            if profiles is not None and not (
                slot.profile in profiles or (slot.plan is not None and slot.plan.root in profiles)
            ):
                continue
            slot.creds = None
            slot.error = None
            slot.failures = 0
            slot.retry_at = None
        self.asks.close_mfa(self.active)
        self._wake.set()  # refetch what is in use now: a code it needs is asked for at once

    # -- background maintenance -------------------------------------------------------------
    def in_use(self) -> list[Slot]:
        """The active profile's slot and those `vaultd exec` children hold."""
        return [s for s in self.slots.values() if s.profile == self.active or s.holders > 0]

    def maintain(self) -> float:
        """Start every refresh that is due; return how long until the next one could be."""
        now = self.clock()
        wake_in = MAX_IDLE
        self._give_way(now)
        if self.mfa is None:
            self._ask_again()
        for slot in self.in_use():
            self._kick(slot, now)
            nxt = slot.next_due()
            if nxt is not None:
                wake_in = min(wake_in, max(0.0, nxt - now))
            ask_at = self._early_mfa_due(slot)
            if ask_at is not None and self.mfa is None:
                if now >= ask_at:
                    self._open_early(slot)
                else:
                    wake_in = min(wake_in, ask_at - now)
        return max(0.05, wake_in)

    def _give_way(self, now: float) -> None:
        """Hand the MFA request of a profile no longer in use to a profile in use that needs
        a code (its refresh waits for one, or its early request is due), once nobody has
        touched the first for LEFT_REQUEST_STANDS seconds (`now`: epoch seconds; see
        `Slot.touched`). Before, such a request kept the one place until answered: the
        active profile was not asked before its session ended, and SDKs were refused from
        then until a person looked.

        The request is handed over, not closed to be worked out again: nothing changed for
        the profile in use, so nothing is retried (a retry would run a refused automatic
        code again, towards STS's device lock). A profile used again within the 5 minutes (a
        `credential_process` polled once a minute) keeps its request rather than flipping;
        one used less often than that (every 6 minutes, say) still takes the request back
        at each use, and is handed over again 5 minutes later."""
        request = self.mfa
        if request is None:
            return
        left = self.slots.get(request.profile)
        touched = left.touched if left is not None else 0.0
        if now - max(request.opened, touched) < LEFT_REQUEST_STANDS:
            return  # a person may be at its prompt, or doing what its exit said
        in_use = self.in_use()
        if any(s.profile == request.profile for s in in_use):
            return
        # Most urgent first: a profile already refused a code before one asked early, the
        # active profile (what SDKs are served) before an exec's.
        in_use.sort(key=lambda s: (not isinstance(s.error, MfaRequired), s.profile != self.active))
        for slot in in_use:
            ask_at = self._early_mfa_due(slot)
            waits = slot.error if isinstance(slot.error, MfaRequired) else None
            if waits is None and (ask_at is None or now < ask_at):
                continue
            log.warning(
                "the MFA request for %s, no longer in use, gives way to %s",
                request.profile,
                slot.profile,
            )
            if waits is not None:
                self._open_mfa(slot.profile, waits.serial, early=False)
            else:
                self._open_early(slot)
            return

    def _still_asked_early(self, creds: Credentials) -> bool:
        """Whether the open request, an early one, still stands now that `creds` arrived
        for its profile: they come from an MFA session that ends inside the early window
        all the same (`schedule.mfa_request_due`), so only role credentials were renewed.
        Before, any refresh closed it, and the next maintenance pass opened and announced
        it again: three announcements in one early window with 15-minute role credentials."""
        request, ends = self.mfa, creds.source_expiration
        return (
            request is not None
            and request.early
            and ends is not None
            and self.clock() >= schedule.mfa_request_due(ends)
        )

    def _try_asked(self, answered: Slot) -> None:
        """A code just made the MFA session of `answered`'s root and device, and the open
        request is another profile's: if that profile uses the same session (same root
        profile and `mfa_serial`, as `Provider.cached_session` keys it) and waits for a code
        or is asked early, it is refreshed once at once, from that session, and its request
        closes. Before, it stayed unserved, asking for a second code (`exec --mfa CODE`
        after `_give_way` handed the request on). A profile on another session is not
        tried: nothing changed for it, and a retry would only run a refused automatic
        code (mfa_process) at STS again."""
        request = self.mfa
        if request is None:
            return
        slot = self.slots.get(request.profile)
        if slot is None or slot.task is not None:
            return
        mine, theirs = slot.plan, answered.plan
        if mine is None or theirs is None or mine.mfa_serial is None:
            return
        if (mine.root, mine.mfa_serial) != (theirs.root, theirs.mfa_serial):
            return  # another device's (or root's) session: it cannot serve this one
        if isinstance(slot.error, MfaRequired) or request.early:
            self._start(slot, None)

    def _ask_again(self) -> None:
        """A profile in use that waits for a code gets its request back once none is open.

        The daemon keeps one MFA request: another profile's (an exec's, a switch's) replaces
        it, and answering that one closes it, which left the first profile waiting with
        nothing open to answer. Its refresh is tried again, the active profile first and
        one at a time: it is served if the code just given made a session it can use, and
        otherwise asks again: every slot in use is wanted, so `_refresh` (or `_failed`, for a
        refused automatic code) opens the request, and no second retry follows."""
        waiting = [s for s in self.in_use() if isinstance(s.error, MfaRequired)]
        if not waiting or any(s.task is not None for s in waiting):
            return
        waiting.sort(key=lambda s: s.profile != self.active)
        self._start(waiting[0], None)

    def _wanted(self, slot: Slot) -> bool:
        """Whether someone waits for `slot`'s credentials, so a person should be asked."""
        return (
            slot.profile == self.active
            or slot.profile in self._switching
            or slot.holders > 0
            or slot.requested
        )

    def _early_mfa_due(self, slot: Slot) -> float | None:
        """When to ask for a code so the MFA session is renewed before it runs out (epoch
        seconds), whatever request is open now; None when nobody need be asked."""
        creds, plan = slot.creds, slot.plan
        if creds is None or creds.source_expiration is None or plan is None:
            return None
        if self.asks.waiting_for(slot.profile):
            return None  # already asked
        if plan.mfa_serial is None or self.provider.has_auto_code(plan):
            return None  # no MFA, or a code source renews it without anyone
        return schedule.mfa_request_due(creds.source_expiration)

    def _open_early(self, slot: Slot) -> None:
        """Ask for a code ahead of time, for the device of `slot`'s own plan."""
        serial = slot.plan.mfa_serial if slot.plan else None
        self._open_mfa(slot.profile, serial or "", early=True)

    def _open_mfa(self, profile: str, serial: str, *, early: bool) -> None:
        slot = self.slots.get(profile)
        ends = slot.creds.source_expiration if slot and slot.creds else None
        self.asks.open_mfa(profile, serial, early=early, session_ends=ends)

    async def run(self) -> None:
        """Maintenance loop; cancelled at shutdown."""
        while True:
            delay = self.maintain()
            self._wake.clear()
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns normally when the
            # task is cancelled just as the wake-up lands (an exec token's hold, then SIGTERM),
            # so this loop went round again and the daemon never stopped.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def close(self) -> None:
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- status --------------------------------------------------------------------------
    def status(self) -> Status:
        """A typed snapshot of the active profile's state; `vaultd.http.status` renders it."""
        slot, now = self.active_slot(), self.clock()
        return state.snapshot(self.active, slot, self.mfa, self.startup_error, now)

    # -- internals -------------------------------------------------------------------------
    def _slot(self, profile: str) -> Slot:
        slot = self.slots.get(profile)
        if slot is None:
            slot = self.slots[profile] = Slot(profile)
        return slot

    def _kick(self, slot: Slot, now: float) -> None:
        if slot.due(now):
            self._start(slot, None)

    def _start(self, slot: Slot, code: str | None) -> asyncio.Task[Credentials]:
        task = asyncio.get_running_loop().create_task(self._refresh(slot, code))
        slot.task = task
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved here; the outcome is recorded on the slot

    async def _refresh_now(self, slot: Slot, code: str | None) -> Credentials:
        """Single-flight: join a refresh in flight, unless a code must go with this one."""
        if slot.task is not None and code is None:
            return await asyncio.shield(slot.task)
        while slot.task is not None:  # let it finish, whatever its outcome, then send the code
            await asyncio.wait([slot.task])
        creds: Credentials = await asyncio.shield(self._start(slot, code))
        return creds

    async def _refresh(self, slot: Slot, code: str | None) -> Credentials:
        serial = slot.plan.mfa_serial if slot.plan is not None else None
        spent = (serial, code) if code is not None and serial else None
        if spent is not None:
            self.asks.spend(*spent)
        try:
            result: tuple[Plan, Credentials] = await asyncio.wait_for(
                self.run_blocking(self._fetch, slot.profile, code), self.call_timeout
            )
        except MfaRequired as exc:
            self._failed(slot, exc)
            if self._wanted(slot) and (
                self.mfa is None or self.mfa.profile != slot.profile or self.mfa.early
            ):
                self._open_mfa(exc.profile, exc.serial, early=False)
            raise
        except TimeoutError:
            exc2 = StsError(f"refreshing {slot.profile!r} took over {self.call_timeout:.0f}s")
            self._failed(slot, exc2)
            raise exc2 from None
        except VaultdError as exc:
            if spent is not None and isinstance(exc, NEVER_SENT):
                self.asks.unspend(*spent)  # STS never saw it: the same code may answer again
            self._failed(slot, exc)
            raise
        except Exception as exc:
            # A bug, not an outage; keep the daemon alive and say so without the details.
            log.exception("refresh of %s failed unexpectedly", slot.profile)
            exc3 = VaultdError(f"internal error refreshing {slot.profile!r}: {type(exc).__name__}")
            self._failed(slot, exc3)
            raise exc3 from None
        finally:
            slot.task = None
        plan, creds = result
        slot.plan = plan
        if schedule.stale_on_arrival(creds, self.clock()):
            self._stale(slot, plan, creds)
        self.asks.signed_in(slot.error, self.active)
        slot.creds = creds
        slot.recovered_at = self.clock() if slot.failures else None
        slot.error, slot.error_at, slot.failures, slot.retry_at = None, None, 0, None
        if self.asks.waiting_for(slot.profile):
            if not self._still_asked_early(creds):
                self.asks.close_mfa(self.active)
        elif code is not None:
            self._try_asked(slot)
        log.info(
            "credentials for %s refreshed (key %s, expires %s)",
            slot.profile,
            mask_key_id(creds.access_key_id),
            iso8601(creds.expiration),
        )
        self._wake.set()
        return creds

    def _stale(self, slot: Slot, plan: Plan, creds: Credentials) -> NoReturn:
        """A fresh set that is already expired or due: keep whichever set lasts longer (it
        is served only while `servable`), and back off as after a failed call."""
        if slot.creds is None or creds.expiration > slot.creds.expiration:
            slot.creds = creds
        exc = StaleCredentials(
            f"{describe_source(plan)} returned credentials that expire at "
            f"{iso8601(creds.expiration)}"
        )
        self._failed(slot, exc)
        raise exc

    def _fetch(self, profile: str, code: str | None) -> tuple[Plan, Credentials]:
        return self.provider.plan(profile), self.provider.credentials(profile, code)

    def _failed(self, slot: Slot, exc: VaultdError) -> None:
        """Record a failed refresh: a person is needed (no retry), or back off and retry."""
        now = self.clock()
        slot.error, slot.error_at = exc, now
        if isinstance(exc, MfaRequired):
            slot.retry_at = None
            return
        if isinstance(exc, LoginRequired):
            slot.failures, slot.retry_at = 0, now + SIGNIN_POLL
            self.asks.signin_needed(exc, now)
            self._wake.set()
            return
        if exc.code in ("mfa_rejected", "bad_mfa_code"):
            # A wrong code: nothing to retry, a person is asked. A request open for it stays
            # open; with none (the code came from mfa_process or ykman, or with a switch)
            # one opens, or nobody could answer, and no automatic code is tried again.
            # A request open for another profile names that profile's device, not this one's.
            request = self.mfa if self.asks.waiting_for(slot.profile) else None
            own = slot.plan.mfa_serial if slot.plan else None
            serial = request.serial if request is not None else own or ""
            slot.error = MfaRequired(
                f"{exc.message}; run `vaultd mfa CODE` with a new code",
                profile=slot.profile,
                serial=serial,
                reason=exc.message,
            )
            if self.mfa is None and self._wanted(slot):
                self._open_mfa(slot.profile, serial, early=False)
            return
        slot.failures += 1
        slot.retry_at = now + schedule.backoff(slot.failures, self.rand)
        log.warning(
            "refresh of %s failed (%s); retry in %.0fs",
            slot.profile,
            exc.message,
            slot.retry_at - now,
        )
        self._wake.set()
