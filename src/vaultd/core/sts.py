"""The one way vaultd calls STS: clients from an injected factory, every call counted, and
every failure translated into an error a person can act on, without echoing secrets.

STS clients are always handed explicit credentials, so vaultd's own calls can never fall
back to the default chain and ask IMDS, which is to say vaultd itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

import botocore.config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConfigParseError,
    ConnectTimeoutError,
    EndpointConnectionError,
)

from vaultd.core import endpoints
from vaultd.core.config import unreadable
from vaultd.core.credentials import Credentials, Source, from_sts
from vaultd.errors import MfaRejected, StsError, VaultdError

# STS's answers that mean "these (cached) credentials no longer work".
STALE_SESSION_CODES = frozenset({"ExpiredToken", "InvalidClientTokenId", "ExpiredTokenException"})


class StsFactory(Protocol):
    """An STS client signed with `source`, for `region`."""

    def __call__(self, source: Source, region: str) -> Any: ...


class Boto3StsFactory:
    """STS (and IAM) clients on one shared botocore session, endpoint chosen by botocore's
    own config (AWS_ENDPOINT_URL_STS, `sts_regional_endpoints`, ...)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session = endpoints.new_session()  # not the whole endpoints.json in memory
        # Short, bounded calls: a refresh that hangs helps nobody, the broker retries.
        self._config = botocore.config.Config(
            connect_timeout=3, read_timeout=10, retries={"total_max_attempts": 2}
        )

    def __call__(self, source: Source, region: str) -> Any:
        return self.client("sts", source, region)

    def client(self, service: str, source: Source, region: str) -> Any:
        """A botocore client for `service` signed with `source` and nothing else."""
        token = source.session_token.reveal() if isinstance(source, Credentials) else None
        with self._lock:  # botocore sessions are not safe to create clients from in parallel
            return self._session.create_client(
                service,
                region_name=region,
                aws_access_key_id=source.access_key_id,
                aws_secret_access_key=source.secret_access_key.reveal(),
                aws_session_token=token,
                config=self._config,
            )


def failure(exc: Exception, doing: str) -> VaultdError:
    """Map a botocore failure to an error a person can act on, without echoing secrets.

    `doing` completes "STS refused to ...": e.g. "assume ROLE_ARN for 'master'". STS says a
    code was wrong only in the message text ("MultiFactorAuthentication failed ..."), so
    that is what marks an MfaRejected. A config file botocore cannot parse (it reads them
    again to make a client) is a ConfigError naming the file, as `config.unreadable` says it.
    """
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", "")).strip()
        if "MultiFactorAuthentication" in message or "MFA" in message:
            return MfaRejected(f"STS rejected the MFA code ({doing}): wait for the next code")
        if code in ("InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException"):
            return StsError(f"STS rejected the credentials used to {doing} ({code})", code)
        detail = f": {message}" if message else ""
        return StsError(f"STS refused to {doing} ({code}){detail}", code)
    if isinstance(exc, ConfigParseError):
        # botocore reads the config files again to make the client: the file is at fault.
        return unreadable(str(exc.kwargs.get("path", "the AWS config file")), exc)
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return StsError(f"cannot reach STS to {doing}: {type(exc).__name__}")
    if isinstance(exc, BotoCoreError):
        return StsError(f"STS call failed ({doing}): {type(exc).__name__}")
    return StsError(f"STS call failed ({doing}): {type(exc).__name__}")


class Sts:
    """Calls that return credentials (GetSessionToken, AssumeRole, GetFederationToken).

    `calls` counts every call made, successful or not: `vaultd status` shows it and the
    benchmark reads it.
    """

    def __init__(self, factory: StsFactory, clock: Callable[[], float]) -> None:
        self.factory = factory
        self.clock = clock
        self.calls = 0

    def credentials(
        self, operation: str, source: Source, region: str, doing: str, **params: Any
    ) -> Credentials:
        """Call `operation` (botocore's snake_case name) with `params`, signed by `source`.

        `issued` is the clock before the call, so a set is never thought younger than it
        is. The ARN is the assumed role's, when STS names one. Raises what `failure` maps
        the botocore error to (StsError, MfaRejected).
        """
        issued = self.clock()
        self.calls += 1
        try:
            response = getattr(self.factory(source, region), operation)(**params)
            arn = str(response.get("AssumedRoleUser", {}).get("Arn", ""))
            return from_sts(response["Credentials"], issued, arn)
        except Exception as exc:
            raise failure(exc, doing) from None
