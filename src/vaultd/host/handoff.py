"""Hand a secret URL to the browser without putting it on any command line.

`vaultd login`'s sign-in URL carries a SigninToken: whoever holds it has a console session
as the role for 15 minutes. A browser started with the URL as its argument (xdg-open, a
browser's launcher, `$BROWSER %s`) keeps it in argv, which every local user reads from
/proc/PID/cmdline or `ps`. Instead the browser is sent to a one-time loopback address, and
that answers the owner's browser alone with a redirect to the real URL (HTTP 302: the URL
never touches disk here, and the browser keeps it in its own, private profile, as it would
have anyway). The path is a random nonce, shown on the command line, so it is only half the
guard: any user can read it there and connect first. The other half is the owner check the
IMDS listener uses (`peer_owner`): a request from a socket of another uid gets a 404 and
the hand-off goes on waiting. Where no owner lookup exists (not Linux), the caller opens
the URL directly: macOS's `webbrowser` passes it to osascript on stdin, not in argv.
"""

from __future__ import annotations

import contextlib
import secrets
import selectors
import socket
import time
from collections.abc import Callable
from types import TracebackType

from vaultd.host.peer_owner import Address, OwnerLookup, owner_of

# Bytes of a request head read before giving up on a connection (a browser's is ~1 KiB).
HEAD_LIMIT = 16384
# Seconds between looks at whether the browser launcher has failed (`Handoff.wait`).
POLL = 0.2
# Connections held at once while their request heads arrive; past it the oldest is
# dropped, so that another user holding connections open cannot run vaultd out of files.
HELD = 64
NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nCache-Control: no-store\r\n"
    b"Connection: close\r\n\r\n"
)


def redirect(location: str) -> bytes:
    """A 302 to `location`, which the browser must not cache nor send on as a Referer."""
    return (
        "HTTP/1.1 302 Found\r\n"
        f"Location: {location}\r\n"
        "Cache-Control: no-store\r\nReferrer-Policy: no-referrer\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")


def requested_path(head: bytes) -> str | None:
    """The request-target of a `GET target HTTP/1.x` request head, or None."""
    line = head.split(b"\r\n", 1)[0].split(b" ")
    if len(line) != 3 or line[0] != b"GET" or not line[2].startswith(b"HTTP/1."):
        return None
    return line[1].decode("latin-1")


class Handoff:
    """A one-time loopback address (`url`) that redirects the owner's browser to `target`.

    `uid` is the owner (the browser runs as them); `lookup` finds who owns a connection's
    client socket. `clock` gives seconds (monotonic). Use as a context manager; `wait`
    serves until the hand-off is done or `timeout` seconds pass. Raises OSError when no
    loopback port can be bound."""

    def __init__(
        self,
        target: str,
        lookup: OwnerLookup,
        uid: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.lookup = lookup
        self.uid = uid
        self.clock = clock
        self.refused = 0  # requests answered 404: another uid, or not the nonce
        self._nonce = secrets.token_urlsafe(24)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._address: Address = self._listener.getsockname()[:2]
        self._listener.setblocking(False)
        self.url = f"http://127.0.0.1:{self._address[1]}/{self._nonce}"

    def __enter__(self) -> Handoff:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._listener.close()

    def wait(self, timeout: float, given_up: Callable[[], bool] = lambda: False) -> bool:
        """Serve until the owner's browser has been redirected (True), or `timeout` seconds
        pass or `given_up()` says no browser will come (False; it is asked at least every
        `POLL` seconds). Several connections may be open at once (browsers preconnect, and
        ask for /favicon.ico); each has until the deadline to send its request head."""
        deadline = self.clock() + timeout
        heads: dict[socket.socket, tuple[bytes, Address]] = {}
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            try:
                while (left := deadline - self.clock()) > 0 and not given_up():
                    for key, _ in selector.select(min(left, POLL)):
                        if key.fileobj is self._listener:
                            self._accept(selector, heads)
                        elif isinstance(key.fileobj, socket.socket) and self._read(
                            selector, heads, key.fileobj
                        ):
                            return True
                return False
            finally:
                for conn in heads:
                    conn.close()

    def _accept(
        self, selector: selectors.BaseSelector, heads: dict[socket.socket, tuple[bytes, Address]]
    ) -> None:
        try:
            conn, peer = self._listener.accept()
        except (BlockingIOError, ConnectionError):
            return
        except OSError:  # out of files (EMFILE): wait a moment rather than spin
            time.sleep(POLL / 4)
            return
        if len(heads) >= HELD:
            oldest = next(iter(heads))
            selector.unregister(oldest)
            del heads[oldest]
            oldest.close()
        conn.setblocking(False)
        heads[conn] = (b"", peer[:2])
        selector.register(conn, selectors.EVENT_READ)

    def _read(
        self,
        selector: selectors.BaseSelector,
        heads: dict[socket.socket, tuple[bytes, Address]],
        conn: socket.socket,
    ) -> bool:
        """Read from `conn`; once its head is whole, answer it. True when it was the owner's
        request for the nonce, answered with the redirect."""
        head, peer = heads[conn]
        try:
            chunk = conn.recv(4096)
        except BlockingIOError:
            return False
        except OSError:
            chunk = b""
        head += chunk
        if chunk and b"\r\n\r\n" not in head and len(head) < HEAD_LIMIT:
            heads[conn] = (head, peer)
            return False
        selector.unregister(conn)
        del heads[conn]
        with conn:
            # Only a request for the nonce costs an owner lookup (a flood of others does
            # not), asked while the client socket is open: the lookup finds live sockets.
            done = (
                requested_path(head) == f"/{self._nonce}"
                and owner_of(self.lookup, peer, self._address) == self.uid
            )
            with contextlib.suppress(OSError):
                conn.setblocking(True)
                conn.settimeout(2)
                conn.sendall(redirect(self.target) if done else NOT_FOUND)
            if not done:
                self.refused += 1
            return done
