"""The sign-in URL's hand-off to the browser: a one-time loopback redirect, for the owner only.

The attacker runs as uid 65534 through setpriv with the system python (CI runs as root)."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator

import pytest

from vaultd.host.handoff import HELD, Handoff, requested_path
from vaultd.host.peer_owner import owner_lookup

TARGET = "https://signin.aws.amazon.com/federation?Action=login&SigninToken=secret-token"
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")
OTHER_UID = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
GET = """
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
c.request("GET", sys.argv[2])
r = c.getresponse()
print(r.status, r.getheader("Location"))
"""

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the hand-off is used where owners are known"
)


def get(url: str, path: str | None = None) -> tuple[int, str | None]:
    """GET `url` (or another `path` on its server) without following a redirect."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request("GET", path or parts.path)
        answer = conn.getresponse()
        return answer.status, answer.getheader("Location")
    finally:
        conn.close()


@pytest.fixture
def handoff() -> Iterator[Handoff]:
    with Handoff(TARGET, owner_lookup(), os.geteuid()) as h:
        yield h


def serve(handoff: Handoff, timeout: float = 20) -> tuple[threading.Thread, list[bool]]:
    done: list[bool] = []
    thread = threading.Thread(target=lambda: done.append(handoff.wait(timeout)))
    thread.start()
    return thread, done


def test_the_owners_browser_is_redirected_once_and_strays_get_404(handoff: Handoff) -> None:
    thread, done = serve(handoff)
    assert get(handoff.url, "/favicon.ico") == (404, None)
    assert get(handoff.url, "/" + "x" * 32) == (404, None)  # a guess at the nonce
    assert get(handoff.url) == (302, TARGET)
    thread.join(10)
    assert done == [True] and handoff.refused == 2
    assert "secret-token" not in handoff.url


@pytest.mark.skipif(
    os.geteuid() != 0 or SYSTEM_PYTHON is None or shutil.which("setpriv") is None,
    reason="acting as another uid needs root (CI runs as root), setpriv and /usr/bin/python3",
)
def test_another_uid_that_read_the_url_from_argv_gets_404(handoff: Handoff) -> None:
    thread, done = serve(handoff)
    port, path = (
        str(urllib.parse.urlsplit(handoff.url).port),
        urllib.parse.urlsplit(handoff.url).path,
    )
    theirs = subprocess.run(
        [*OTHER_UID, str(SYSTEM_PYTHON), "-c", GET, port, path],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert theirs.stdout.split() == ["404", "None"], theirs.stderr
    assert done == []  # still waiting for the owner's browser
    assert get(handoff.url) == (302, TARGET)
    thread.join(10)
    assert done == [True] and handoff.refused == 1


def test_it_stops_waiting_when_no_browser_will_come(handoff: Handoff) -> None:
    assert handoff.wait(30, given_up=lambda: True) is False
    ticks = iter([0.0, 0.0, 5.0])  # the deadline passes on the second look
    with Handoff(TARGET, owner_lookup(), os.geteuid(), clock=lambda: next(ticks)) as h:
        assert h.wait(1.0) is False


@pytest.mark.parametrize(
    ("head", "path"),
    [
        (b"GET /abc HTTP/1.1\r\nHost: x\r\n\r\n", "/abc"),
        (b"POST /abc HTTP/1.1\r\n\r\n", None),
        (b"GET /abc\r\n\r\n", None),  # HTTP/0.9
        (b"\x16\x03\x01garbage", None),  # TLS hello
        (b"", None),
    ],
)
def test_requested_path(head: bytes, path: str | None) -> None:
    assert requested_path(head) == path


def test_connections_held_open_by_others_cannot_stop_the_owners_browser(
    handoff: Handoff,
) -> None:
    # Another user read the port from argv and holds connections open: past HELD, the
    # oldest are dropped, so the hand-off neither runs out of files nor stops answering.
    port = urllib.parse.urlsplit(handoff.url).port
    thread, done = serve(handoff)
    idle = [socket.create_connection(("127.0.0.1", port or 0)) for _ in range(HELD + 36)]
    try:
        for conn in idle[:36]:  # the oldest, closed by the hand-off while it still waits
            conn.settimeout(5)
            assert conn.recv(1) == b""
        assert done == []
        assert get(handoff.url) == (302, TARGET)
        thread.join(10)
        assert done == [True]
    finally:
        for conn in idle:
            conn.close()
