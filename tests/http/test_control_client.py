"""The control client's own HTTP/1.1 reading: Content-Length, chunked, until close, answers
it must refuse rather than trust, and a daemon that goes away before it has answered."""

from __future__ import annotations

import os
import select
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from vaultd.client import ClosedEarly, ControlClient, ControlError, _Reader

BODY = b'{"state": "ok"}'


def read(raw: bytes) -> tuple[int, bytes]:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(raw)
        theirs.shutdown(socket.SHUT_WR)
        return _Reader(ours).response()


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n" + BODY + b"trailing junk",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n"
        + BODY[:5]
        + b"\r\na;ext=1\r\n"
        + BODY[5:]
        + b"\r\n0\r\nX-Trailer: 1\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n" + BODY,
    ],
)
def test_framings(raw: bytes) -> None:
    assert read(raw) == (200, BODY)


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000,
    ],
)
def test_malformed_answers_raise_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError, match=r"."):  # ControlClient: ControlError 502
        read(raw)


def test_an_oversized_line_is_not_a_connection_closed_early() -> None:
    with pytest.raises(ValueError, match=r"^an oversized line$"):
        read(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n")


# Where a daemon that stops mid-call may leave its answer: before a byte, in the status line,
# in the headers, in a Content-Length body, in a chunk.
CUT_SHORT = [
    b"",
    b"HTTP/1.1 200",
    b"HTTP/1.1 200 OK\r\nContent-Le",
    b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n" + BODY,
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nf\r\n" + BODY[:5],
]
CUT_IDS = ["nothing", "status", "headers", "body", "chunk"]


@pytest.mark.parametrize("raw", CUT_SHORT, ids=CUT_IDS)
def test_an_answer_cut_short_is_the_connection_closed_early(raw: bytes) -> None:
    with pytest.raises(ClosedEarly):
        read(raw)


CLOSED = (
    "vaultd closed the connection before answering: it stopped or restarted (`vaultd status` tells)"
)


@contextmanager
def serving_once(path: Path, answer: Callable[[socket.socket], None]) -> Iterator[None]:
    """A control socket at `path` whose first connection is handed to `answer`, then closed."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)

    def accept() -> None:
        conn, _ = server.accept()
        with conn:
            answer(conn)

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        yield
    finally:
        thread.join(5)
        server.close()


def _cut_after(raw: bytes) -> Callable[[socket.socket], None]:
    def answer(conn: socket.socket) -> None:
        conn.recv(65536)  # the request, read as the daemon reads it
        conn.sendall(raw)

    return answer


def _unread(conn: socket.socket) -> None:
    # Gone with the request unread, as a daemon killed outright (SIGKILL) may go: the
    # kernel resets the connection (ECONNRESET), rather than ending it.
    select.select([conn], [], [], 5)


@pytest.mark.parametrize(
    "answer",
    [*(_cut_after(raw) for raw in CUT_SHORT), _unread],
    ids=[*CUT_IDS, "reset"],
)
def test_a_daemon_gone_mid_call_is_said_plainly(
    tmp_path: Path, answer: Callable[[socket.socket], None]
) -> None:
    """`kill` of the daemon during `vaultd switch` of a slow profile said `talking to vaultd
    failed: a truncated or oversized line`."""
    path = tmp_path / "control.sock"
    with serving_once(path, answer), pytest.raises(ControlError) as caught:
        ControlClient(path).call("POST", "/v1/switch", {"profile": "slow"})
    assert (caught.value.status, caught.value.code) == (502, "control_closed")
    assert str(caught.value) == CLOSED


def test_a_call_outwaits_the_deadline_the_daemon_gives_a_program_it_runs(tmp_path: Path) -> None:
    """A hung credential_process: the daemon gives up at its deadline and answers why; the
    client must still be waiting then, or it reports only `vaultd did not answer`."""
    from vaultd.client import ControlClient
    from vaultd.core import mfa

    client = ControlClient(tmp_path / "control.sock")
    assert client.timeout > mfa.COMMAND_TIMEOUT  # also credential_process's (core.process)


@pytest.mark.parametrize("status", [200, 500])
def test_an_answer_nested_past_the_decoders_depth_is_a_bad_response(
    tmp_path: Path, status: int
) -> None:
    """json.loads recurses once per level: a deep enough answer would raise RecursionError
    through every command instead of a one-line error."""
    from vaultd.client import ControlClient, ControlError

    body = b"[" * 200_000 + b"]" * 200_000
    path = tmp_path / "control.sock"

    def answer(conn: socket.socket) -> None:
        conn.recv(65536)
        head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n\r\n"
        conn.sendall(head.encode() + body)

    with serving_once(path, answer), pytest.raises(ControlError) as caught:
        ControlClient(path).call("GET", "/v1/status")
    assert caught.value.status == (status if status >= 400 else 502)
    assert caught.value.payload == {
        "error": "bad_response",
        "message": "vaultd answered JSON nested too deeply",
    }


def test_a_status_from_a_hung_daemon_gives_up_at_the_status_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopped daemon (SIGSTOP) still accepts: status waited the full call timeout (70 s),
    meant for calls that run programs, though a status is read from memory."""
    from vaultd import client

    monkeypatch.setattr(client, "STATUS_TIMEOUT", 1.0)  # 10 s in use: the rule, not the figure
    path = tmp_path / "control.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen(1)  # accepted by the kernel, never answered
        with pytest.raises(client.ControlError) as caught:
            client.ControlClient(path).status()
    assert str(caught.value) == "vaultd did not answer in 1s"
    assert client.ControlClient(path).timeout == client.CALL_TIMEOUT  # other calls: unchanged


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as another uid needs root")
def test_a_socket_behind_a_directory_we_may_not_enter_is_one_plain_line(tmp_path: Path) -> None:
    from vaultd.client import ControlClient, ControlError

    root_only = tmp_path / "runtime"
    root_only.mkdir(mode=0o700)
    path = root_only / "vaultd" / "control.sock"
    os.setegid(65534)
    os.seteuid(65534)
    try:
        with pytest.raises(ControlError) as caught:
            ControlClient(path).status()
    finally:
        os.seteuid(0)
        os.setegid(0)
    assert str(caught.value) == f"cannot reach vaultd's control socket {path}: Permission denied"
