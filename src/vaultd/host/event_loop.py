"""The event loop the daemon and the relay run on: uvloop where it is installed.

uvloop (asyncio's event loop API on libuv; MIT-licensed, from MagicStack) moves the accept,
read and write paths of every connection into C. On the IMDS hot path, where each keep-alive
GET is one recv, one parse and one send, it cut the daemon's CPU per request by about a
sixth (24 against 28 us, server CPU over a wrk run). It is a dependency wherever it builds
(Linux and macOS). Where it is missing, or when `--event-loop asyncio` (`event_loop` in the
settings) asks for the standard loop as a way out should a uvloop release misbehave,
asyncio's own loop runs the same code: everything vaultd does goes through asyncio's public
API, and the HTTP and guard tests run on both loops.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from vaultd.errors import ConfigError
from vaultd.settings import event_loop_named

T = TypeVar("T")


def describe(loop: asyncio.AbstractEventLoop) -> str:
    """What `loop` is, for `vaultd status` and the log: "uvloop 0.23.0" or "asyncio"."""
    module = type(loop).__module__.partition(".")[0]
    if module == "asyncio":
        return "asyncio"
    version = getattr(importlib.import_module(module), "__version__", "")
    return f"{module} {version}".strip()


@dataclass(frozen=True)
class EventLoop:
    """A chosen loop: `name` ("uvloop" or "asyncio") and the `factory` that makes it (None:
    asyncio's default)."""

    name: str
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run `main` to completion on a new loop of this kind, as `asyncio.run` does."""
        with asyncio.Runner(loop_factory=self.factory) as runner:
            return runner.run(main)


def choose(wanted: str = "auto") -> EventLoop:
    """The loop for `wanted`: "auto" (uvloop when importable, else asyncio's), "uvloop" or
    "asyncio".

    Raises ConfigError for any other word, and for "uvloop" when it cannot be imported
    (asked for by name, its absence is an error, not a silent fallback)."""
    if event_loop_named(wanted) == "asyncio":
        return EventLoop("asyncio")
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError as exc:
        if wanted == "uvloop":
            raise ConfigError(
                f"event_loop is uvloop, but uvloop cannot be imported: {exc}"
            ) from None
        return EventLoop("asyncio")
    return EventLoop("uvloop", uvloop.new_event_loop)
