"""Property: whatever arrives on the control socket, the answer is a well-formed HTTP response
below 500 (or a closed connection), promptly, and nothing is logged as an error."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.http.control_server import LogRecords, connect, control_server, read_all

PATHS = st.sampled_from(
    [
        "/v1/status",
        "/v1/profiles",
        "/v1/switch",
        "/v1/mfa",
        "/v1/refresh",
        "/v1/clear",
        "/v1/credentials",
        "/v1/console-credentials",
        "/v1/exec-tokens",
        "/v1/exec-tokens/abc",
        "/v1/exec-tokens/",
        "/v1/",
        "/",
        "/v1/status/../switch",
        "/%00",
        "/v1/" + "a" * 300,
    ]
)
METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "BREW"])
KEYS = st.sampled_from(["profile", "mfa_code", "code", "duration", "x", ""])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["master", "identity", "123456", "ghost", "0" * 7])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(), inner, max_size=4)
    ),
    max_leaves=12,
)
BODIES = (
    st.dictionaries(KEYS, VALUES, max_size=4).map(lambda v: json.dumps(v).encode())
    | VALUES.map(lambda v: json.dumps(v).encode())
    | st.sampled_from([2, 32, 33, 2_000, 60_000]).map(lambda n: b"[" * n + b"]" * (n % 3))
    | st.binary(max_size=200)
)
POSTED_TO = st.sampled_from(
    ["/v1/switch", "/v1/mfa", "/v1/refresh", "/v1/credentials", "/v1/console-credentials"]
)
HEADERS = st.dictionaries(
    st.sampled_from(["Content-Type", "Transfer-Encoding", "Expect", "Content-Encoding", "X-A"]),
    st.sampled_from(["application/json", "chunked", "100-continue", "gzip", "", "\x7f"]),
    max_size=2,
)


def exchange(path: Path, raw: bytes) -> bytes | None:
    """The server's reply, or None when it reset the connection: on a Unix socket, a server
    that answers and closes with part of a long body unread resets the client, which may
    then lose the answer (only long bodies may do this: see `check_sent`)."""
    with connect(path) as sock:
        try:
            sock.sendall(raw)
            return read_all(sock)
        except (ConnectionResetError, BrokenPipeError):
            return None


def check_sent(reply: bytes | None, body: bytes) -> None:
    """`check`, where a reset is allowed only after a body too long to wait for."""
    if reply is None:
        assert len(body) >= 2_000, "reset on a short request"
        return
    check(reply)


def check(reply: bytes, *, answered: bool = True) -> None:
    """A whole request must be answered (<500); raw garbage may be refused by closing."""
    if not reply and not answered:
        return
    status_line = reply.split(b"\r\n", 1)[0]
    assert status_line.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), status_line
    assert int(status_line.split()[1]) < 500, reply[:400]


def test_no_request_gets_a_5xx_a_traceback_or_a_hang() -> None:
    errors = LogRecords(logging.ERROR)
    logging.getLogger().addHandler(errors)

    @settings(max_examples=250, deadline=None)
    @given(method=METHODS, target=PATHS, headers=HEADERS, body=BODIES)
    def structured(
        socket_path: Path, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> None:
        lines = [f"{method} {target} HTTP/1.1", "Host: vaultd", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if "Transfer-Encoding" not in headers:
            lines.append(f"Content-Length: {len(body)}")
        check_sent(exchange(socket_path, ("\r\n".join(lines) + "\r\n\r\n").encode() + body), body)

    @settings(max_examples=150, deadline=None)
    @given(target=POSTED_TO, body=BODIES)
    def posted(socket_path: Path, target: str, body: bytes) -> None:
        head = f"POST {target} HTTP/1.1\r\nHost: vaultd\r\nConnection: close\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"
        check_sent(exchange(socket_path, head.encode() + body), body)

    @settings(max_examples=120, deadline=None)
    @given(raw=st.binary(max_size=400))
    def garbage(socket_path: Path, raw: bytes) -> None:
        with connect(socket_path) as sock:
            sock.sendall(raw)
            sock.shutdown(1)  # SHUT_WR: the server sees the end of whatever it got
            check(read_all(sock), answered=False)

    try:
        with control_server(body_deadline=2.0) as socket_path:
            structured(socket_path)
            posted(socket_path)
            garbage(socket_path)
    finally:
        logging.getLogger().removeHandler(errors)
    assert errors.summary()[:3] == []
