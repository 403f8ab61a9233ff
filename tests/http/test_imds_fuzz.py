"""Property: whatever arrives on the IMDS port, the answer is a well-formed HTTP response
below 500, promptly, and nothing is logged as an error.

Every exchange must get an answer: an empty reply is accepted only when nothing but blank
lines was sent (there was no request to answer), so a server that closed every connection
fails. Requests are sent whole (a body as long as their own framing says) and the client
does not half-close: a request must be answered on its own merits."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import FakeClock, FakeProvider
from vaultd.core.broker import Broker
from vaultd.http.guards import Guard
from vaultd.http.imds import ImdsApp, ImdsOptions
from vaultd.http.tokens import Tokens

SEGMENTS = st.sampled_from(
    [
        "latest",
        "meta-data",
        "iam",
        "security-credentials",
        "security-credentials-extended",
        "DeveloperRole",
        "api",
        "token",
        "2016-09-02",
        "dynamic",
        "instance-identity",
        "document",
        "placement",
        "region",
        "user-data",
        "..",
        ".",
        "",
        "%00",
        "%2F",
        "info",
        "ß",
        "a" * 300,
    ]
) | st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="?#"), max_size=20
)
HEADER_NAMES = st.sampled_from(
    [
        "X-aws-ec2-metadata-token",
        "X-aws-ec2-metadata-token-ttl-seconds",
        "X-Forwarded-For",
        "Origin",
        "Sec-Fetch-Mode",
        "Content-Length",
        "Transfer-Encoding",
        "Accept",
        "X-Other",
    ]
)
HEADER_VALUES = st.text(
    st.characters(min_codepoint=32, max_codepoint=126), max_size=40
) | st.sampled_from(["21600", "0", "-1", "1.5", "99999999999999999999", "", "chunked", "AAAA"])
METHODS = st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "BREW"])


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def server() -> Iterator[int]:
    """An ImdsApp on its own event loop in a thread, so hypothesis can drive it synchronously."""
    clock = FakeClock()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port: list[int] = []
    holder: list[ImdsApp] = []

    async def start() -> None:
        broker = Broker(FakeProvider(clock), clock)
        # A short deadline: a client that sent only blank lines is closed within a second.
        options = ImdsOptions(request_deadline=1.0)
        imds = ImdsApp(broker, Tokens(clock), Guard.for_listener("127.0.0.1", 1), options)
        listener = await imds.start("127.0.0.1", 0)
        port.append(int(listener.sockets[0].getsockname()[1]))
        imds.guard = Guard.for_listener("127.0.0.1", port[0])
        await broker.switch("master")
        holder.append(imds)
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    assert ready.wait(10)
    yield port[0]
    asyncio.run_coroutine_threadsafe(holder[0].shutdown(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def exchange(port: int, raw: bytes) -> bytes:
    """Send `raw` and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):  # a hang here fails the test through the timeout
            chunks.append(chunk)
    return b"".join(chunks)


def body_for(headers: dict[str, str]) -> bytes:
    """The body the request's own framing announces, so the server waits for nothing."""
    if headers.get("Transfer-Encoding", "").strip().lower() == "chunked":
        return b"0\r\n\r\n"
    length = headers.get("Content-Length", "").strip()
    if length.isdigit() and int(length) <= 100_000:
        return b"x" * int(length)
    return b""


def check_reply(reply: bytes) -> None:
    status_line = reply.split(b"\r\n", 1)[0]
    assert status_line.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), status_line
    assert int(status_line.split()[1]) < 500, reply[:300]


def test_no_input_produces_a_5xx_or_a_hang(server: int) -> None:
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)

    @settings(max_examples=300, deadline=None)
    @given(
        method=METHODS,
        segments=st.lists(SEGMENTS, max_size=6),
        trailing=st.booleans(),
        headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4),
    )
    def structured(
        method: str, segments: list[str], trailing: bool, headers: dict[str, str]
    ) -> None:
        path = "/" + "/".join(segments) + ("/" if trailing else "")
        lines = [f"{method} {path} HTTP/1.1", "Host: 169.254.169.254", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        check_reply(exchange(server, head + body_for(headers)))

    @settings(max_examples=150, deadline=None)
    @given(st.binary(max_size=400))
    def garbage(raw: bytes) -> None:
        reply = exchange(server, raw + b"\r\n\r\n")  # whatever it is, it has ended
        if not reply and raw.strip(b"\r\n") == b"":
            return  # only blank lines: there was no request to answer
        check_reply(reply)

    try:
        structured()
        garbage()
    finally:
        logging.getLogger().removeHandler(errors)
    assert [(r.name, r.getMessage(), r.exc_info) for r in errors.records][:3] == []
