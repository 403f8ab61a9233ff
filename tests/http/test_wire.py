"""wire.Connection driven directly: the request deadline (no waiting on the clock), and
when replies are written (at once, each as it is answered, in order)."""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import Callable
from typing import Any

import pytest

from vaultd.http.wire import FEED, Connection, Limits, Peer, Request, Server

# The transports' high-water mark for unread replies (asyncio's and uvloop's default).
HIGH_WATER = 2**16
GET = b"GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n"


class Transport(asyncio.Transport):
    """Records what the connection does to it. With `buffered` over the high-water mark it
    flow-controls as asyncio's and uvloop's transports do: a write calls the protocol's
    pause_writing at once."""

    def __init__(self, buffered: int = 0) -> None:
        super().__init__()
        self.sent = b""
        self.closed = False
        self.events: list[str] = []  # "write", "close", "pause", in order
        self.buffered = buffered  # what the kernel has not taken yet, as get_write_buffer_size
        self.parts: list[Any] = []  # the objects handed to write/writelines
        self.protocol: Connection | None = None
        self.reading = True

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def _flow_control(self) -> None:
        protocol = self.protocol
        if self.buffered > HIGH_WATER and protocol is not None and not protocol.writing_paused:
            protocol.pause_writing()

    def write(self, data: Any) -> None:
        self.sent += bytes(data)
        self.events.append("write")
        self.parts.append(data)
        self._flow_control()

    def writelines(self, data: Any) -> None:
        parts = list(data)
        self.sent += b"".join(parts)
        self.events.append("write")
        self.parts.extend(parts)
        self._flow_control()

    def abort(self) -> None:
        self.closed = True
        self.events.append("abort")

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True
        self.events.append("close")

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def pause_reading(self) -> None:
        if self.reading:  # as asyncio's and uvloop's: pausing twice is one pause
            self.reading = False
            self.events.append("pause")

    def resume_reading(self) -> None:
        if not self.reading:
            self.reading = True
            self.events.append("resume")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


ANSWERED: list[bytes] = []  # every reply _answer gave, in order (cleared by _server)


def _answer(request: Request) -> bytes:
    reply = f"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Path: {request.path}\r\n\r\n".encode()
    ANSWERED.append(reply)
    return reply


def _server(
    handler: Callable[[Request], Any] = _answer,
    unsent: Callable[[Any], int | None] = lambda _t: None,
) -> Server:
    """A server whose peers are all the owner's; `unsent` stands for the kernel's queue."""
    ANSWERED.clear()
    return Server(
        handler, lambda _t: Peer(("127.0.0.1", 40000)), Limits(request_deadline=10), unsent=unsent
    )


def _connection(server: Server | None = None, buffered: int = 0) -> tuple[Connection, Transport]:
    conn = (server or _server()).protocol()
    transport = Transport(buffered)
    transport.set_protocol(conn)
    conn.connection_made(transport)
    return conn, transport


