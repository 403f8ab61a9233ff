"""The control API's bounds on what it reads: body depth, a body that stops halfway, a body
trickled slowly. Each gets a 4xx or a closed connection, and nothing is logged as an error."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator

import pytest

from tests.http.control_server import LogRecords, connect, control_server, post, read_all
from vaultd.http.reading import deeper_than


@pytest.fixture
def errors() -> Iterator[LogRecords]:
    records = LogRecords(logging.WARNING)
    logging.getLogger().addHandler(records)
    try:
        yield records
    finally:
        logging.getLogger().removeHandler(records)


def status_of(reply: bytes) -> int:
    assert reply.startswith(b"HTTP/1.1 "), reply[:200]
    return int(reply.split()[1])


def test_deeply_nested_json_is_a_400(errors: LogRecords) -> None:
    # 60,000 levels fit in the 64 KiB body limit; the parser's recursion does not.
    for body in (b"[" * 60_000, b'{"a":' * 12_000, b'{"profile": ' + b"[" * 40 + b"]" * 40 + b"}"):
        with control_server() as path, connect(path) as sock:
            sock.sendall(post("/v1/switch", body))
            reply = read_all(sock)
        assert status_of(reply) == 400, reply[:300]
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"] == "bad_request"
    assert errors.summary() == []


def test_nesting_inside_strings_does_not_count(errors: LogRecords) -> None:
    body = json.dumps({"profile": "[" * 100 + '\\"{' * 50}).encode()
    with control_server() as path, connect(path) as sock:
        sock.sendall(post("/v1/switch", body))
        reply = read_all(sock)
    # Parsed fine; the fake provider serves any name.
    assert status_of(reply) == 200, reply[:300]
    assert errors.summary() == []


def test_a_client_that_leaves_mid_body_logs_no_traceback(errors: LogRecords) -> None:
    with control_server() as path:
        for _ in range(3):
            with connect(path) as sock:
                sock.sendall(post("/v1/switch", b'{"profile": "mas', length=1000))
            time.sleep(0.2)  # let the server notice the close before the next one
        with connect(path) as sock:  # still serving
            sock.sendall(post("/v1/switch", b'{"profile": "master"}'))
            assert status_of(read_all(sock)) == 200
    assert errors.summary() == []


def test_a_trickled_body_is_cut_off_at_the_deadline(errors: LogRecords) -> None:
    body = b'{"profile": "master"}'
    with control_server(body_deadline=1.0) as path, connect(path, timeout=10) as sock:
        sock.sendall(post("/v1/switch", b"", length=len(body)))
        started = time.monotonic()
        reply = b""
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.3)
            sock.setblocking(False)
            try:
                reply = sock.recv(65536)
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
            if reply:
                break
        else:
            pytest.fail("the whole body was read: nothing cut the trickle off")
        sock.settimeout(10)
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            reply += read_all(sock)
        waited = time.monotonic() - started
    assert not reply or status_of(reply) == 408, reply[:300]
    assert waited < 5, waited  # cut off near the 1 s deadline, not when the body ends
    assert errors.summary() == []


@pytest.mark.parametrize(
    ("text", "limit", "deeper"),
    [
        (b"[[[]]]", 3, False),
        (b"[[[[]]]]", 3, True),
        (b'{"a": {"b": {"c": 1}}}', 3, False),
        (b'{"a": {"b": {"c": {}}}}', 3, True),
        (b'["[[[[[[", "{{{{"]', 1, False),
        (b'["\\"[[[[", "\\\\", [[[]]]]', 2, True),
        (b'["\\\\"]', 1, False),
        (b'"\\\\" [[', 1, True),
        (b"]]]][[", 1, True),
        (b"", 0, False),
    ],
)
def test_depth_counts_brackets_outside_strings(text: bytes, limit: int, deeper: bool) -> None:
    assert deeper_than(text, limit) is deeper
