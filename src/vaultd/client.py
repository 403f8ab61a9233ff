"""Talking to the daemon's control socket with the standard library only.

`vaultd switch`, `mfa` and `status` import nothing heavier than this module, so they answer
in tens of milliseconds.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any


class DaemonNotRunning(Exception):
    def __init__(self, path: Path) -> None:
        # Say where we looked and how to look elsewhere: a daemon on another socket (the
        # demo's, a service with its own) is invisible from a shell that lacks its path.
        super().__init__(
            f"vaultd is not running (no daemon on {path}): start it with `vaultd serve`, "
            "or reach one on another socket with VAULTD_CONTROL_SOCKET=PATH or --control-socket"
        )
        self.path = path


class ControlError(Exception):
    """An error answered by the daemon: `code` is its machine-readable name."""

    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        self.status = status
        self.code = str(payload.get("error", "error"))
        self.payload = payload
        super().__init__(str(payload.get("message") or f"daemon answered {status}"))


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("vaultd", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


class ControlClient:
    def __init__(self, path: Path, timeout: float = 60.0) -> None:
        self.path = path
        self.timeout = timeout

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        conn = _UnixConnection(self.path, self.timeout)
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            raise DaemonNotRunning(self.path) from None
        except TimeoutError:
            raise ControlError(
                504,
                {"error": "timeout", "message": f"vaultd did not answer in {self.timeout:.0f}s"},
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise ControlError(
                502, {"error": "control_failed", "message": f"talking to vaultd failed: {exc}"}
            ) from None
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {"error": "bad_response", "message": "vaultd answered something not JSON"}
        if not isinstance(data, dict):
            data = {"error": "bad_response", "message": "vaultd answered something unexpected"}
        if response.status >= 400:
            raise ControlError(response.status, data)
        return data

    def status(self) -> dict[str, Any]:
        return self.call("GET", "/v1/status")

    def switch(self, profile: str, mfa_code: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"profile": profile}
        if mfa_code is not None:
            body["mfa_code"] = mfa_code
        return self.call("POST", "/v1/switch", body)

    def mfa(self, code: str) -> dict[str, Any]:
        return self.call("POST", "/v1/mfa", {"code": code})
