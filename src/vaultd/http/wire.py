"""HTTP/1.1 on the wire for the IMDS listener: a plain asyncio protocol around llhttp.

aiohttp's C parser (llhttp, the parser Node.js uses) reads requests; responses are prepared
bytes. A handler answers synchronously when it can — the credentials path does — and only
a request that must wait (a refresh under way, the ECS and relay paths) costs a task, so a
keep-alive GET is one parse and one write. A keep-alive client sends the same bytes again
and again; those reads are parsed once (`ParsedReads`), which halves the daemon's Python
time per GET (`make bench`: 16.7 to 9.7 us, against the reference server's 7.1).
Pipelined requests are answered in order.

Each reply is written as soon as it is ready. Holding a turn's replies back to write them
together (as an earlier version did) made fewer, larger wake-ups, but under load it put the
clients in step: all woken at once, all sending at once, each request waiting for the whole
turn ahead of it. With 64 keep-alive connections p99 was 3.0-4.4 ms against 1.9-2.2 ms when
written at once, on uvloop and asyncio's loop alike, for the same CPU per request (`make
bench`). The transport buffers what the client has not read, and its flow control
(`pause_writing`) stops reading from a client that does not read its replies.

Every connection is admitted first (`Admit`: who is at the other end, whether they may be
served, and the pool they count in) and counted in one of three pools, so that nobody else
ever takes the slots the owner needs: the owner's own clients on this machine have theirs;
peers admitted from an allowed network (other hosts, containers) have their own; refused
peers have a small one, get one 403 and are closed. A connection that completes no request
within the deadline, and reads none of its replies, is closed (aborted, when replies wait
for a client that reads nothing); a client that half-closes (SHUT_WR) after its request
still gets the answer, then the connection closes. An Upgrade request is answered, then the
connection closes: this is HTTP/1.1 only. A connection reads only while it can answer: not
while a reply is awaited, and not while its client leaves more than the transport's
high-water mark of replies unread (64 KiB in asyncio and uvloop). A long read (asyncio's
are up to 256 KiB) is parsed `FEED` bytes at a time under the same rule, so a client that
pipelines faster than it reads holds bytes in the daemon, not parsed requests and their
replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import inspect
import socket
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final, Literal

from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError
from aiohttp.http_parser import HttpRequestParser
from multidict import CIMultiDictProxy

TEXT: Final = "text/plain"
# A request body is never needed here (token PUTs carry none); what one holds is dropped,
# and a connection whose body has not fully arrived with its headers is closed after the answer.
READ_LIMIT: Final = 2**16
# Replies answered in one read are written together up to this much (the transports' own
# high-water mark, 64 KiB in asyncio and uvloop), then at once, so that flow control acts.
WRITE_HIGH_WATER: Final = 2**16
HTTP_11: Final = (1, 1)
# A read longer than this is parsed this much at a time, so that a client pipelining faster
# than it reads holds at most about a slice of parsed requests and replies (`_feed`).
FEED: Final = 4096
# At most this many requests are parsed at once (about the most one slice can hold: the
# shortest request, `GET / HTTP/1.0` and its blank line, is 18 bytes).
PARSED_AT_ONCE: Final = FEED // 16
# Reads of at most this many bytes are remembered parsed (`ParsedReads`): an SDK's GET with
# its IMDSv2 token is 150-300 bytes. Less than a slice (`FEED`), so a slice parsed on into the
# next (a body cut by it) is never remembered as if it held all it gave. At most
# `PARSED_KEPT` reads are remembered at once.
PARSED_READ_MAX: Final = FEED // 4
PARSED_KEPT: Final = 64
# How every header section ends (RFC 9112 §2.1): a read that ends so, after a request that
# frames no body, leaves the parser between requests (`Connection.between`).
END_OF_HEAD: Final = b"\r\n\r\n"
# The fields that frame a request's body (RFC 9112 §6.1-6.3): a request with neither has
# no body.
BODY_FRAMING: Final = ("Content-Length", "Transfer-Encoding")
# struct linger {l_onoff = 1, l_linger = 0}: close(2) then resets the connection and drops
# what the kernel still holds to send (socket(7)).
RESET_ON_CLOSE: Final = struct.pack("ii", 1, 0)


# The connection pools, each with its own cap (`Limits`): the owner's clients on this
# machine, peers admitted from an allowed network (another host, a container: no socket on
# this machine), and refused peers.
Pool = Literal["owner", "network", "refused"]


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is at the other end, worked out once when the connection is accepted.

    `address` is (host, port) or None when unknown; `uid` the owner of the client socket
    when it was looked up; `refusal` why this peer may not be served, or None; `pool` the
    pool its connection counts in. Raises ValueError when a refused peer is put in another
    pool than "refused", or a served one in that pool."""

    address: tuple[str, int] | None
    uid: int | None = None
    refusal: str | None = None
    pool: Pool = "owner"

    def __post_init__(self) -> None:
        if (self.refusal is not None) != (self.pool == "refused"):
            raise ValueError(f"refused peers, and only they, count in the refused pool: {self}")


