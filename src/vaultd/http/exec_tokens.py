"""The life of an exec token: issued to the process that asked, ended when that process
exits, when it is revoked, or when its lifetime runs out unless renewed.

`vaultd exec` revokes its token when its child exits, but a `vaultd exec` killed with
SIGKILL never gets to (issue 13): its token kept working and the daemon kept refreshing the
profile until it restarted. So each token is bound to the pid of the control connection's
peer (SO_PEERCRED) and watched (`vaultd.host.process_watch`), and every token expires
`Grants.lifetime` seconds after it was issued or last renewed; `vaultd exec` renews it while
its child runs. Whichever comes first ends it, and the broker stops holding the profile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from vaultd.core.broker import Broker
from vaultd.host.process_watch import watch_exit
from vaultd.http.ecs import Grant, Grants

log = logging.getLogger("vaultd.exec")


class ExecTokens:
    """Issue, renew and end exec tokens in `grants`, keeping `broker`'s holds in step.
    Runs on the event loop; the expiry timers use the loop's clock for the delay and the
    grants' clock for the deadline."""

    def __init__(self, grants: Grants, broker: Broker) -> None:
        self.grants = grants
        self.broker = broker
        self._unwatch: dict[str, Callable[[], None]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def issue(self, profile: str, holder: int | None) -> tuple[Grant, str]:
        """A token for `profile` bound to process `holder` (None: lifetime only)."""
        grant, token = self.grants.issue(profile, holder)
        self.broker.hold(profile)
        loop = asyncio.get_running_loop()
        if holder is not None:

            def exited() -> None:
                self.end(grant.id, f"the vaultd exec that asked for it (pid {holder}) exited")

            stop = watch_exit(loop, holder, exited)
            if stop is not None:
                self._unwatch[grant.id] = stop
        self._arm(grant)
        return grant, token

    def renew(self, gid: str) -> Grant | None:
        grant = self.grants.renew(gid)
        if grant is not None:
            self._arm(grant)
        return grant

    def end(self, gid: str, why: str) -> Grant | None:
        """Revoke the token and release its profile; None if it was already gone."""
        grant = self.grants.revoke(gid)
        stop = self._unwatch.pop(gid, None)
        if stop is not None:
            stop()
        timer = self._timers.pop(gid, None)
        if timer is not None:
            timer.cancel()
        if grant is not None:
            self.broker.release(grant.profile)
            log.info(
                "exec token %s for %s ended: %s",
                grant.id,
                grant.profile,
                why,
            )
        return grant

    def close(self) -> None:
        """End every token (daemon shutdown)."""
        for gid in list(self._timers):
            self.end(gid, "the daemon is stopping")

    def _arm(self, grant: Grant) -> None:
        old = self._timers.pop(grant.id, None)
        if old is not None:
            old.cancel()
        delay = max(0.0, grant.expires - self.grants.clock())
        self._timers[grant.id] = asyncio.get_running_loop().call_later(
            delay, self._expire, grant.id
        )

    def _expire(self, gid: str) -> None:
        self._timers.pop(gid, None)
        grant = self.grants.get(gid)
        if grant is None:
            return
        if grant.expires > self.grants.clock():  # renewed by a clock the loop does not see
            self._arm(grant)
            return
        self.end(gid, "its lifetime ran out without a renewal")