def _get(path: str, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 169.254.169.254", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _put_head(path: str, framing: str) -> bytes:
    """A PUT's head, its body (framed by `framing`) to follow."""
    return _get(path, framing).replace(b"GET", b"PUT", 1)


def _paths(sent: bytes) -> list[bytes]:
    return [line for line in sent.split(b"\r\n") if line.startswith(b"X-Path")]


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


async def test_a_reply_is_written_as_soon_as_it_is_answered() -> None:
    # Not held for the end of the turn: under load that put the clients in step, and p99 at
    # 64 connections rose by half or more (wire's docstring).
    server = _server()
    (a, ta), (b, tb) = _connection(server), _connection(server)
    a.data_received(_get("/a"))
    assert _paths(ta.sent) == [b"X-Path: /a"]
    assert ta.events == ["write"]
    b.data_received(_get("/b"))
    assert _paths(tb.sent) == [b"X-Path: /b"]
    await asyncio.sleep(0)
    assert ta.events == tb.events == ["write"]  # and nothing more when the turn ends


async def test_pipelined_replies_are_written_in_order_together_as_they_are() -> None:
    conn, transport = _connection()
    conn.data_received(_get("/1") + _get("/2") + _get("/3"))
    assert _paths(transport.sent) == [b"X-Path: /1", b"X-Path: /2", b"X-Path: /3"]
    assert transport.events == ["write"]  # one call for the read's replies, not a syscall each
    # Handed over as they are, not joined: uvloop buffers a reference to each, so a client
    # that never reads costs a pointer per reply, not a copy of it.
    assert len(transport.parts) == 3
    assert all(part is reply for part, reply in zip(transport.parts, ANSWERED, strict=True))


async def test_a_reply_still_to_be_awaited_when_the_client_goes_is_closed_not_leaked() -> None:
    async def later(request: Request) -> bytes:
        return _answer(request)

    pending: list[Any] = []

    def answer(request: Request) -> Any:
        pending.append(later(request))
        return pending[-1]

    server = _server(answer)
    conn, _ = _connection(server)
    conn.data_received(_get("/ecs"))
    conn.connection_lost(ConnectionResetError())  # before the task that awaits it ran
    await asyncio.sleep(0)
    assert inspect.getcoroutinestate(pending[0]) == inspect.CORO_CLOSED


async def test_a_reply_that_ends_its_connection_is_written_at_once_before_the_close() -> None:
    conn, transport = _connection()
    conn.data_received(_get("/first") + _get("/last", "Connection: close"))
    assert transport.events == ["write", "close"]
    assert _paths(transport.sent) == [b"X-Path: /first", b"X-Path: /last"]
    await asyncio.sleep(0)
    assert transport.events == ["write", "close"]  # and nothing is written twice


async def test_a_pipelining_client_that_does_not_read_is_paused_inside_the_read() -> None:
    conn, transport = _connection(buffered=2**17)
    requests = _get("/" + "x" * 1000) * 200  # replies over the write high-water mark
    conn.data_received(requests)
    # Paused before this read returns: the event loop may read the same socket again in
    # this turn, and every read answered before a pause is held in memory.
    assert "pause" in transport.events
    assert transport.events[0] == "write"


async def test_a_client_that_does_not_read_its_replies_stops_being_read() -> None:
    conn, transport = _connection(buffered=2**17)  # the kernel has taken none of the last ones
    conn.data_received(_get("/x"))
    await asyncio.sleep(0)
    assert transport.events == ["write", "pause"]


async def test_a_closing_transport_is_not_written_to() -> None:
    conn, transport = _connection()
    transport.closed = True  # the peer reset it, say, with a request still in the read
    conn.data_received(_get("/x"))
    await asyncio.sleep(0)
    assert transport.events == []


async def test_reading_stops_while_a_reply_is_awaited_and_resumes_once_it_is_written() -> None:
    answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def later() -> bytes:
        return await answer

    def handler(request: Request) -> Any:
        return later() if request.path == "/wait" else _answer(request)

    server = _server(handler)
    conn, transport = _connection(server)
    conn.data_received(_get("/wait") + _get("/next"))
    # Requests read while a reply is awaited would only queue up behind it, without bound.
    assert transport.events == ["pause"]
    conn.pause_writing()  # and the client draining earlier replies meanwhile does not undo it
    conn.resume_writing()
    assert transport.events == ["pause"]
    answer.set_result(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Path: /wait\r\n\r\n")
    for _ in range(3):
        await asyncio.sleep(0)
    assert transport.events == ["pause", "write", "write", "resume"]
    assert _paths(transport.sent) == [b"X-Path: /wait", b"X-Path: /next"]


async def test_a_client_reading_its_replies_slowly_is_not_idle() -> None:
    conn, transport = _connection()
    conn.data_received(_get("/x"))
    conn._check()  # a request answered: alive
    conn.pause_writing()  # the client reads slower than the replies come
    conn.resume_writing()  # ...but it does read them down
    conn._check()
    assert not transport.closed
    conn._check()  # a whole period without either: idle
    assert transport.closed


async def test_a_long_read_is_answered_only_as_fast_as_the_client_reads_the_replies() -> None:
    conn, transport = _connection(buffered=2**17)  # the client reads none of its replies
    count = 3000  # 170 KB of requests in one read, as asyncio reads a pipelining client
    conn.data_received(b"".join(_get(f"/{n}") for n in range(count)))
    await asyncio.sleep(0)
    # Only what was parsed before writing paused is answered; the rest waits as bytes, not
    # as parsed requests and their replies.
    assert 0 < len(b"".join(ANSWERED)) < 2 * HIGH_WATER
    assert len(conn.unparsed) > 50_000
    assert "pause" in transport.events and not transport.reading
    for _ in range(count):  # answering goes on as the client reads its replies down
        if len(ANSWERED) == count:
            break
        conn.resume_writing()
        await asyncio.sleep(0)
    assert _paths(transport.sent) == [f"X-Path: /{n}".encode() for n in range(count)]
    assert not conn.unparsed
    assert not transport.reading  # the last replies are still unread
    transport.buffered = 0  # the client reads them all
    conn.resume_writing()
    await asyncio.sleep(0)
    assert transport.events[-1] == "resume"  # and reading goes on


async def test_a_half_closed_client_gets_every_answer_of_a_long_read_then_the_close() -> None:
    conn, transport = _connection(buffered=2**17)
    conn.data_received(b"".join(_get(f"/{n}") for n in range(3000)))
    conn.eof_received()  # SHUT_WR after the burst
    await asyncio.sleep(0)
    assert not transport.closed  # not before what it sent is answered
    while not transport.closed:
        conn.resume_writing()
        await asyncio.sleep(0)
    assert _paths(transport.sent) == [f"X-Path: /{n}".encode() for n in range(3000)]


async def test_a_half_closed_client_waiting_for_an_awaited_reply_is_closed_after_it() -> None:
    loop = asyncio.get_running_loop()
    answers: dict[str, asyncio.Future[bytes]] = {
        "/wait1": loop.create_future(),
        "/wait2": loop.create_future(),
    }

    async def later(path: str) -> bytes:
        return await answers[path]

    def handler(request: Request) -> Any:
        return later(request.path) if request.path in answers else _answer(request)

    conn, transport = _connection(_server(handler))
    middle = b"".join(_get(f"/{n}") for n in range(100))
    conn.data_received(_get("/wait1") + middle + _get("/wait2"))  # longer than a slice
    conn.eof_received()  # while most of it is still unparsed
    for path, answer in answers.items():
        await asyncio.sleep(0)
        assert not transport.closed
        answer.set_result(f"HTTP/1.1 200 OK\r\nX-Path: {path}\r\n\r\n".encode())
        for _ in range(3):
            await asyncio.sleep(0)
    assert transport.closed  # everything it sent is answered: no wait for the deadline
    paths = _paths(transport.sent)
    assert paths == [
        b"X-Path: /wait1",
        *[f"X-Path: /{n}".encode() for n in range(100)],
        b"X-Path: /wait2",
    ]


@pytest.mark.parametrize(
    "request_line", [b"CONNECT ", b"CONNECT \r\nHost: a", b"GET /a HTTP/1.1\r\n\r\nCONNECT "]
)
async def test_a_request_the_parser_gives_no_target_is_a_bad_request(request_line: bytes) -> None:
    # aiohttp's C parser gives a CONNECT with an empty target no URL at all.
    conn, transport = _connection()
    conn.data_received(request_line + b"\r\n\r\n")
    assert transport.sent.startswith(b"HTTP/1.1 400 Bad Request")
    assert transport.closed and ANSWERED == []


async def test_what_follows_a_closing_request_in_a_long_read_is_not_parsed() -> None:
    conn, transport = _connection()
    last = _get("/last", "Connection: close")
    head = b"".join(_get(f"/{n}") for n in range(100)) + last
    pad = (-len(head) - len(_get("/"))) % FEED  # the closing request ends a slice
    head = _get("/" + "p" * pad) + head
    assert len(head) % FEED == 0
    conn.data_received(head + _get("/after") * 100)
    await asyncio.sleep(0)
    assert transport.closed
    paths = _paths(transport.sent)
    assert len(paths) == 102 and paths[-1] == b"X-Path: /last"  # answered, then the close
    assert b"400" not in transport.sent  # what followed was dropped, not parsed
    assert not conn.unparsed


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_cut_by_a_slice_boundary_is_whole_and_the_connection_lives(
    chunked: bool,
) -> None:
    framing = "Transfer-Encoding: chunked" if chunked else "Content-Length: 10"
    body = b"a\r\n0123456789\r\n0\r\n\r\n" if chunked else b"0123456789"
    put = _put_head("/put", framing)
    for cut in range(1, len(body)):  # the boundary falls inside the body, at each place
        conn, transport = _connection()
        pad = FEED - len(put) - cut - len(_get("/"))
        first = _get("/" + "p" * pad)
        data = first + put + body + _get("/a") + _get("/b")
        assert len(first + put) + cut == FEED
        conn.data_received(data)
        await asyncio.sleep(0)
        assert len(_paths(transport.sent)) == 4, cut
        assert not transport.closed and b"Connection: close" not in transport.sent


@pytest.mark.parametrize(
    "asks",
    [
        ("Connection: Upgrade", "Upgrade: websocket"),
        ("Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABk"),
    ],
)
async def test_a_request_to_switch_protocols_is_answered_then_the_connection_ends(
    asks: tuple[str, ...],
) -> None:
    upgrade = _get("/ws", *asks)
    for before in (_get("/a"), _get("/" + "p" * FEED)):  # a short read, and a long one
        conn, transport = _connection()
        conn.data_received(before + upgrade + _get("/after") * 200)
        await asyncio.sleep(0)
        assert transport.closed
        assert _paths(transport.sent)[-1] == b"X-Path: /ws"
        assert b"400" not in transport.sent and not conn.unparsed


async def test_an_idle_client_that_reads_nothing_is_aborted_not_waited_for() -> None:
    conn, transport = _connection(buffered=2**17)  # the client reads none of its replies
    conn.data_received(b"".join(_get(f"/{n}") for n in range(3000)))
    await asyncio.sleep(0)
    assert conn.writing_paused and conn.unparsed
    conn._check()
    conn._check()  # a whole period without a request answered or a reply read
    assert transport.events[-1] == "abort"  # a close would wait for the replies to drain
    assert not conn.unparsed


async def test_a_client_reading_what_the_kernel_holds_for_it_is_not_idle() -> None:
    # Megabytes queued in the kernel for a slow reader: the transport does not drain within
    # a deadline, but the kernel's queue for the client shrinks as it reads.
    queued = [3_000_000]
    server = _server(unsent=lambda _t: queued[0])
    conn, transport = _connection(server, buffered=2**17)
    conn.data_received(b"".join(_get(f"/{n}") for n in range(3000)))
    await asyncio.sleep(0)
    assert conn.writing_paused
    conn._check()  # requests answered in this period
    for _ in range(3):
        queued[0] -= 160_000  # 16 KB/s over a period
        conn._check()
        assert not transport.closed
    conn._check()  # a whole period in which it took nothing
    assert transport.closed and transport.events[-1] == "abort"


async def _listening(server: Server) -> tuple[asyncio.Server, list[Connection]]:
    """A real loopback listener for `server`, and the connections it makes, in order."""
    made: list[Connection] = []

    def protocol() -> Connection:
        made.append(server.protocol())
        return made[-1]

    return await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0), made


async def _accepted_sending_little(made: list[Connection]) -> tuple[Connection, Any]:
    """The first connection `_listening` made, once accepted (a turn or two), and its
    socket, whose send buffer is made small so that the kernel takes little of what it
    writes."""
    for _ in range(100):
        if made and made[0].transport is not None:
            break
        await asyncio.sleep(0.01)
    conn = made[0]
    assert conn.transport is not None
    sock = conn.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return conn, sock


def _reading_little() -> socket.socket:
    """A non-blocking client socket whose kernel takes little of what is sent to it."""
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.setblocking(False)
    return client


async def test_a_closing_request_answered_as_the_client_catches_up_closes_once() -> None:
    # Real sockets. Two replies over the transport's high-water mark pause writing while the
    # rest of the read (small requests, then a closing one) is still unparsed; once the
    # client has read it all, the rest is answered and the connection closed. That must not
    # happen inside the transport's write callback: asyncio's would then report the loss
    # twice, the second time failing on its own closed socket.
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))

    def handler(request: Request) -> bytes:
        body = b"x" * (200_000 if request.path.startswith("/big") else 10)
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body

    listener, made = await _listening(_server(handler))
    client = _reading_little()
    try:
        await loop.sock_connect(client, listener.sockets[0].getsockname())
        reader, writer = await asyncio.open_connection(sock=client)
        conn, sock = await _accepted_sending_little(made)
        big = _get("/big") + _get("/big" + "b" * (FEED - 2 * len(_get("/big"))))
        assert len(big) == FEED  # the first slice: both replies, then writing pauses
        writer.write(big + _get("/small") * 50 + _get("/last", "Connection: close"))
        for _ in range(100):
            if conn.writing_paused:
                break
            await asyncio.sleep(0.01)
        assert conn.unparsed  # the small and the closing requests wait as bytes
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 2**20)  # now it takes all
        answer = await asyncio.wait_for(reader.read(), 10)  # to the server's close
        writer.close()
        assert answer.count(b"HTTP/1.1 200 OK") == 53
        for _ in range(3):
            await asyncio.sleep(0.01)
    finally:
        client.close()
        listener.close()
        await listener.wait_closed()
    assert [str(context.get("exception") or context["message"]) for context in seen] == []


