"""Talking to the daemon's control socket with the standard library only.

`vaultd switch`, `mfa` and `status` import nothing heavier than this module, so they start
in a few milliseconds: one HTTP/1.1 exchange over the Unix socket, written here with `json`
and `socket` rather than `http.client`, which imports `ssl` and `email` (issue 14).

Before a byte is sent the socket is verified (`verify_socket`): a directory another local
user can write to, or a server running as another uid, could otherwise receive MFA codes and
serve an attacker's keys to `switch`, `mfa`, `export` and `exec`.
"""

from __future__ import annotations

# `_socket`, not `socket`: the standard library's socket module wraps this C module, and at
# import it turns the constants into enums (IntEnum._convert_), a seventh of what every
# control command costs (issue 14). The client needs only the C socket type, of which
# socket.socket is a subclass, and the plain constants.
import _socket
import json
import os
import stat
import struct
import sys

from vaultd.errors import ConfigError, reason_of
from vaultd.untrusted import NestedTooDeeply, json_value

# typing and pathlib cost milliseconds to import and are needed only by the type checker:
# paths are taken as str or any os.PathLike (the control commands pass the str that
# `vaultd.sources.control_socket` gives, the daemon and tests a pathlib.Path).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, TypeAlias

    StrPath: TypeAlias = str | os.PathLike[str]

# The longest the daemon lets a program it runs for a call take (credential_process,
# mfa_process, ykman: core.mfa.COMMAND_TIMEOUT is this). A call that may run one (switch,
# mfa, refresh, exec, export) waits a little past it, so that the daemon's own reason
# ("credential_process did not finish within 60s") arrives rather than the client's timeout.
SOURCE_DEADLINE = 60.0
CALL_TIMEOUT = SOURCE_DEADLINE + 10.0
# A status is read from memory: a daemon that takes longer is stuck (stopped, swapping).
STATUS_TIMEOUT = 10.0

# Bounds on what the daemon may answer: a status document is a few KiB.
MAX_HEAD = 16 * 1024
MAX_BODY = 4 * 1024 * 1024


class DaemonNotRunning(Exception):
    def __init__(self, path: StrPath) -> None:
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


class ClosedEarly(ConnectionError):
    """The daemon closed the connection before its answer was complete: it stopped (SIGTERM,
    SIGKILL, a crash) or restarted while the call was in flight."""


class UntrustedSocket(ControlError):
    """The control socket failed `verify_socket`: nothing was sent to it."""

    def __init__(self, path: StrPath, reason: str) -> None:
        super().__init__(
            403,
            {
                "error": "untrusted_socket",
                "message": f"refusing the control socket {path}: {reason} "
                "(another user may have put it there; nothing was sent)",
            },
        )


def peer_credentials(sock: Any) -> tuple[int, int] | None:
    """(pid, uid) of the process at the other end of a connected Unix socket (a socket or
    asyncio's TransportSocket), as the kernel recorded them at connect time (Linux
    SO_PEERCRED; macOS LOCAL_PEERCRED and LOCAL_PEERPID). None where the OS does not tell,
    or for another socket family (the control API's tests drive it over TCP)."""
    if getattr(sock, "family", None) != _socket.AF_UNIX:
        return None
    try:
        if sys.platform.startswith("linux"):
            raw = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
            pid, uid, _ = struct.unpack("3i", raw)
            return int(pid), int(uid)
        if sys.platform == "darwin":
            # SOL_LOCAL (0): LOCAL_PEERCRED (1) is struct xucred {u_int version; uid_t uid;
            # short ngroups; gid_t groups[16]}; LOCAL_PEERPID (2) is a pid_t.
            raw = sock.getsockopt(0, 0x001, struct.calcsize("2I") + 4 * 17)
            pid = struct.unpack("i", sock.getsockopt(0, 0x002, 4))[0]
            return int(pid), int(struct.unpack_from("2I", raw)[1])
    except OSError:
        return None
    return None


def peer_uid(sock: Any) -> int | None:
    """The uid of the process at the other end of a Unix socket, where the OS tells."""
    creds = peer_credentials(sock)
    return None if creds is None else creds[1]


