"""Logging what a request sent without letting the request write the log.

Everything taken from a request (method, target, header values) goes through `printable`
(vaultd.untrusted, the one rule for text from outside):
control characters, quotes, backslashes and non-ASCII are escaped (so `%0a` decoded to a
newline cannot forge a line, NUL and CR never reach the log) and the length is bounded.
Refusals are rate-limited: one line per peer per interval, carrying the count of refusals
it stood for, so a flood of refused requests adds a line a minute. A peer is its uid when
known; every local peer whose owner is unknown is one peer (any user can pick any of
127.0.0.0/8 as a source, and a connection closed at once has no owner left to find).
Keys can still be multiplied: remote addresses, and uids too (a user with a subordinate
uid range, /etc/subuid, maps 65,536 of them in a user namespace that keeps the host's
network). So local peers (uids, the unknown-owner key) and remote ones each share at most
MAX_LINES lines per interval, the rest counted on the first line of the next: neither kind
crowds the other out, and no flood adds more than twice MAX_LINES lines a minute.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from vaultd.untrusted import printable

INTERVAL: Final = 60.0
MAX_PEERS: Final = 1024
# Lines per interval for each kind of peer, local and remote: what many keys add at most.
MAX_LINES: Final = 20


@dataclass
class _Window:
    start: float
    suppressed: int = 0


class RefusalLog:
    """Writes refusal lines to `logger` at WARNING, at most one per peer per `interval`
    seconds of `clock` (seconds, any epoch). Later refusals inside the interval are counted
    and the count is reported on the peer's next line."""

    def __init__(
        self, logger: logging.Logger, clock: Callable[[], float], interval: float = INTERVAL
    ) -> None:
        self.logger = logger
        self.clock = clock
        self.interval = interval
        self._windows: dict[str, _Window] = {}
        self._all = _Window(float("-inf"))  # this interval, and what it left unlogged
        self._lines = {True: 0, False: 0}  # lines written this interval: local, remote

    def refused(
        self,
        peer: str,
        method: str,
        target: str,
        reason: str,
        key: str | None = None,
        *,
        local: bool = False,
    ) -> None:
        """Note one refusal of `method target` from `peer` (shown: e.g. "uid 65534") for
        `reason`; `key` is whom it is counted against (default: `peer`). `local`: a peer on
        this machine (a uid, or the unknown-owner key), whose lines count towards the local
        MAX_LINES, apart from remote addresses', so that neither crowds the other out."""
        now = self.clock()
        key = peer if key is None else key
        window = self._windows.get(key)
        if window is not None and now - window.start < self.interval:
            window.suppressed += 1
            return
        if now - self._all.start >= self.interval:
            unlogged = self._all.suppressed
            self._all, self._lines = _Window(now), {True: 0, False: 0}
        else:
            unlogged = 0
        if self._lines[local] >= MAX_LINES:
            self._all.suppressed += 1
            return
        self._lines[local] += 1
        earlier = window.suppressed if window is not None else 0
        if window is None and len(self._windows) >= MAX_PEERS:
            self._forget(now)
        self._windows[key] = _Window(now)
        more = f" (and {earlier} more refused from it since the last line)" if earlier else ""
        if unlogged:
            more += f" ({unlogged} refusals from other peers were not logged: too many peers)"
        self.logger.warning(
            "refused %s %s from %s: %s%s",
            printable(method, 16),
            printable(target),
            printable(peer, 64),
            printable(reason),
            more,
        )

    def _forget(self, now: float) -> None:
        """Drop finished windows (their counts are lost) so many peers cannot grow memory."""
        for key in [k for k, w in self._windows.items() if now - w.start >= self.interval]:
            del self._windows[key]
        if len(self._windows) >= MAX_PEERS:
            self._windows.clear()