async def test_each_pool_has_its_own_cap_and_a_full_one_takes_no_others_slot() -> None:
    # Admission decides the pool once; the peers queued here are what it decided.
    owner = Peer(("127.0.0.1", 40000), 1000)
    network = Peer(("10.98.0.2", 40000), None, None, "network")
    refused = Peer(("127.0.0.1", 40001), 4242, "connection owned by uid 4242", "refused")
    admitted = iter([network, network, network, refused, refused, refused, owner, owner])
    limits = Limits(max_connections=2, max_network=2, max_refused=2, request_deadline=10)
    server = Server(_answer, lambda _t: next(admitted), limits)
    conns = [_connection(server) for _ in range(8)]
    over = [t for _c, t in conns if t.sent.startswith(b"HTTP/1.1 503")]
    assert len(over) == 2  # the third of the network's and of the refused peers'
    assert server.open == {"owner": 2, "network": 2, "refused": 2}
    conns[-1][0].data_received(GET)  # the owner's, with both other pools full
    await asyncio.sleep(0)
    assert conns[-1][1].sent.startswith(b"HTTP/1.1 200")
    for conn, _t in conns:
        conn.connection_lost(None)
    assert server.open == {"owner": 0, "network": 0, "refused": 0}


def test_a_peer_counts_in_the_refused_pool_exactly_when_it_is_refused() -> None:
    with pytest.raises(ValueError, match="refused pool"):
        Peer(("127.0.0.1", 40000), 4242, "connection owned by uid 4242")
    with pytest.raises(ValueError, match="refused pool"):
        Peer(("127.0.0.1", 40000), 1000, None, "refused")