def directory_problem(folder: StrPath, uid: int, *, root_ok: bool) -> str | None:
    """Why `folder` cannot be trusted to hold the control socket of `uid`, or None.

    The one rule for the socket's directory, used by the daemon that makes it and every
    client before it connects: a real directory (not a symbolic link), owned by `uid` (or
    by root when `root_ok`: root can do anything anyway), and writable by nobody else, so
    no other user can have put a socket or a link in it. Raises FileNotFoundError if absent.
    """
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode):
        return f"{folder} is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return f"{folder} is not a directory"
    if info.st_uid != uid and not (root_ok and info.st_uid == 0):
        return f"{folder} belongs to uid {info.st_uid}"
    if info.st_mode & 0o022:
        return f"others can write to {folder}"
    return None


def ensure_private_dir(folder: Path) -> None:
    """Create the daemon's socket directory as 0700, or make an existing one of ours 0700.

    Raises ConfigError when it cannot be made or another user owns it (`directory_problem`).
    """
    uid = os.getuid()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.lstat()
        if stat.S_ISDIR(info.st_mode) and info.st_uid == uid and info.st_mode & 0o077:
            folder.chmod(0o700)
        problem = directory_problem(folder, uid, root_ok=False)
    except OSError as exc:
        raise ConfigError(f"cannot create the control directory {folder}: {exc.strerror}") from None
    if problem is not None:
        raise ConfigError(f"{problem}: set VAULTD_CONTROL_SOCKET elsewhere")


def verify_socket(path: StrPath, uid: int | None = None) -> None:
    """Check that `path` is a control socket only `uid` (default: ours) could have made:
    its directory passes `directory_problem` and the socket is no symbolic link.

    Raises FileNotFoundError when either is missing (no daemon) and UntrustedSocket
    otherwise. The server's own uid is checked once connected (`ControlClient`).
    """
    uid = os.getuid() if uid is None else uid
    # The directory as pathlib's `parent` names it ("." for a bare file name).
    problem = directory_problem(os.path.dirname(path) or ".", uid, root_ok=True)
    if problem is not None:
        raise UntrustedSocket(path, problem)
    if stat.S_ISLNK(os.lstat(path).st_mode):
        raise UntrustedSocket(path, "it is a symbolic link")


def _server_problem(sock: _socket.socket, uid: int) -> str | None:
    creds = peer_credentials(sock)
    if creds is None:
        # Linux and macOS always tell; elsewhere the directory check stands alone.
        return "the server's uid cannot be read" if sys.platform in ("linux", "darwin") else None
    return None if creds[1] == uid else f"its server runs as uid {creds[1]}"


def _connect(path: StrPath, timeout: float) -> _socket.socket:
    """A connection to a verified socket whose server runs as our uid."""
    uid = os.getuid()
    verify_socket(path, uid)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(os.fspath(path))
        problem = _server_problem(sock, uid)
    except OSError:
        sock.close()
        raise
    if problem is not None:
        sock.close()
        raise UntrustedSocket(path, problem)
    return sock


