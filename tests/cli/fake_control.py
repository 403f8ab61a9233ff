"""A stand-in for the daemon's control socket: answers fixed JSON documents over HTTP on a
Unix socket, in a thread, so that the command line can be shown documents a real daemon would
not send (a status missing a field, say), or an answer cut short by a daemon that stopped."""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

Answer = tuple[int, dict[str, Any]]
# {(method, path): answer}, or a list of answers given in turn (the last one from then on),
# or raw bytes: all that is sent before the connection is closed (a daemon gone mid-call).
Answers = Mapping[tuple[str, str], Answer | list[Answer] | bytes]

# A status document as the daemon sends it while serving master.
SERVING_STATUS: dict[str, Any] = {
    "active": "master",
    "role": "DeveloperRole",
    "role_arn": "arn:aws:iam::222233334444:role/DeveloperRole",
    "region": None,
    "state": "ok",
    "message": "serving master",
    "credentials": {
        "access_key_id": "ASIA...MPLE",
        "arn": "arn:aws:sts::222233334444:assumed-role/DeveloperRole/vaultd-test",
        "issued": "2026-11-30T05:00:00Z",
        "expires": "2026-11-30T06:00:00Z",
        "expires_in": 3000,
        "refresh_at": "2026-11-30T05:45:00Z",
    },
    "mfa": None,
    "last_error": None,
    "next_retry": None,
    "exec_tokens": {"master": 1},
    "listeners": ["127.0.0.1:9169"],
    "endpoint": "http://127.0.0.1:9169/",
}


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    answers: Answers
    received: list[tuple[str, str, Any]]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append((self.command, self.path, json.loads(body or b"null")))
        answer = self.server.answers.get(
            (self.command, self.path), (404, {"error": "not_found", "message": "no such path"})
        )
        if isinstance(answer, bytes):
            self.wfile.write(answer)
            self.close_connection = True
            return
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        status, doc = answer
        raw = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeControl:
    """Serve `answers` ({(method, path): (status, document)}, a list of them given in turn,
    or the raw bytes of an answer cut short) on the socket at `path`; `received` lists each
    request's method, path and JSON body."""

    def __init__(self, path: Path, answers: Answers) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = path
        self.server = _Server(str(path), _Handler)
        self.server.answers = answers
        self.server.received = []
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeControl:
        self.thread.start()
        return self

    @property
    def received(self) -> list[tuple[str, str, Any]]:
        return self.server.received

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        self.path.unlink(missing_ok=True)