async def test_an_idle_client_with_unread_replies_below_the_high_water_mark_is_dropped() -> None:
    # 30 KB of replies wait in the daemon: no pause (under the 64 KiB mark), so no drain is
    # ever seen. Before, the deadline called close(), which waits for ever for them to drain,
    # and was not armed again: the slot, the fd and the kernel's queue were held.
    conn, transport = _connection(buffered=30_000)
    conn.data_received(_get("/x"))
    conn._check()  # a request answered in this period: alive
    assert not transport.closed
    conn._check()  # a whole period without a request answered or a reply read
    assert transport.events[-1] == "abort"


async def test_an_idle_client_reading_down_unread_replies_below_the_mark_is_kept() -> None:
    queued = [200_000]
    server = _server(unsent=lambda _t: queued[0])
    conn, transport = _connection(server, buffered=30_000)
    conn.data_received(_get("/x"))
    conn._check()
    queued[0] -= 50_000  # the client takes some of what the kernel holds for it
    conn._check()
    assert not transport.closed


def _bodies_cut_at_every_slice(size: int = 2**18) -> bytes:
    """`size` bytes of GETs in which every FEED slice ends inside a small PUT's body (the
    breaker's input: the cut-body rule must not parse the whole read past flow control)."""
    carried = 10  # body bytes that fall into the next slice
    put = _put_head("/put", "Content-Length: 20")
    get = _get("/a")
    out = bytearray()
    while len(out) + FEED <= size:
        block = bytearray(b"b" * carried if out else b"")
        room = FEED - len(block) - len(put) - (20 - carried)
        count, extra = divmod(room, len(get))
        block += _get("/a" + "a" * extra) + get * (count - 1) + put + b"b" * (20 - carried)
        assert len(block) == FEED
        out += block
    return bytes(out)


