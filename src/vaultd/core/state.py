"""What the broker depends on (a provider, an announcer), what it knows (one Slot per profile
in use, the one pending MFA request) and the typed snapshot of it that `Broker.status()`
returns.

The snapshot carries facts only: epochs in seconds (UTC), codes, the masked key id, the
error the last refresh raised. The words for people are rendered from it at the edge
(`vaultd.http.status`), once. It never holds a secret.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Protocol

from vaultd.core import schedule
from vaultd.core.credentials import Credentials, mask_key_id
from vaultd.core.resolve import Plan
from vaultd.errors import KeyringLocked, LoginRequired, MfaRequired, VaultdError


class ProviderLike(Protocol):
    """What the broker asks of a provider (`core.provider.Provider`, the relay's)."""

    def plan(self, name: str) -> Plan: ...
    def credentials(self, name: str, mfa_code: str | None = None) -> Credentials: ...
    def has_auto_code(self, plan: Plan) -> bool: ...
    def federation_token(self, name: str, duration: int) -> Credentials: ...
    def drop_sessions(self, profile: str | None) -> tuple[list[str], int]: ...
    def inventory(
        self, active: str | None, exec_tokens: Mapping[str, int]
    ) -> list[dict[str, Any]]: ...


class AnnouncerLike(Protocol):
    """Where the broker tells a person what it needs (desktop notifications, systemd)."""

    def status(self, text: str) -> None: ...
    def mfa_needed(self, profile: str, serial: str, early: bool) -> None: ...
    def login_needed(self, command: str, message: str) -> None: ...


class Silent:
    """The announcer when nobody listens (tests, the relay)."""

    def status(self, text: str) -> None:
        pass

    def mfa_needed(self, profile: str, serial: str, early: bool) -> None:
        pass

    def login_needed(self, command: str, message: str) -> None:
        pass


@dataclass(frozen=True)
class MfaRequest:
    """The one open request for an MFA code (the daemon asks for one code at a time)."""

    profile: str
    serial: str
    opened: float
    # Opened ahead of time: credentials are still served, the session is about to end.
    early: bool = False
    session_ends: float | None = None


@dataclass
class Slot:
    """Everything the broker knows about one profile in use."""

    profile: str
    plan: Plan | None = None
    creds: Credentials | None = None
    error: VaultdError | None = None
    error_at: float | None = None
    failures: int = 0
    retry_at: float | None = None
    # `vaultd exec` children holding credentials of this profile: kept fresh while > 0.
    holders: int = 0
    # Someone asked for this profile directly (exec, export): a needed code opens a request.
    requested: bool = False
    # When the last refresh succeeded after failures (a backoff retry), else None.
    recovered_at: float | None = None
    # When a person last used it (switch, exec, export, refresh, a code typed for it) or an
    # exec child holding it ended, in epoch seconds (0: never): an MFA request it leaves
    # open stands from then (`Broker._give_way`).
    touched: float = 0.0
    task: asyncio.Task[Credentials] | None = field(default=None, repr=False)

    def due(self, now: float) -> bool:
        """Whether a refresh should start at `now` (epoch seconds)."""
        if self.task is not None or isinstance(self.error, MfaRequired):
            return False  # in flight, or waiting for a person: asking again would not help
        if self.retry_at is not None:
            return now >= self.retry_at  # a failed refresh is retried until it succeeds
        if self.creds is None:
            return self.error is None
        return now >= schedule.refresh_due(self.creds)

    def next_due(self) -> float | None:
        """When a refresh will next be due, if anything but a person can make it so."""
        if self.task is not None or isinstance(self.error, MfaRequired):
            return None
        if self.retry_at is not None:
            return self.retry_at
        if self.creds is not None:
            return schedule.refresh_due(self.creds)
        return None


def waits_for_person(error: VaultdError | None) -> bool:
    """Whether a failed refresh waits for a person (an MFA code, a sign-in, an unlocked
    keyring) rather than having failed: a switch to such a profile stands, since status
    and the announcer say what to do, while any other failure keeps what was served."""
    return isinstance(error, MfaRequired | LoginRequired | KeyringLocked)


class Reason(Enum):
    """Why the daemon is in the state it is in; each has its own sentence at the edge."""

    NO_PROFILE = "no_profile"  # nothing active
    STARTUP_ERROR = "startup_error"  # the profile given at start could not be planned
    SERVING = "serving"  # credentials fit to serve
    WAITING_FOR_MFA = "waiting_for_mfa"  # a person must send a code
    FAILED = "failed"  # the last refresh failed; a retry is scheduled
    FETCHING = "fetching"  # the first refresh is under way


@dataclass(frozen=True)
class Held:
    """The credentials being served, without their secrets."""

    key_hint: str  # the access key id's last four characters
    arn: str
    issued: float
    expires: float
    refresh_at: float
    # The fetch's own word that the sign-in behind them is left unrefreshed (and why).
    unrefreshed: str | None = None


@dataclass(frozen=True)
class LastError:
    error: VaultdError
    at: float
    failures: int


@dataclass(frozen=True)
class Status:
    """A snapshot of the daemon's state at `now` (epoch seconds).

    `state` is what the control API reports: "ok", "refreshing", "no_profile", or the code
    of the error that stops serving (e.g. "mfa_required", "sts_error"). `reason` says which
    sentence explains it; `error` is the error behind STARTUP_ERROR, WAITING_FOR_MFA and
    FAILED.
    """

    state: str
    reason: Reason
    now: float
    active: str | None = None
    plan: Plan | None = None
    held: Held | None = None
    mfa: MfaRequest | None = None
    mfa_serial: str | None = None  # the device a code is waited for (WAITING_FOR_MFA)
    error: VaultdError | None = None
    last_error: LastError | None = None
    next_retry: float | None = None


def snapshot(
    active: str | None,
    slot: Slot | None,
    mfa: MfaRequest | None,
    startup_error: VaultdError | None,
    now: float,
) -> Status:
    """The Status of the active profile's `slot` (None when nothing is active)."""
    if slot is None:
        if startup_error is not None:
            reason = Reason.STARTUP_ERROR
            return Status(startup_error.code, reason, now, active, mfa=mfa, error=startup_error)
        return Status("no_profile", Reason.NO_PROFILE, now, active, mfa=mfa)
    last = (
        None if slot.error is None else LastError(slot.error, slot.error_at or now, slot.failures)
    )
    base = Status(
        "refreshing",
        Reason.FETCHING,
        now,
        active,
        plan=slot.plan,
        mfa=mfa,
        last_error=last,
        next_retry=slot.retry_at,
    )
    creds = slot.creds
    if creds is not None and schedule.servable(creds, now):
        due = schedule.refresh_due(creds)
        held = Held(
            mask_key_id(creds.access_key_id),
            creds.arn,
            creds.issued,
            creds.expiration,
            due,
            creds.unrefreshed,
        )
        return replace(base, state="ok", reason=Reason.SERVING, held=held)
    if isinstance(slot.error, MfaRequired):
        # The open request may be another profile's (an exec's): not this one's device.
        serial = mfa.serial if mfa and mfa.profile == slot.profile else slot.error.serial
        return replace(
            base,
            state=slot.error.code,
            reason=Reason.WAITING_FOR_MFA,
            mfa_serial=serial,
            error=slot.error,
        )
    if slot.error is not None:
        return replace(base, state=slot.error.code, reason=Reason.FAILED, error=slot.error)
    return base
