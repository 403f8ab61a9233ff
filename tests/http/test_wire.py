"""wire.Connection's request deadline, driven directly (no waiting on the clock)."""

from __future__ import annotations

import asyncio
from typing import Any

from vaultd.http.wire import Connection, Limits, Peer, Request, Server

GET = b"GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n"


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.sent = b""
        self.closed = False

    def write(self, data: Any) -> None:
        self.sent += bytes(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


def _connection() -> tuple[Connection, Transport]:
    def answer(request: Request) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

    server = Server(answer, lambda _t: Peer(("127.0.0.1", 40000)), Limits(request_deadline=10))
    conn = server.protocol()
    transport = Transport()
    conn.connection_made(transport)
    return conn, transport


async def test_a_connection_that_completes_no_request_is_closed_at_the_first_deadline() -> None:
    conn, transport = _connection()
    conn.data_received(GET[:20])  # a slow client: the head never completes
    conn._check()  # the deadline passes once
    assert transport.closed


async def test_a_connection_lives_while_it_completes_requests() -> None:
    conn, transport = _connection()
    conn.data_received(GET)
    conn._check()
    assert not transport.closed  # a request completed in this period
    conn.data_received(GET)
    conn._check()
    assert not transport.closed
    conn._check()  # a whole period with no request: idle, closed
    assert transport.closed
    assert transport.sent.count(b"200 OK") == 2
