"""Where a header carries a secret (the exec token on /vaultd-ecs/, the relay token on
/vaultd-relay/), a value that is not UTF-8 is refused as a wrong token is: at once, the same
answer, and no traceback in the log. A real daemon, raw sockets, the byte 0xE9."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from urllib.parse import urlsplit

from tests.e2e.harness import Daemon, run_vaultd
from vaultd.client import ControlClient

ECS = b"/vaultd-ecs/v1/credentials"
RELAY = b"/vaultd-relay/v1/credentials"
RELAY_TOKEN = "relay-token-" + "r" * 20


def exchange(port: int, path: bytes, authorization: bytes) -> bytes:
    """One GET of `path` with `authorization` as the Authorization header's raw bytes; the
    whole answer, without its Date header (the only part that differs between two)."""
    request = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: %s\r\n" % (
        path,
        port,
        authorization,
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request + b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):  # a hung request fails here, on the timeout
            answer += chunk
    return re.sub(rb"\r\nDate: [^\r]*", b"", answer)


def test_a_secret_header_that_is_not_utf8_is_refused_like_a_wrong_token(
    user_keys: tuple[str, str], daemon: Daemon, isolated: Path
) -> None:
    token_file = isolated / "relay.token"
    token_file.write_text(RELAY_TOKEN)
    daemon.args = ("--relay-token-file", str(token_file))
    daemon.start()
    assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0
    grant = ControlClient(daemon.control_socket()).call(
        "POST", "/v1/exec-tokens", {"profile": "master"}
    )
    token = str(grant["token"]).encode()
    gid = token.partition(b".")[0]
    port = urlsplit(daemon.endpoint).port
    assert port is not None
    for path, good, wrong in (
        (ECS, token, gid + b".wrong"),
        (RELAY, RELAY_TOKEN.encode(), b"wrong"),
    ):
        refused = exchange(port, path, wrong)
        assert refused.startswith(b"HTTP/1.1 403"), refused
        for undecodable in (b"a.\xe9", gid + b".\xe9", b"\xe9", good + b"\xe9", b"\xff\xfe"):
            assert exchange(port, path, undecodable) == refused, (path, undecodable)
        assert exchange(port, path, good).startswith(b"HTTP/1.1 200")
    log = daemon.log()
    assert "Traceback" not in log and "Task exception" not in log, log
