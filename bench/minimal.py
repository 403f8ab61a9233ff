"""The reference server for `make bench`: the least a stdlib asyncio server can do for IMDS.

One asyncio.Protocol: split the request head off the buffer, issue IMDSv2 tokens on PUT,
check the token on every GET (an HMAC of its expiry, as vaultd's; a token checked once is
remembered, as vaultd does) and answer the credentials path with a prepared document of the
same size as vaultd's. No guards, no owner check, no Date header: it is the floor vaultd is
measured against. It imports nothing from vaultd, so the yardstick stays the same whatever
vaultd's code does, and before/after runs on two versions compare.

Run: `python bench/minimal.py BODY_BYTES` prints `port N` and serves until killed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import sys
import time

TOKEN_HEADER = b"x-aws-ec2-metadata-token:"
TTL_HEADER = b"x-aws-ec2-metadata-token-ttl-seconds:"


def reply(status: bytes, body: bytes, close: bool) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return (
        b"HTTP/1.1 " + status + b"\r\nServer: EC2ws\r\nContent-Type: text/plain\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body
    )


def header(head: bytes, name: bytes) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        if line[: len(name)].lower() == name:
            return line[len(name) :].strip().decode("latin-1")
    return None


class Tokens:
    """The token scheme at its plainest: expiry + HMAC-SHA256(expiry), base64url."""

    def __init__(self) -> None:
        self.key = secrets.token_bytes(32)
        self.checked: dict[str, int] = {}

    def issue(self, ttl: int) -> str:
        expiry = (int(time.time()) + ttl).to_bytes(8, "big")
        mac = hmac.digest(self.key, expiry, hashlib.sha256)[:24]
        return base64.urlsafe_b64encode(expiry + mac).decode().rstrip("=")

    def valid(self, token: str) -> bool:
        expiry = self.checked.get(token)
        if expiry is None:
            try:
                raw = base64.urlsafe_b64decode(token + "=")
            except ValueError:
                return False
            mac = hmac.digest(self.key, raw[:8], hashlib.sha256)[:24]
            if len(raw) != 32 or not hmac.compare_digest(raw[8:], mac):
                return False
            expiry = self.checked[token] = int.from_bytes(raw[:8], "big")
        return expiry > time.time()


class Minimal(asyncio.Protocol):
    def __init__(self, tokens: Tokens, body: bytes) -> None:
        self.tokens = tokens
        self.body = body
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer and self.transport is not None:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            close = b"connection: close" in head.lower()
            self.transport.write(self.answer(head, close))
            if close:
                self.transport.close()

    def answer(self, head: bytes, close: bool) -> bytes:
        if head.startswith(b"PUT "):
            ttl = header(head, TTL_HEADER)
            return reply(b"200 OK", self.tokens.issue(int(ttl or "60")).encode(), close)
        token = header(head, TOKEN_HEADER)
        if token is None or not self.tokens.valid(token):
            return reply(b"401 Unauthorized", b"", close)
        if head.startswith(b"GET /latest/meta-data/iam/security-credentials/ "):
            return reply(b"200 OK", b"BenchRole", close)
        return reply(b"200 OK", self.body, close)


async def serve(size: int) -> None:
    tokens = Tokens()
    body = b"x" * size
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Minimal(tokens, body), "127.0.0.1", 0)
    print("port", server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
