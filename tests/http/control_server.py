"""The control API on a real Unix socket, on its own event loop in a thread, so tests can
drive it with raw sockets and hypothesis synchronously; and a log handler that keeps every
record at WARNING and above."""

from __future__ import annotations

import asyncio
import logging
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

from tests.helpers import FakeClock, FakeProvider
from vaultd.core.broker import Broker
from vaultd.http.control import ControlApp


class LogRecords(logging.Handler):
    """Every record at `level` and above, for "nothing was logged as an error" checks."""

    def __init__(self, level: int = logging.ERROR) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def summary(self) -> list[tuple[str, str, bool]]:
        return [(r.name, r.getMessage(), r.exc_info is not None) for r in self.records]


@contextmanager
def control_server(body_deadline: float | None = None) -> Iterator[Path]:
    """Serve a ControlApp (fake provider, profile `master` active) on a Unix socket."""
    clock = FakeClock()
    loop = asyncio.new_event_loop()
    folder = Path(tempfile.mkdtemp(prefix="vdc-"))
    path = folder / "control.sock"
    runner: list[web.AppRunner] = []

    async def start() -> None:
        broker = Broker(FakeProvider(clock), clock)
        app = ControlApp(broker, lambda: {"pid": 1})
        if body_deadline is not None:
            app.body_deadline = body_deadline
        r = app.runner()
        await r.setup()
        await web.UnixSite(r, str(path)).start()
        await broker.switch("master")
        runner.append(r)

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        yield path
    finally:
        if runner:
            asyncio.run_coroutine_threadsafe(runner[0].cleanup(), loop).result(10)
        asyncio.run_coroutine_threadsafe(_cancel_the_rest(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        path.unlink(missing_ok=True)
        folder.rmdir()


async def _cancel_the_rest() -> None:
    """Connections a test left open: end their tasks before the loop stops."""
    rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)


def connect(path: Path, timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(path))
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes; a hang fails through the socket's timeout."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def post(path: str, body: bytes, *, length: int | None = None) -> bytes:
    """A raw POST with `Content-Length: length` (default: the body's real length)."""
    size = len(body) if length is None else length
    head = (
        f"POST {path} HTTP/1.1\r\nHost: vaultd\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body
