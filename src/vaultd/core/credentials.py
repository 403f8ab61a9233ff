"""The credential value types passed between layers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from vaultd.secret import Secret


def iso8601(epoch: float) -> str:
    """The only timestamp shape every SDK accepts: UTC, whole seconds, capital Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def mask_key_id(access_key_id: str) -> str:
    """Key ids are not secret, but showing only the tail is enough to tell keys apart."""
    return "****" + access_key_id[-4:]


@dataclass(frozen=True)
class AccessKeys:
    """Long-lived IAM user keys, as stored in the keyring."""

    access_key_id: str
    secret_access_key: Secret = field(repr=False)


@dataclass(frozen=True)
class Credentials:
    """Temporary STS credentials with the time they were minted and the time they lapse."""

    access_key_id: str
    secret_access_key: Secret = field(repr=False)
    session_token: Secret = field(repr=False)
    expiration: float
    issued: float
    # What these credentials are, for status and the IMDS identity document.
    arn: str = ""
    # When the MFA'd credentials these were minted from lapse: after that, renewing them
    # needs a new code. None when no MFA session is involved.
    source_expiration: float | None = None

    @property
    def lifetime(self) -> float:
        return self.expiration - self.issued

    def remaining(self, now: float) -> float:
        return self.expiration - now


Source = AccessKeys | Credentials
