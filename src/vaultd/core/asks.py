"""What the daemon asks of a person, kept in one place: the one pending MFA request, the
codes already sent to STS, and the sign-in commands a person has been told to run.

A person is asked once, not once per request: one MFA request at a time (opened early, while
credentials are still served, when the MFA session is about to end), and each sign-in command
(`aws sso login --sso-session corp`, `aws login --profile console`) announced once until it
has been done. An MFA code is never sent to STS twice (STS refuses a reused code, and the
device's next code is what the person should type).
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable

from vaultd.core.state import AnnouncerLike, MfaRequest
from vaultd.errors import BadMfaCode, LoginRequired, VaultdError
from vaultd.mfa_code import is_mfa_code

log = logging.getLogger("vaultd.broker")
# Codes remembered per daemon run: far more than a person types within an MFA code's life.
SPENT_CODES = 32


# STS refuses a code it has seen (within its window), so vaultd never sends one twice.
SPENT = "that code was already sent to STS: wait for the next one"


class Asks:
    """The person-facing side of the broker.

    `clock` gives seconds since the epoch (UTC); `announcer` carries the systemd status line
    and desktop notifications. Raises BadMfaCode from `check_code` for a malformed or
    already-used code.
    """

    def __init__(self, clock: Callable[[], float], announcer: AnnouncerLike) -> None:
        self.clock = clock
        self.announcer = announcer
        self.mfa: MfaRequest | None = None
        self.spent: deque[tuple[str, str]] = deque(maxlen=SPENT_CODES)
        # Sign-in commands a person has been told to run, and since when: announced once.
        self.signins_wanted: dict[str, float] = {}

    # -- MFA -------------------------------------------------------------------------------
    def open_mfa(
        self, profile: str, serial: str, *, early: bool, session_ends: float | None
    ) -> None:
        """Open the one MFA request (replacing any other) and tell the person."""
        self.mfa = MfaRequest(profile, serial, self.clock(), early=early, session_ends=session_ends)
        if early:
            log.warning("the MFA session for %s ends soon: run `vaultd mfa CODE`", profile)
        else:
            log.warning("MFA needed for %s: run `vaultd mfa CODE`", profile)
        self.announcer.mfa_needed(profile, serial, early)

    def close_mfa(self, active: str | None) -> None:
        """Close the MFA request, if one is open; the status line goes back to serving."""
        if self.mfa is not None:
            self.mfa = None
            self.announcer.status(f"serving {active}" if active else "idle")

    def waiting_for(self, profile: str) -> bool:
        """Whether the open MFA request is for `profile`."""
        return self.mfa is not None and self.mfa.profile == profile

    @staticmethod
    def check_shape(code: str) -> None:
        """Raise BadMfaCode unless `code` is six ASCII digits."""
        if not is_mfa_code(code):
            raise BadMfaCode("an MFA code is six digits")

    def check_code(self, serial: str, code: str) -> None:
        """Raise BadMfaCode for a malformed code or one already sent for `serial`."""
        self.check_shape(code)
        if self.is_spent(serial, code):
            raise BadMfaCode(SPENT)

    def is_spent(self, serial: str, code: str) -> bool:
        """Whether `code` was already sent to STS for the MFA device `serial`."""
        return (serial, code) in self.spent

    def spend(self, serial: str, code: str) -> None:
        """Record that `code` is being sent to STS for `serial`."""
        self.spent.append((serial, code))

    def unspend(self, serial: str, code: str) -> None:
        """Forget that `code` was sent for `serial`: the refresh it was given with failed
        before calling STS."""
        with contextlib.suppress(ValueError):
            self.spent.remove((serial, code))

    # -- sign-in (IAM Identity Center, aws login) -------------------------------------------
    def signin_needed(self, exc: LoginRequired, now: float) -> None:
        """Announce the sign-in command in `exc` once, however many profiles need it."""
        if exc.command not in self.signins_wanted:
            self.signins_wanted[exc.command] = now
            log.warning("%s", exc.message)
            self.announcer.login_needed(exc.command, exc.message)

    def signed_in(self, previous: VaultdError | None, active: str | None) -> None:
        """A refresh succeeded where `previous` wanted a sign-in: the person has signed in."""
        if not isinstance(previous, LoginRequired):
            return
        if self.signins_wanted.pop(previous.command, None) is not None:
            log.info("signed in again (%s): serving", previous.command)
            self.announcer.status(f"serving {active}" if active else "idle")