@dataclass(slots=True)
class Request:
    """One parsed request: `path` is percent-decoded, `authority` the host[:port] of an
    absolute-form request-target (`GET http://host/... HTTP/1.1`), else ''; `close` is
    what the client asked for (or HTTP/1.0 implies), and a handler may set it."""

    method: str
    path: str
    target: str
    authority: str
    headers: CIMultiDictProxy[str]
    peer: Peer
    http10: bool
    close: bool = False  # set by a handler whose reply ends the connection


# One request as the parser read it, whatever connection it came on: `Request`'s fields
# less the peer (method, path, target, authority, headers, http10, close).
Parsed = tuple[str, str, str, str, CIMultiDictProxy[str], bool, bool]


class ParsedReads:
    """Reads already parsed, by their bytes: a keep-alive client sends the same request
    again and again (the same path, Host and token), and llhttp with the headers' and
    URL's objects costs more than the rest of the answer.

    A read is remembered only when it holds one request, was parsed from between requests
    and left the parser between requests again (`Connection.between`: the request frames
    no body); parsing it again from there gives the same request, since after a request
    with no body the parser keeps nothing of it (after a body it may: see
    `Connection._parse`). The parser's limits are the server's, the same for every
    connection, and each user has a table of their own (`Server.parsed_for`). Reads longer
    than PARSED_READ_MAX bytes are not kept, and the table is emptied when it holds `limit`
    (PARSED_KEPT), so varied requests cannot make it grow; a table whose limit is 0 keeps
    nothing."""

    def __init__(self, limit: int = PARSED_KEPT) -> None:
        self.limit = limit
        self._reads: dict[bytes, Parsed] = {}

    def get(self, data: bytes) -> Parsed | None:
        """The request `data` holds, when it was parsed before; else None."""
        return self._reads.get(data)

    def put(self, data: bytes, request: Parsed) -> None:
        """Remember that `data`, read between requests, holds `request` and nothing more
        (and ends between requests)."""
        if len(data) > PARSED_READ_MAX or not self.limit:
            return
        if len(self._reads) >= self.limit:
            self._reads.clear()
        self._reads[data] = request

    def __len__(self) -> int:
        return len(self._reads)


Reply = bytes
Handler = Callable[[Request], "Reply | Awaitable[Reply]"]
Admit = Callable[[asyncio.BaseTransport], Peer]
# Bytes of replies the kernel holds for a connection's client, or None when unknown.
Unsent = Callable[[asyncio.BaseTransport], "int | None"]


@dataclass(frozen=True)
class Limits:
    """Resource bounds: connections in each pool (the owner's, an allowed network's, refused
    peers'), seconds a connection may go without completing a request, and the parser's
    header limits."""

    max_connections: int = 256
    max_network: int = 256
    max_refused: int = 16
    request_deadline: float = 10.0
    max_headers: int = 64
    max_field_size: int = 8190

    def cap(self, pool: Pool) -> int:
        """The connections `pool` may hold at once."""
        if pool == "owner":
            return self.max_connections
        return self.max_network if pool == "network" else self.max_refused


