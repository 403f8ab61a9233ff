"""IMDSv2 session tokens: stateless, so a flood of PUTs costs no memory.

A token is its expiry (epoch milliseconds, so that a token lives the whole TTL it was asked
for, as real IMDS's do, whatever the fraction of the second it was issued in) plus an HMAC
of that expiry under a key that lives only in this process: nothing is stored per issued
token, any token from an earlier daemon is simply invalid, and checking one is a
constant-time compare.

SDKs send the same token on every request until it nears expiry (boto3 and the AWS CLI ask
for 21,600 s), so a token whose MAC has been checked once is remembered, with its expiry,
in a memo of at most `MEMO_SIZE` entries that is emptied when full: every GET on the hot path
then costs a dictionary lookup, not a base64 decode and an HMAC. Only tokens that passed the
check enter the memo, and a hit still tests the expiry against the clock.
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
# Distinct valid tokens remembered; one per SDK process in practice, so this is generous.
MEMO_SIZE = 1024


def parse_ttl(value: str | None) -> int | None:
    """The requested TTL, or None when it is missing or not an integer in 1..21600."""
    if value is None or not _TTL.fullmatch(value):
        return None
    ttl = int(value)
    return ttl if MIN_TTL <= ttl <= MAX_TTL else None


class Tokens:
    """Issues and checks IMDSv2 tokens (`X-aws-ec2-metadata-token`) against `clock`
    (epoch seconds) under `key` (32 random bytes unless given, for tests)."""

    def __init__(self, clock: Callable[[], float], key: bytes | None = None) -> None:
        self.clock = clock
        self._key = key if key is not None else secrets.token_bytes(32)
        self._memo: dict[str, float] = {}  # verified token -> expiry (epoch seconds)

    @property
    def remembered(self) -> int:
        """How many checked tokens are remembered now (never more than `MEMO_SIZE`)."""
        return len(self._memo)

    def _mac(self, expiry: bytes) -> bytes:
        return hmac.digest(self._key, expiry, hashlib.sha256)[:_MAC_BYTES]

    def issue(self, ttl: int) -> str:
        """A token valid for `ttl` seconds from now."""
        expiry = (round(self.clock() * 1000) + ttl * 1000).to_bytes(8, "big")
        return base64.urlsafe_b64encode(expiry + self._mac(expiry)).decode("ascii").rstrip("=")

    def remaining(self, token: str) -> int | None:
        """Seconds the token has left, or None when it is not one of ours or has expired."""
        expiry_at = self._memo.get(token)
        if expiry_at is None:
            expiry_at = self._verify(token)
            if expiry_at is None:
                return None
        left = expiry_at - self.clock()
        return int(left) if left > 0 else None

    def _verify(self, token: str) -> float | None:
        """The expiry a well-formed token of ours carries (remembered), else None."""
        if len(token) > MAX_TOKEN_LENGTH or not _SHAPE.fullmatch(token):
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=")
        except (binascii.Error, ValueError):
            return None
        if len(raw) != 8 + _MAC_BYTES:
            return None
        if base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=") != token:
            return None  # the last character's two spare bits set: one token, one spelling
        expiry, mac = raw[:8], raw[8:]
        if not hmac.compare_digest(mac, self._mac(expiry)):
            return None
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        expiry_at = self._memo[token] = int.from_bytes(expiry, "big") / 1000
        return expiry_at
