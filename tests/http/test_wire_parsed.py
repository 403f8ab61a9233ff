"""wire.ParsedReads: a read taken from the table gives the requests the parser would have.

The rule under test is `Connection.between`: a read is taken from the table only while the
parser holds nothing of a request begun. Each test compares a connection whose server
remembers reads with one whose server remembers none, fed the same reads."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from tests.http.test_wire import Transport
from vaultd.http.wire import (
    PARSED_KEPT,
    PARSED_READ_MAX,
    Connection,
    Limits,
    Parsed,
    ParsedReads,
    Peer,
    Request,
    Server,
)

GET_A = b"GET /a HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token: t\r\n\r\n"
HOST = b"Host: 169.254.169.254\r\n"
TOKEN_PUT = (
    b"PUT /latest/api/token HTTP/1.1\r\n"
    + HOST
    + b"X-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n"
)
# Requests a client may send, each whole; the stream tests cut them anywhere.
WHOLE = [
    GET_A,
    b"GET /b?x=1 HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
    b"GET http://169.254.169.254:80/c HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD /a HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
    TOKEN_PUT,
    b"PUT /p HTTP/1.1\r\n" + HOST + b"Content-Length: 4\r\n\r\n\r\n\r\n",
    b"PUT /q HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n4\r\n\r\n\r\n\r\n0\r\n\r\n",
    # Trailers: aiohttp's parser gives the next request on the connection the last trailer
    # field, and a `Connection: close` one makes it refuse the next request.
    b"PUT /t HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n\r\n",
    b"PUT /u HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n0\r\n"
    b"Connection: close\r\n\r\n",
    # llhttp reads this Content-Length as a body that never ends; aiohttp sees no body.
    b"GET /v HTTP/1.1\r\n" + HOST + b"Content-Length: 18446744073709551615\r\n\r\n",
    b"GET /d HTTP/1.1\r\nX-Pad: ",  # a head the next request's lines complete
    b"\r\n",
    b"GET /e HTTP/1.0\r\n\r\n",
]


def nothing_kept() -> ParsedReads:
    """A table that remembers nothing: every read goes to the parser."""
    return ParsedReads(0)


def _fields(request: Request) -> tuple[Any, ...]:
    return (
        request.method,
        request.path,
        request.target,
        request.authority,
        tuple(request.headers.items()),
        request.http10,
        request.close,
    )


class Fed:
    """A connection on its own server, recording the requests it is asked to answer."""

    def __init__(self, new_table: Callable[[], ParsedReads] = ParsedReads) -> None:
        self.requests: list[tuple[Any, ...]] = []
        self.peers: list[Peer] = []
        self.server = Server(self._answer, lambda _t: self.peer, Limits(), new_table=new_table)
        self.peer = Peer(("127.0.0.1", 40000), 1000)
        self.conn = self.connection()

    def table(self) -> ParsedReads:
        return self.server.parsed_for(self.peer)

    def _answer(self, request: Request) -> bytes:
        self.requests.append(_fields(request))
        self.peers.append(request.peer)
        return b"HTTP/1.1 204 No Content\r\n\r\n"

    def connection(self) -> Connection:
        conn = self.server.protocol()
        transport = Transport()
        transport.set_protocol(conn)
        conn.connection_made(transport)
        return conn

    def feed(self, *reads: bytes) -> None:
        for data in reads:
            self.conn.data_received(data)


def _warmed() -> Fed:
    """A server that has seen each whole request as a read of its own, on a connection
    of its own, so that the table holds every one it may."""
    fed = Fed()
    for data in WHOLE:
        fed.connection().data_received(data)
    fed.requests.clear()
    fed.peers.clear()
    return fed


async def test_a_read_parsed_before_is_taken_from_the_table_with_this_connections_peer() -> None:
    fed = _warmed()
    assert fed.table().get(GET_A) is not None
    fed.peer = Peer(("127.0.0.2", 1234), 1000)  # the same user, from another address
    fed.conn = fed.connection()
    fed.feed(GET_A)
    assert [r[1] for r in fed.requests] == ["/a"]
    assert fed.peers == [Peer(("127.0.0.2", 1234), 1000)]


async def test_each_user_has_a_table_of_their_own_and_refused_peers_none() -> None:
    fed = _warmed()
    for peer in (
        Peer(("127.0.0.1", 40001), 1001),
        Peer(("10.0.0.2", 40000), None, None, "network"),
    ):
        fed.peer = peer
        assert fed.table().get(GET_A) is None  # what uid 1000's connections left is theirs
        fed.conn = fed.connection()
        fed.feed(GET_A)
        assert fed.table().get(GET_A) is not None
    for uid in range(2000, 2010):  # however many users are refused, nothing is kept
        fed.peer = Peer(("127.0.0.1", 40002), uid, "refused", "refused")
        fed.conn = fed.connection()
        fed.feed(GET_A)
        assert len(fed.table()) == 0
    assert len(fed.server.parsed) == 3


def test_a_read_of_several_requests_is_not_kept() -> None:
    async def run() -> None:
        fed = Fed()
        fed.feed(GET_A + GET_A)
        assert [r[1] for r in fed.requests] == ["/a", "/a"]
        assert len(fed.table()) == 0

    asyncio.run(run())


async def test_a_body_that_never_ends_for_llhttp_is_not_read_past() -> None:
    fed, plain = _warmed(), Fed(nothing_kept)
    endless = b"GET /v HTTP/1.1\r\n" + HOST + b"Content-Length: 18446744073709551615\r\n\r\n"
    for each in (fed, plain):
        each.feed(endless, GET_A, GET_A)
    assert fed.requests == plain.requests
    assert [r[1] for r in fed.requests] == ["/v"]


async def test_a_remembered_read_completing_a_head_begun_is_parsed_not_taken() -> None:
    # "X-Pad: " takes the next line as its value: the request is /d, with GET_A's Host.
    fed, plain = _warmed(), Fed(nothing_kept)
    for each in (fed, plain):
        each.feed(b"GET /d HTTP/1.1\r\nX-Pad: ", GET_A)
    assert fed.requests == plain.requests
    assert [r[1] for r in fed.requests] == ["/d"]


async def test_a_read_ending_inside_a_body_ends_the_connection_so_nothing_is_taken() -> None:
    fed, plain = _warmed(), Fed(nothing_kept)
    for each in (fed, plain):
        each.feed(b"PUT /p HTTP/1.1\r\n" + HOST + b"Content-Length: 8\r\n\r\n\r\n\r\n", GET_A)
    assert fed.requests == plain.requests
    assert [r[1] for r in fed.requests] == ["/p"]
    assert fed.conn.closing


async def test_what_a_chunked_bodys_trailer_leaves_in_the_parser_is_never_shared() -> None:
    # Another connection's trailer must not reach the owner's identical read: the parser
    # gives the request after a trailer that trailer's last field (here a token), and a
    # read parsed after it must not be remembered as what those bytes hold.
    fed = Fed()
    fed.feed(
        b"GET /a HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
        b"0\r\nX-aws-ec2-metadata-token: planted\r\n\r\n",
        b"GET /b HTTP/1.1\r\n" + HOST + b"\r\n",
    )
    fed.requests.clear()
    fed.conn = fed.connection()
    fed.feed(b"GET /b HTTP/1.1\r\n" + HOST + b"\r\n")
    assert fed.requests == [("GET", "/b", "/b", "", (("Host", "169.254.169.254"),), False, False)]


async def test_a_read_after_a_trailer_closing_the_connection_is_refused_not_taken() -> None:
    fed, plain = _warmed(), Fed(nothing_kept)
    for each in (fed, plain):
        each.feed(
            b"POST /p HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
            b"0\r\nConnection: close\r\n\r\n",
            GET_A,
        )
    assert fed.requests == plain.requests
    assert [r[1] for r in fed.requests] == ["/p"]
    assert fed.conn.closing


async def test_a_read_with_a_partial_second_request_is_not_between_requests() -> None:
    fed = Fed()
    fed.feed(GET_A + b"GET /b HTTP/1.1\r\n")
    assert fed.conn.between is False
    fed.feed(b"Host: 169.254.169.254\r\n\r\n")
    assert fed.conn.between is True
    assert [r[1] for r in fed.requests] == ["/a", "/b"]


def test_after_any_request_and_the_start_of_any_other_a_remembered_read_is_parsed() -> None:
    # Every read that leaves the parser inside a request (a whole request and the start of
    # another), then a read the table holds: only the parser may answer the second.
    async def run() -> None:
        table = _warmed().table()
        for first in WHOLE:
            for second in WHOLE:
                for cut in range(len(second) + 1):
                    for third in (GET_A, TOKEN_PUT):
                        fed, plain = Fed(lambda: table), Fed(nothing_kept)
                        for each in (fed, plain):
                            each.feed(first + second[:cut], third)
                        assert fed.requests == plain.requests, (first, second[:cut], third)

    asyncio.run(run())


def test_the_table_keeps_short_reads_only_and_is_emptied_when_full() -> None:
    table = ParsedReads()
    request: Parsed = ("GET", "/", "/", "", CIMultiDictProxy(CIMultiDict()), False, False)
    table.put(b"x" * (PARSED_READ_MAX + 1), request)
    assert len(table) == 0
    table.put(b"x" * PARSED_READ_MAX, request)
    assert len(table) == 1
    for n in range(PARSED_KEPT - 1):
        table.put(b"%d" % n, request)
    assert len(table) == PARSED_KEPT
    table.put(b"one more", request)
    assert len(table) == 1


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(WHOLE), st.booleans()), min_size=1, max_size=8),
    st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_any_cut_of_any_requests_gives_what_the_parser_gives(
    requests: list[tuple[bytes, bool]], cuts: list[int]
) -> None:
    stream = b"".join(data for data, _ in requests)
    # Where the stream is cut into reads: after the requests drawn so (reads the table may
    # hold, or a whole request with the start of the next), and at the drawn offsets.
    at = {0, len(stream)}
    offset = 0
    for data, cut_after in requests:
        offset += len(data)
        if cut_after:
            at.add(offset)
    at.update(c % (len(stream) + 1) for c in cuts)
    bounds = sorted(at)
    reads = [stream[a:b] for a, b in itertools.pairwise(bounds)]

    async def run() -> None:
        fed, plain = _warmed(), Fed(nothing_kept)
        for each in (fed, plain):
            each.feed(*reads)
        assert fed.requests == plain.requests
        assert fed.conn.closing == plain.conn.closing

    asyncio.run(run())
