"""When to refresh, when to retry, and what is still fit to serve. Pure arithmetic on epochs.

SDKs treat credentials with < 15 minutes left as due (botocore) and cap or distrust anything
shorter, so vaultd renews while 30 minutes remain and never serves a set that is about to lapse.
"""

from __future__ import annotations

from collections.abc import Callable

from vaultd.core.credentials import Credentials

REFRESH_BEFORE = 30 * 60
# Below this, a set is not served at all: no SDK can use it for a meaningful call.
SERVE_MIN_LEFT = 60
# A session with less left than this is not used for a role call; a new one is needed.
MIN_SESSION_LEFT = 5 * 60
# Open the MFA request this long before the session stops being usable.
MFA_EARLY = 15 * 60
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 5 * 60.0


def refresh_due(creds: Credentials) -> float:
    """The moment to start renewing: 30 minutes before expiry, or at half-life if shorter.

    Asked on every credentials request (`Broker.current`), so it is plain arithmetic: a
    conditional costs less than calling min()."""
    half = (creds.expiration - creds.issued) / 2
    return creds.expiration - (half if half < REFRESH_BEFORE else REFRESH_BEFORE)


def stale_on_arrival(creds: Credentials, now: float) -> bool:
    """True when a set that has just arrived is unfit to hold as a fresh refresh result:
    too close to expiry to serve, or already inside its refresh window (`refresh_due`,
    its lifetime counted from when vaultd asked for it). Such a set would be refreshed at
    once, forever; the broker backs off instead, as after a failed STS call."""
    return not servable(creds, now) or now >= refresh_due(creds)


def mfa_request_due(source_expiration: float) -> float:
    """When to ask for a code so the MFA session can be renewed without a gap."""
    return source_expiration - MIN_SESSION_LEFT - MFA_EARLY


def servable(creds: Credentials | None, now: float) -> bool:
    return creds is not None and creds.remaining(now) > SERVE_MIN_LEFT


def backoff(failures: int, rand: Callable[[], float]) -> float:
    """Delay before retry number `failures` (1-based): exponential, capped, jittered.

    The jitter keeps half of the step fixed so retries never collapse to zero, and spreads
    the rest so that many daemons coming back from one outage do not call STS in step.
    """
    step = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, failures - 1))
    return float(step / 2 + rand() * step / 2)


# A manual refresh this soon after a backoff retry succeeded is the same request as it.
JUST_RECOVERED = 2.0


def just_recovered(recovered_at: float | None, now: float) -> bool:
    """Whether a backoff retry succeeded under JUST_RECOVERED seconds before `now` (epoch
    seconds): a `vaultd refresh` typed because of the outage, coinciding with the retry that
    ended it, gets that set instead of a second STS call. Single-flight covers a retry still
    in flight; this covers one that landed while the request was on its way. Any other
    manual refresh always asks STS again."""
    return recovered_at is not None and 0 <= now - recovered_at < JUST_RECOVERED