class Clock:
    """The Date header, formatted once per second (RFC 9110 §6.6.1)."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._second = -1
        self._value = b""

    def date(self) -> bytes:
        second = int(self._now())
        if second != self._second:
            self._second = second
            self._value = email.utils.formatdate(second, usegmt=True).encode("ascii")
        return self._value


def head(
    status: int,
    length: int,
    content_type: str,
    headers: Iterable[tuple[str, str]],
    date: bytes,
    *,
    http10: bool = False,
    close: bool = False,
) -> bytes:
    """The status line and headers of a response, in the order aiohttp wrote them."""
    lines = [f"HTTP/1.{0 if http10 else 1} {status} {HTTPStatus(status).phrase}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines += [f"Content-Type: {content_type}", f"Content-Length: {length}"]
    out = "\r\n".join(lines).encode("latin-1") + b"\r\nDate: " + date + b"\r\n"
    if close and not http10:
        out += b"Connection: close\r\n"
    elif http10 and not close:
        out += b"Connection: keep-alive\r\n"
    return out + b"\r\n"


class Rendered:
    """Responses already rendered in the current second, keyed by what shapes them.

    The Date header changes once a second and nothing else in a reply to the same request
    does, so rendering it again is waste on the hot path. Keys name everything a reply is
    made of (status, body, headers, HTTP version, close), so a hit is byte for byte what
    rendering would give. The table is emptied when the second turns and when it holds
    `limit` replies, so varied requests cannot make it grow."""

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self._date = b""
        self._replies: dict[Hashable, tuple[bytes, bytes]] = {}

    def get(self, date: bytes, key: Hashable) -> tuple[bytes, bytes] | None:
        """(head, head + body) rendered for `key` under `date`, or None."""
        if date != self._date:
            self._date = date
            self._replies.clear()
            return None
        return self._replies.get(key)

    def put(self, key: Hashable, rendered: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
        """Remember `rendered` for `key` in the current second; returns it."""
        if len(self._replies) >= self.limit:
            self._replies.clear()
        self._replies[key] = rendered
        return rendered

    def __len__(self) -> int:
        return len(self._replies)


OVER_CAP: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nServer: EC2ws\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n"
)
BAD_REQUEST: Final = (
    b"HTTP/1.1 400 Bad Request\r\nServer: EC2ws\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 11\r\nConnection: close\r\n\r\nBad Request"
)


class Server:
    """Counts connections per pool and builds a `Connection` per accepted socket."""

    def __init__(
        self,
        handler: Handler,
        admit: Admit,
        limits: Limits,
        on_bad_request: Callable[[str], None] = lambda _: None,
        unsent: Unsent = lambda _: None,
        *,
        new_table: Callable[[], ParsedReads] = ParsedReads,
    ) -> None:
        self.handler = handler
        self.admit = admit
        self.limits = limits
        self.on_bad_request = on_bad_request
        self.unsent = unsent
        self.clock = Clock()
        self.new_table = new_table
        self.unkept = ParsedReads(0)  # refused peers', and a connection's until admitted
        self.parsed: dict[tuple[Pool, int | None], ParsedReads] = {}  # see parsed_for
        self.connections: set[Connection] = set()
        self.open: dict[Pool, int] = {"owner": 0, "network": 0, "refused": 0}
        self.over_cap = 0

    def take(self, pool: Pool) -> bool:
        """A slot in `pool`, or False when it holds its cap (`Limits.cap`) already."""
        if self.open[pool] >= self.limits.cap(pool):
            self.over_cap += 1
            return False
        self.open[pool] += 1
        return True

    def protocol(self) -> Connection:
        return Connection(self)

    def parsed_for(self, peer: Peer) -> ParsedReads:
        """The reads `peer`'s connections may share (`ParsedReads`): one table for each uid
        admitted (a client socket's owner: the daemon's own and each allowed uid), one for
        peers from an allowed network; refused peers, who get one answer, keep none. What
        one user's connection left in a table is never given to another's, whatever a
        parser might carry over from one request to the next, and there are at most as
        many tables as uids admitted, plus one."""
        if peer.refusal is not None:
            return self.unkept
        key = (peer.pool, peer.uid)
        table = self.parsed.get(key)
        if table is None:
            table = self.parsed[key] = self.new_table()
        return table

    def close_all(self) -> None:
        for conn in list(self.connections):
            conn.close()

    async def shutdown(self, grace: float) -> None:
        """Let requests in flight finish for up to `grace` seconds, then close everything."""
        for conn in list(self.connections):
            conn.closing = True
            if not conn.busy():
                conn.close()
        waiting = [c.task for c in self.connections if c.task is not None]
        if waiting:
            await asyncio.wait(waiting, timeout=grace)
        self.close_all()


class Connection(BaseProtocol):
    """One accepted socket: admission, parsing, answering in order, the deadline."""

    def __init__(self, server: Server) -> None:
        super().__init__(asyncio.get_running_loop())
        self.server = server
        self.peer = Peer(None)
        self.counted: Pool | None = None  # the pool this connection holds a slot in
        self.parser: HttpRequestParser | None = None
        self.queue: deque[Request] = deque()
        self.unparsed = bytearray()  # read and not yet parsed (see _feed)
        self.parsed = server.unkept  # this peer's table (`Server.parsed_for`), once admitted
        # The parser holds nothing of a request begun: what it was given ended between
        # requests (see `_parse`), so a read it parsed before may be taken from `ParsedReads`.
        self.between = True
        self.eof = False  # the client half-closed
        self.task: asyncio.Task[None] | None = None
        self.waiting: Awaitable[Reply] | None = None  # the reply the task waits for
        self.closing = False  # answer what is queued, then close
        self.seen = 0  # requests answered
        self.drained = 0  # times the client read its replies down after writing paused
        self.progress_at_check = 0  # seen + drained at the last check: one deadline, not two
        self.pending_at_check: int | None = None  # replies held for the client then (bytes)
        self.timer: asyncio.TimerHandle | None = None

    # -- asyncio callbacks -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        server = self.server
        self.peer = peer = server.admit(transport)
        if not server.take(peer.pool):
            self._send((OVER_CAP,))
            self.close()
            return
        self.counted = peer.pool
        self.parsed = server.parsed_for(peer)
        server.connections.add(self)
        limits = server.limits
        self.parser = HttpRequestParser(
            self,
            self._loop,
            READ_LIMIT,
            max_line_size=limits.max_field_size,
            max_field_size=limits.max_field_size,
            max_headers=limits.max_headers,
        )
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        if self.counted is not None:
            self.server.open[self.counted] -= 1
            self.counted = None
        self.server.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.task is not None:
            self.task.cancel()
            if inspect.iscoroutine(self.waiting) and (
                inspect.getcoroutinestate(self.waiting) == inspect.CORO_CREATED
            ):
                self.waiting.close()  # the task never ran: no "never awaited" warning
        self.queue.clear()
        self.unparsed.clear()
        self.parser = None

    def data_received(self, data: bytes) -> None:
        if self.closing or self.parser is None:
            return
        if len(data) > FEED or self.unparsed:
            self.unparsed += data
            self._feed()
        elif self._parse(data) and self.task is None:
            self._answer()  # the common case: a request or a few, parsed whole

    def _feed(self) -> None:
        """Parse and answer what was read `FEED` bytes at a time, while answering can go
        on: asyncio reads up to 256 KiB at once, and parsing it all would answer a client
        that pipelines and never reads with megabytes of replies before flow control could
        act. What is not parsed stays as bytes, and reading pauses until it is answered."""
        unparsed = self.unparsed
        while unparsed and not self.closing and self.task is None and not self.writing_paused:
            if self._parse(self._next_slice()) and self.task is None:
                self._answer()
        if self.closing:
            unparsed.clear()  # a request ended the connection: what follows is not read
        elif unparsed:
            if self.transport is not None:
                self.transport.pause_reading()  # until _read_if_free
        elif self.eof:  # the client half-closed, and all it sent is parsed
            self._close_when_answered()

    def _next_slice(self) -> bytes:
        """The next `FEED` bytes of what was read and not yet parsed, taken from it."""
        chunk = bytes(self.unparsed[:FEED])
        del self.unparsed[:FEED]
        return chunk

    def _parse(self, data: bytes) -> bool:
        """Queue the requests in `data`; False when it was bad HTTP (answered with 400)."""
        parser = self.parser
        if parser is None:  # the connection is gone
            return False
        known = self.parsed.get(data) if self.between else None
        if known is not None:
            self._queue((known,))
            return True
        unparsed = self.unparsed
        between = self.between
        last = data
        try:
            messages, upgraded, _tail = parser.feed_data(data)
            # A body cut by a slice boundary: parse on while the rest of it was read with it,
            # so that it is whole, as it would have been had the read been parsed at once;
            # but not past PARSED_AT_ONCE requests, which only input crafted so that every
            # slice ends inside a body reaches (parsing on would answer the whole read past
            # flow control). A body still cut then closes the connection once answered.
            while (
                messages
                and unparsed
                and not upgraded
                and not messages[-1][1].is_eof()
                and len(messages) < PARSED_AT_ONCE
            ):
                last = self._next_slice()
                extra, upgraded, _tail = parser.feed_data(last)
                messages = [*messages, *extra]
            if any(message.url is None for message, _ in messages):
                # aiohttp's C parser gives a CONNECT with an empty target no URL at all.
                raise BadHttpMessage("no request-target")
        except HttpProcessingError as exc:
            self.between = False
            self._bad_request(exc)
            return False
        requests = tuple(
            (
                message.method,
                message.url.path,
                message.path,
                message.url.raw_authority or "",
                message.headers,
                message.version < HTTP_11,
                # A request to switch protocols ends the connection once answered: vaultd
                # speaks only HTTP/1.1, and the parser drops what follows it in its read.
                message.should_close or message.upgrade or not payload.is_eof(),
            )
            for message, payload in messages
        )
        # Between requests again when the last request frames no body and what was given
        # ended with a blank line: the end of that request's head, and so of the request.
        # Bytes after it that end with a blank line make a request of their own, or an
        # error. After a body the parser may keep state: aiohttp's gives a chunked body's
        # last trailer field to the next request, and after a `Connection: close` trailer
        # it refuses the next request; llhttp reads a Content-Length of 2**64 - 1 as a
        # body that never ends, where aiohttp sees none. So only the parser reads what
        # follows a request that names a body at all.
        self.between = (
            bool(messages)
            and not any(name in messages[-1][0].headers for name in BODY_FRAMING)
            and last.endswith(END_OF_HEAD)
        )
        if between and self.between and len(requests) == 1:
            self.parsed.put(data, requests[0])
        self._queue(requests)
        return True

    def _queue(self, requests: Iterable[Parsed]) -> None:
        """Queue `requests` from this peer, up to the first that ends the connection."""
        queue, peer = self.queue, self.peer
        for method, path, target, authority, headers, http10, close in requests:
            queue.append(Request(method, path, target, authority, headers, peer, http10, close))
            if close:
                self.closing = True
                break

    def eof_received(self) -> bool:
        """The client half-closed: answer what it sent, then close (keep the write side)."""
        self.eof = True
        if not self.unparsed:  # else `_feed` does this once it has parsed the rest
            self._close_when_answered()
        return True

    def _close_when_answered(self) -> None:
        """The client will send nothing more: answer what is queued, then close."""
        self.closing = True
        if self.task is None and not self.queue:
            self.close()

    def pause_writing(self) -> None:
        """The transport holds more than its high-water mark (64 KiB in asyncio and uvloop)
        of replies the client has not read: read no more until it catches up. Called from
        inside `transport.write`, so the pause takes effect before the socket is read again."""
        super().pause_writing()
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.drained += 1  # the client is reading its replies: not idle
        # Not from inside this callback: answering what is still unparsed may close the
        # connection, and asyncio's transport, which calls this from its own write, would
        # then report the connection lost twice (the second time with its socket gone).
        self._loop.call_soon(self._read_if_free)

    def _read_if_free(self) -> None:
        """Answer what was read and not yet parsed, then read again: unless a reply is still
        awaited (requests read meanwhile would only queue up behind it, without bound), the
        client is not reading its replies, or the connection is ending (a half-closed
        client's connection is, once all it sent is parsed)."""
        if self.unparsed:
            self._feed()
        transport = self.transport
        if (
            transport is not None
            and not self.closing
            and not self.unparsed
            and self.task is None
            and not self.writing_paused
        ):
            transport.resume_reading()

    # -- answering ---------------------------------------------------------------------------
    def busy(self) -> bool:
        return self.task is not None or bool(self.queue)

    def _answer(self) -> None:
        """Answer queued requests in order; a reply that must wait becomes the one task.
        The replies answered here (a read's pipelined requests) are written together, in
        one call, before this returns."""
        queue, handler = self.queue, self.server.handler
        out: list[bytes] = []
        size = 0
        while queue and self.transport is not None:
            request = queue.popleft()
            self.seen += 1
            reply = handler(request)
            if not isinstance(reply, bytes):
                self._send(out)
                self.waiting = reply
                self.task = self._loop.create_task(self._wait(request, reply))
                self.transport.pause_reading()  # until it is answered: see _read_if_free
                return
            out.append(reply)
            size += len(reply)
            if size > WRITE_HIGH_WATER:  # a client pipelining faster than it reads: write now,
                self._send(out)  # so that flow control (`pause_writing`) acts in this read
                out, size = [], 0
            if request.close:
                self.closing = True
                self.queue.clear()
        self._send(out)
        if self.closing:
            self.close()

    async def _wait(self, request: Request, reply: Awaitable[Reply]) -> None:
        try:
            self._send((await reply,))
        finally:
            self.task = self.waiting = None
        if request.close:
            self.closing = True
            self.queue.clear()
        self._answer()
        self._read_if_free()

    def _send(self, replies: Sequence[bytes]) -> None:
        """Write `replies` in order, in one call (nothing once the transport is closing)."""
        transport = self.transport
        if not replies or transport is None or transport.is_closing():
            return
        if len(replies) == 1:
            transport.write(replies[0])
        else:
            # Not joined: replies are mostly the same cached bytes, and uvloop keeps a
            # reference to each buffered one where a join would copy them all, so a client
            # that pipelines and never reads would cost real memory for every reply.
            transport.writelines(replies)

    def _drop(self) -> None:
        """End the connection at once, with whatever it still holds unwritten or unparsed,
        by a reset (SO_LINGER 0), so that the kernel drops the replies it holds for the
        client as well. abort() alone closes the socket with them still queued: orphaned in
        FIN-WAIT-1, it is retried for minutes against a client that reads nothing."""
        self.closing = True
        self.unparsed.clear()
        transport = self.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):  # already gone: nothing left to drop
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
        transport.abort()

    def _bad_request(self, exc: HttpProcessingError) -> None:
        first = (exc.message or type(exc).__name__).splitlines()
        self.server.on_bad_request(first[0] if first else type(exc).__name__)
        self.queue.clear()
        self.closing = True
        if self.task is None:
            self._send((BAD_REQUEST,))
            self.close()

    def close(self) -> None:
        """Close once what has been answered is written; what is not parsed yet is dropped."""
        self.closing = True
        self.unparsed.clear()
        if self.transport is not None:
            self.transport.close()

    # -- deadline ----------------------------------------------------------------------------
    def _arm(self) -> None:
        self.timer = self._loop.call_later(self.server.limits.request_deadline, self._check)

    def _check(self) -> None:
        """Close a connection that made no progress since the last check: no request
        answered, and no replies read by a client that reads slowly (its transport drained,
        or less is held for it than at the last check). One whose client reads nothing at
        all is aborted, its unwritten replies dropped."""
        self.timer = None
        progress = self.seen + self.drained
        # Only a connection whose transport still holds replies (a paused one always does;
        # below the high-water mark no pause comes, and no drain is seen) can hold a reader
        # the transport does not see reading; any other is closed gracefully, the kernel
        # still delivering what it holds. What is held counts the transport's buffer and
        # the kernel's queue together: the transport refills the kernel's queue as the
        # client reads, so the queue alone stays full for a client that reads steadily.
        transport = self.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        pending = (
            buffered + (self.server.unsent(transport) or 0)
            if transport is not None and buffered > 0
            else None
        )
        reading = (
            pending is not None
            and self.pending_at_check is not None
            and pending < self.pending_at_check
        )
        self.pending_at_check = pending
        if not self.busy() and progress == self.progress_at_check and not reading:
            if pending is not None:
                # Its client reads nothing: a close would wait for ever for the replies to
                # drain, holding the socket and the slot. Drop them instead.
                self._drop()
            else:
                self.close()
            return
        self.progress_at_check = progress
        self._arm()