async def test_bodies_cut_at_every_slice_do_not_get_a_long_read_answered_at_once() -> None:
    conn, transport = _connection(buffered=2**17)  # the client reads none of its replies
    conn.data_received(_bodies_cut_at_every_slice())
    await asyncio.sleep(0)
    # At most the slice and the one more that completes its body are answered; the body
    # still cut after that ends the connection (before: 9,000 replies, the whole read).
    assert 0 < len(b"".join(ANSWERED)) < 2 * HIGH_WATER
    assert transport.closed


async def test_a_client_reading_steadily_while_the_kernel_queue_stays_full_is_kept() -> None:
    # The transport refills the kernel's queue as the client reads: that queue stays full,
    # and only the transport's buffer shows the reading (the second breaker's 2 KB/s client
    # was cut off at 47,104 of 49,640 bytes when only the kernel's queue was looked at).
    server = _server(unsent=lambda _t: 4096)
    conn, transport = _connection(server, buffered=30_000)
    conn.data_received(_get("/x"))
    conn._check()
    transport.buffered -= 20_000  # read down in this period, the kernel's queue refilled
    conn._check()
    assert not transport.closed
    conn._check()  # a period with nothing read
    assert transport.events[-1] == "abort"


@pytest.mark.parametrize(("puts", "body"), [(5, 3000), (20, 1000), (1, 9000)])
async def test_pipelined_requests_with_bodies_longer_than_a_slice_are_all_answered(
    puts: int, body: int
) -> None:
    put = _put_head("/put", f"Content-Length: {body}") + b"b" * body
    conn, transport = _connection()
    conn.data_received(put * puts + _get("/last"))
    await asyncio.sleep(0)
    assert len(_paths(transport.sent)) == puts + 1
    assert not transport.closed and b"Connection: close" not in transport.sent


