"""Errors a person can act on.

Every failure that crosses a layer is a VaultdError with a stable machine-readable `code`
(what the control API returns and `vaultd status` shows) and a one-sentence `message` that
says what to do. Messages never contain secrets: they are built from profile names, ARNs and
key ids only.
"""

from __future__ import annotations

# The control client imports this module: typing costs milliseconds and only mypy needs it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar


class VaultdError(Exception):
    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}


class ConfigError(VaultdError):
    code = "config_error"
    http_status = 400


class UnknownProfile(ConfigError):
    code = "unknown_profile"
    http_status = 404


class NoProfile(VaultdError):
    code = "no_profile"
    http_status = 409


class NoKeys(VaultdError):
    code = "no_keys"
    http_status = 409


class KeyringError(VaultdError):
    code = "keyring_error"
    http_status = 503


class KeyringLocked(KeyringError):
    code = "keyring_locked"


class MfaRequired(VaultdError):
    code = "mfa_required"
    http_status = 409

    def __init__(
        self, message: str, *, profile: str, serial: str, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.profile = profile
        self.serial = serial
        # Why a person is asked beyond "a code is needed": the code source that failed
        # (mfa_process, ykman), or STS refusing the last code. Said on the status line.
        self.reason = reason

    def to_json(self) -> dict[str, str]:
        return {**super().to_json(), "profile": self.profile, "mfa_serial": self.serial}


class MfaRejected(VaultdError):
    """STS said the code was wrong; the MFA request stays open."""

    code = "mfa_rejected"
    http_status = 422


class BadMfaCode(VaultdError):
    """The code is malformed or was already used; STS was not asked."""

    code = "bad_mfa_code"
    http_status = 400


class NoPendingMfa(VaultdError):
    """No MFA request is open: a code sent now has nothing to answer."""

    code = "no_pending_mfa"
    http_status = 409


class MfaRequestChanged(NoPendingMfa):
    """The request a code was typed for is no longer the open one: the open request is for
    another MFA device. The code was not sent to STS, where it would count as a failure
    against the other device."""

    code = "mfa_request_changed"


class StsError(VaultdError):
    code = "sts_error"
    http_status = 502

    def __init__(self, message: str, sts_code: str | None = None) -> None:
        super().__init__(message)
        self.sts_code = sts_code


class StaleCredentials(VaultdError):
    """A source answered with credentials that are already expired or already due for
    renewal: retried with backoff like an STS failure, never in a loop."""

    code = "stale_credentials"
    http_status = 502


class SigninCacheUnwritable(VaultdError):
    """A sign-in is due for a refresh and the AWS CLI's cache directory cannot take the
    answer, so it is not sent (it would spend the refresh token): retried with backoff, as
    the fix (space, permissions) changes nothing vaultd watches."""

    code = "signin_cache_unwritable"
    http_status = 503


class BadRequest(VaultdError):
    code = "bad_request"
    http_status = 400


class LoginRequired(VaultdError):
    """A person must sign in again with the AWS CLI (`aws login`); vaultd cannot do it for
    them. `command` is the one command line that fixes it; nothing is retried against the
    network until the CLI's cache changes."""

    code = "login_required"
    http_status = 409

    def __init__(self, message: str, *, profile: str, command: str) -> None:
        super().__init__(message)
        self.profile = profile
        self.command = command

    def to_json(self) -> dict[str, str]:
        return {**super().to_json(), "profile": self.profile, "command": self.command}


class SsoLoginRequired(LoginRequired):
    """The IAM Identity Center token is expired and cannot be refreshed: `aws sso login`."""

    code = "sso_login_required"


def reason_of(exc: BaseException) -> str:
    """Why a fetch failed, as the system words it, without Python's wrapping.

    urllib wraps a socket's error in URLError, whose text is `<urlopen error [Errno -3]
    Temporary failure in name resolution>`; a person needs only "Temporary failure in name
    resolution". The wrapped error (`URLError.reason`) is unwrapped, and an OSError gives its
    strerror ("Connection refused"); anything else gives its own text, or its type's name
    when it has none (a bare TimeoutError). Never raises."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        exc = reason
    elif isinstance(reason, str) and reason:
        return reason
    strerror = getattr(exc, "strerror", None)
    if isinstance(strerror, str) and strerror:
        return strerror
    return str(exc) or type(exc).__name__