def _request(method: str, target: str, body: bytes | None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: vaultd", "Connection: close"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


class _Reader:
    """An HTTP/1.1 response from a socket: status, then a body framed by Content-Length,
    chunked transfer coding, or the end of the connection. Raises ClosedEarly when the
    connection ends before the response does, ValueError for one it cannot read."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def _line(self, limit: int = MAX_HEAD) -> bytes:
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > limit:
                raise ValueError("an oversized line")
            if not self._fill():
                raise ClosedEarly
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise ClosedEarly
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def response(self) -> tuple[int, bytes]:
        version, _, rest = self._line().partition(b" ")
        if not version.startswith(b"HTTP/1.") or not rest[:3].isdigit():
            raise ValueError("not an HTTP response")
        status = int(rest[:3])
        headers: dict[bytes, bytes] = {}
        while line := self._line():
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            return status, self._chunked()
        if b"content-length" in headers:
            size = int(headers[b"content-length"])
            if not 0 <= size <= MAX_BODY:
                raise ValueError("an oversized body")
            return status, self._exactly(size)
        while len(self.buffer) <= MAX_BODY and self._fill():
            pass
        return status, self.buffer[:MAX_BODY]

    def _chunked(self) -> bytes:
        body = b""
        while size := int(self._line().split(b";")[0], 16):
            if len(body) + size > MAX_BODY:
                raise ValueError("an oversized body")
            body += self._exactly(size)
            self._line()
        while self._line():  # trailers
            pass
        return body


def with_mfa_code(body: dict[str, Any], code: str | None) -> dict[str, Any]:
    """A control request's `body` with the MFA code a person gave (`mfa_code`), if any: the
    key the daemon reads on switch, credentials, exec-tokens and console-credentials."""
    return body if code is None else {**body, "mfa_code": code}


class ControlClient:
    """Calls to the daemon's control API on the Unix socket at `path`.

    Each call makes one connection, waits up to `timeout` seconds, and returns the JSON
    object answered. Raises DaemonNotRunning when nothing listens there, UntrustedSocket when
    the socket fails its checks, and ControlError for an error answered (or a failed
    exchange: 502, 504).
    """

    def __init__(self, path: StrPath, timeout: float = CALL_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One exchange; `timeout` (seconds) narrows the client's own for this call."""
        payload = json.dumps(body).encode() if body is not None else None
        timeout = self.timeout if timeout is None else min(timeout, self.timeout)
        try:
            sock = _connect(self.path, timeout)
            try:
                sock.sendall(_request(method, path, payload))
                status, raw = _Reader(sock).response()
            finally:
                sock.close()  # a C socket: no `with`
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            raise DaemonNotRunning(self.path) from None
        except TimeoutError:
            raise ControlError(
                504,
                {"error": "timeout", "message": f"vaultd did not answer in {timeout:.0f}s"},
            ) from None
        except PermissionError as exc:
            message = f"cannot reach vaultd's control socket {self.path}: {exc.strerror}"
            raise ControlError(502, {"error": "control_failed", "message": message}) from None
        except ConnectionError:
            # Connected, then the other end went away before a whole answer: the end of the
            # stream (ClosedEarly), or a reset or broken pipe from a daemon killed outright.
            # (A refused connection, no daemon at all, was caught above.) Not a malformed
            # answer: say what happened, and where to look.
            message = (
                "vaultd closed the connection before answering: it stopped or restarted "
                "(`vaultd status` tells)"
            )
            raise ControlError(502, {"error": "control_closed", "message": message}) from None
        except (OSError, ValueError) as exc:
            raise ControlError(
                502,
                {
                    "error": "control_failed",
                    "message": f"talking to vaultd failed: {reason_of(exc)}",
                },
            ) from None
        bad = "something unexpected"
        data: object
        try:
            data = json_value(raw) if raw else {}
        except NestedTooDeeply:
            data, bad = None, "JSON nested too deeply"
        except ValueError:
            data, bad = None, "something not JSON"
        if not isinstance(data, dict):
            # Not an answer, whatever its status: the command says so rather than read on.
            data = {"error": "bad_response", "message": f"vaultd answered {bad}"}
            raise ControlError(status if status >= 400 else 502, data)
        if status >= 400:
            raise ControlError(status, data)
        return data

    def status(self) -> dict[str, Any]:
        """The daemon's status document, within STATUS_TIMEOUT seconds."""
        return self.call("GET", "/v1/status", timeout=STATUS_TIMEOUT)

    def switch(self, profile: str, mfa_code: str | None = None) -> dict[str, Any]:
        return self.call("POST", "/v1/switch", with_mfa_code({"profile": profile}, mfa_code))

    def mfa(self, code: str, serial: str | None = None) -> dict[str, Any]:
        """Answer the open MFA request with `code`. `serial`: the MFA device the person was
        asked about (a prompt showed it), so that the daemon refuses the code, unsent, if
        the open request is now for another device (`mfa_request_changed`); None answers
        whatever request is open (`vaultd mfa CODE`)."""
        body = {"code": code} if serial is None else {"code": code, "serial": serial}
        return self.call("POST", "/v1/mfa", body)
