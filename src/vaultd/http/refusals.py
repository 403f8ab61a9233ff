"""Logging what a request sent without letting the request write the log.

Everything taken from a request (method, target, header values) goes through `printable`
(vaultd.untrusted, the one rule for text from outside):
control characters, quotes, backslashes and non-ASCII are escaped (so `%0a` decoded to a
newline cannot forge a line, NUL and CR never reach the log) and the length is bounded.
Refusals are rate-limited: one line per peer (its uid when known) per interval, carrying
the count of refusals it stood for, so a flood of refused requests adds a line a minute.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from vaultd.untrusted import printable

INTERVAL: Final = 60.0
MAX_PEERS: Final = 1024


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

    def refused(self, peer: str, method: str, target: str, reason: str) -> None:
        """Note one refusal of `method target` from `peer` (e.g. "uid 65534") for `reason`."""
        now = self.clock()
        window = self._windows.get(peer)
        if window is not None and now - window.start < self.interval:
            window.suppressed += 1
            return
        earlier = window.suppressed if window is not None else 0
        if window is None and len(self._windows) >= MAX_PEERS:
            self._forget(now)
        self._windows[peer] = _Window(now)
        more = f" (and {earlier} more refused from it since the last line)" if earlier else ""
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
