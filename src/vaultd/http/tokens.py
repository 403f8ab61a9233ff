"""IMDSv2 session tokens: stateless, so a flood of PUTs costs no memory.

A token is its expiry plus an HMAC of that expiry under a key that lives only in this
process: nothing is stored, any token from an earlier daemon is simply invalid, and checking
one is a constant-time compare.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable

MIN_TTL = 1
MAX_TTL = 21600
# Real tokens are 56 characters; anything far longer is not ours and not worth decoding.
MAX_TOKEN_LENGTH = 100
_TTL = re.compile(r"[0-9]{1,6}")
_MAC_BYTES = 24
# 8 bytes of expiry + the MAC, base64url without padding: exactly 43 characters.
_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def parse_ttl(value: str | None) -> int | None:
    """The requested TTL, or None when it is missing or not an integer in 1..21600."""
    if value is None or not _TTL.fullmatch(value):
        return None
    ttl = int(value)
    return ttl if MIN_TTL <= ttl <= MAX_TTL else None


class Tokens:
    def __init__(self, clock: Callable[[], float], key: bytes | None = None) -> None:
        self.clock = clock
        self._key = key if key is not None else secrets.token_bytes(32)

    def _mac(self, expiry: bytes) -> bytes:
        return hmac.new(self._key, expiry, hashlib.sha256).digest()[:_MAC_BYTES]

    def issue(self, ttl: int) -> str:
        expiry = (int(self.clock()) + ttl).to_bytes(8, "big")
        return base64.urlsafe_b64encode(expiry + self._mac(expiry)).decode("ascii").rstrip("=")

    def remaining(self, token: str) -> int | None:
        """Seconds the token has left, or None when it is not one of ours or has expired."""
        if len(token) > MAX_TOKEN_LENGTH or not _SHAPE.fullmatch(token):
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=")
        except (binascii.Error, ValueError):
            return None
        if len(raw) != 8 + _MAC_BYTES:
            return None
        expiry, mac = raw[:8], raw[8:]
        if not hmac.compare_digest(mac, self._mac(expiry)):
            return None
        left = int.from_bytes(expiry, "big") - self.clock()
        return int(left) if left > 0 else None
