"""Blocking calls that the process does not wait for when it exits.

STS, the keyring and config files are reached through blocking libraries, so the daemon
runs those calls in threads. asyncio's default executor joins its threads at shutdown, and
Python joins them again at exit: SIGTERM during an STS call that hangs then waited for
botocore's read timeouts and retries (18.9 s, issue 13). A call in flight at shutdown has
nobody left to answer, so `AbandoningExecutor` runs each call in a daemon thread of its own
and never waits for them: the daemon's runner makes it the loop's default executor, which
`asyncio.to_thread` and `run_in_executor(None, ...)` use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class AbandoningExecutor(ThreadPoolExecutor):
    """An executor whose calls each run in a fresh daemon thread, and whose `shutdown`
    returns at once: calls still running are abandoned (their results are dropped) and do
    not hold up the event loop's shutdown or the interpreter's exit.

    A ThreadPoolExecutor only because asyncio's `set_default_executor` demands one; none of
    its pool is used.
    """

    def __init__(self, name: str = "vaultd-blocking") -> None:
        super().__init__(max_workers=1, thread_name_prefix=name)
        self.name = name
        self._closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if self._closed:
            raise RuntimeError("cannot run new calls after shutdown")
        future: Future[T] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to whoever awaits the future
                future.set_exception(exc)
            else:
                future.set_result(result)

        threading.Thread(target=run, name=self.name, daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new calls; never wait for running ones (`wait` is ignored on purpose)."""
        self._closed = True