async def test_a_client_that_reads_nothing_is_reset_and_the_kernel_keeps_none_of_its_replies() -> (
    None
):
    # Real sockets. A client pipelines requests and reads none of the replies: the transport
    # pauses, and the deadline drops the connection. Before, abort() only closed the socket,
    # so the replies already in the kernel's send queue stayed there, the socket orphaned in
    # FIN-WAIT-1 and retried for minutes against a window that never opens: a client with
    # many connections could pin kernel memory after the daemon had let go. A reset
    # (SO_LINGER 0) drops them with the socket; the client sees the reset, not an orderly end.
    loop = asyncio.get_running_loop()
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n" + b"x" * 10_000
    listener, made = await _listening(_server(lambda _request: reply))
    client = _reading_little()
    try:
        await loop.sock_connect(client, listener.sockets[0].getsockname())
        conn, _sock = await _accepted_sending_little(made)
        await loop.sock_sendall(client, _get("/x") * 200)  # 2 MB of replies, none read
        for _ in range(500):
            if conn.writing_paused:
                break
            await asyncio.sleep(0.01)
        assert conn.writing_paused
        conn._check()  # requests were answered in this period
        conn._check()  # and none since, nor any reply read: dropped
        assert conn.closing
        ended_by: type[BaseException] | None = None
        try:
            while await asyncio.wait_for(loop.sock_recv(client, 65536), 10):
                pass  # what reached the client before the drop
        except ConnectionResetError as exc:
            ended_by = type(exc)
        assert ended_by is ConnectionResetError  # not an orderly end after all 2 MB
    finally:
        client.close()
        listener.close()
        await listener.wait_closed()
