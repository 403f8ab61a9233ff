"""wire.Connection driven directly: the request deadline (no waiting on the clock), and
when replies are written (one write per connection per turn of the event loop)."""

from __future__ import annotations

import asyncio
from typing import Any

from vaultd.http.wire import Connection, Limits, Peer, Request, Server

GET = b"GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n"


class Transport(asyncio.Transport):
    def __init__(self, buffered: int = 0) -> None:
        super().__init__()
        self.sent = b""
        self.closed = False
        self.events: list[str] = []  # "write", "close", "pause", in order
        self.buffered = buffered  # what the kernel has not taken yet, as get_write_buffer_size

    def write(self, data: Any) -> None:
        self.sent += bytes(data)
        self.events.append("write")

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True
        self.events.append("close")

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def pause_reading(self) -> None:
        self.events.append("pause")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


def _answer(request: Request) -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Path: {request.path}\r\n\r\n".encode()


def _server() -> Server:
    return Server(_answer, lambda _t: Peer(("127.0.0.1", 40000)), Limits(request_deadline=10))


def _connection(server: Server | None = None, buffered: int = 0) -> tuple[Connection, Transport]:
    conn = (server or _server()).protocol()
    transport = Transport(buffered)
    conn.connection_made(transport)
    return conn, transport


def _get(path: str, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 169.254.169.254", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


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


async def test_the_replies_of_one_turn_are_written_once_every_connection_is_answered() -> None:
    server = _server()
    (a, ta), (b, tb) = _connection(server), _connection(server)
    a.data_received(_get("/a"))
    b.data_received(_get("/b"))
    assert ta.sent == tb.sent == b""  # answered, not yet written: the turn is not over
    await asyncio.sleep(0)  # the turn ends
    assert b"X-Path: /a" in ta.sent
    assert b"X-Path: /b" in tb.sent
    assert ta.events == tb.events == ["write"]


async def test_pipelined_replies_go_out_in_one_write_in_order() -> None:
    conn, transport = _connection()
    conn.data_received(_get("/1") + _get("/2") + _get("/3"))
    await asyncio.sleep(0)
    assert transport.events == ["write"]
    paths = [line for line in transport.sent.split(b"\r\n") if line.startswith(b"X-Path")]
    assert paths == [b"X-Path: /1", b"X-Path: /2", b"X-Path: /3"]


async def test_a_reply_that_ends_its_connection_is_written_at_once_before_the_close() -> None:
    conn, transport = _connection()
    conn.data_received(_get("/first") + _get("/last", "Connection: close"))
    assert transport.events == ["write", "close"]  # no waiting for the turn to end
    assert b"X-Path: /first" in transport.sent
    assert b"X-Path: /last" in transport.sent
    await asyncio.sleep(0)
    assert transport.events == ["write", "close"]  # and nothing is written twice


async def test_a_client_that_does_not_read_its_replies_stops_being_read() -> None:
    conn, transport = _connection(buffered=2**17)  # the kernel has taken none of the last ones
    conn.data_received(_get("/x"))
    await asyncio.sleep(0)
    assert transport.events == ["write", "pause"]


async def test_a_transport_closing_before_the_turn_ends_is_not_written_to() -> None:
    conn, transport = _connection()
    conn.data_received(_get("/x"))
    transport.closed = True  # the peer reset it, say, while the turn went on
    await asyncio.sleep(0)
    assert transport.events == []
