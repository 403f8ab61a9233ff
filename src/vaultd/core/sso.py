"""IAM Identity Center (SSO) as the root of a chain, with botocore's own providers.

- `botocore.tokens.SSOTokenProvider` loads the access token the AWS CLI cached for an
  sso-session (`aws sso login`) from `~/.aws/sso/cache` and, when it has under 15 minutes
  left, refreshes it with sso-oidc CreateToken and the refresh token, writing the cache back
  in the CLI's format (the refresh token rotates; a cache left with a spent one would break
  the CLI's next refresh).
- `botocore.credentials.SSOProvider` (and its `SSOCredentialFetcher`) turns the token into
  role credentials with sso GetRoleCredentials, for both the sso-session form and the legacy
  form (`sso_start_url` in the profile, whose tokens botocore never refreshes).

A refresh is sent only when the cache directory can take its answer (`signin.write_refusal`):
when it cannot, a token that is still valid is used as it is, and an expired one is an error
that names the directory, with nothing sent.

vaultd keeps the role credentials in memory (the broker decides when to renew them), so the
fetcher's own cache is a throwaway dict; botocore's clients here are unsigned and resolve no
credentials, so nothing asks IMDS. See `signin` for the locking and the wait for a person.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from botocore.credentials import SSOProvider
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    InvalidConfigError,
    SSOTokenLoadError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)
from botocore.tokens import SSOTokenProvider, _sso_json_dumps
from botocore.utils import JSONFileCache, SSOTokenLoader

from vaultd.core.credentials import Credentials, from_sts
from vaultd.core.resolve import SigninRoot
from vaultd.core.signin import (
    CachedSignin,
    ServiceFault,
    Shape,
    misfit,
    not_refreshed,
    passing,
    reading_cache,
    unreadable,
    unrefreshed,
    utc_clock,
    write_refusal,
    zoned,
)
from vaultd.documents import NUMBER
from vaultd.errors import ConfigError, SsoLoginRequired, StsError

log = logging.getLogger("vaultd.provider")


class _Refreshing(SSOTokenProvider):  # type: ignore[misc]
    """botocore's provider, telling a service failure from a refused sign-in.

    botocore's `_refresh_access_token` turns every ClientError of CreateToken into "no
    refresh" and, the token having expired, into TokenRetrievalError ("Token has expired and
    refresh failed"), which only a person can fix; a 5xx or a throttle would sign the user
    out. Here a failure a later attempt may not meet (`signin.passing`, e.g. a 5xx, a
    throttle, no connection, a malformed answer) is a ServiceFault once the token has
    expired, retried with backoff; while the token is still valid, botocore's own rule for a
    failed refresh stands, for these failures too: the token is used as it is. A refusal
    (InvalidGrantException, InvalidClientException, UnauthorizedClientException, ...) is
    left to botocore, as are an expired registration and a missing refresh token, which it
    checks before calling."""

    def _attempt_create_token(self, token: dict[str, Any]) -> dict[str, Any] | None:
        try:
            answer: dict[str, Any] = super()._attempt_create_token(token)
        except (ClientError, BotoCoreError, ServiceFault) as exc:
            fault = passing(exc, "sso-oidc", "CreateToken")
            if fault is None:
                raise
            # The entry's dates were checked (`cached_token`) before botocore was called.
            if zoned(token["expiresAt"]) > self._now():
                log.warning("%s; the token is used as it is until it is refreshed", fault)
                return None
            raise fault from None
        return answer


class _Unrefreshed(SSOTokenProvider):  # type: ignore[misc]
    """botocore's provider, never refreshing: for a token still valid whose refreshed form the
    cache could not take. botocore then serves the cached token, as after a failed refresh."""

    def _refresh_access_token(self, token: Any) -> None:
        return None


def sso_cache_dir(home: Path | None = None) -> Path:
    """Where the AWS CLI and botocore keep IAM Identity Center tokens (not configurable)."""
    return (home or Path.home()) / ".aws" / "sso" / "cache"


def token_entry(cache_dir: Path, start_url: str, session: str | None) -> Path:
    """The file in `cache_dir` botocore keeps the token of `session` (or, legacy, of
    `start_url`) in, by SSOTokenLoader's own naming rule."""
    return cache_dir / f"{SSOTokenLoader()._generate_cache_key(start_url, session)}.json"


# What botocore's SSOTokenProvider needs to refresh a token (its _refresh_access_token).
REFRESH_KEYS = ("refreshToken", "clientId", "clientSecret", "registrationExpiresAt")

# The fields of a cached token that botocore reads (SSOTokenLoader, SSOTokenProvider and
# SSOCredentialFetcher), all strings in the AWS CLI's format; those for a refresh may be
# absent (the legacy form, an older CLI), but when present they are used as they are, and
# a wrong type would reach the service as a ParamValidationError, not as a sign-in fault.
TOKEN_SHAPE: Shape = {
    "accessToken": str,
    "expiresAt": str,
    **{f"{key}?": str for key in REFRESH_KEYS},
}

# What botocore reads of the answers (botocore's sso and sso-oidc service models).
ANSWERS: dict[tuple[str, str], Shape] = {
    ("sso", "GetRoleCredentials"): {
        "roleCredentials": {
            "accessKeyId": str,
            "secretAccessKey": str,
            "sessionToken": str,
            "expiration": NUMBER,
        }
    },
    ("sso-oidc", "CreateToken"): {"accessToken": str, "expiresIn": NUMBER, "refreshToken?": str},
}


def cached_token(
    root: SigninRoot, start_url: str, cache_dir: Path
) -> tuple[float, float | None] | None:
    """The expiry (epoch seconds, UTC) of the token the AWS CLI cached for `root`, and until
    when botocore can refresh it (its client registration's expiry; None when the entry lacks
    what a refresh needs); None when none is cached. Read only, nothing is refreshed or sent.

    The daemon checks this before every use of the cache and `vaultd doctor` reports it, so
    both reach one verdict. Dates are read as botocore's SSOTokenProvider reads them
    (`signin.zoned`).
    Raises SsoLoginRequired (`signin.unreadable`) when the entry is unreadable or ill-formed
    (a field of TOKEN_SHAPE of another type too).
    """
    with reading_cache(root):
        try:
            token = SSOTokenLoader(JSONFileCache(str(cache_dir)))(
                start_url, session_name=root.session
            )
        except SSOTokenLoadError:
            return None
        if misfit(token, TOKEN_SHAPE) is not None:
            raise unreadable(root)
        dates = [zoned(token["expiresAt"])]
        if "registrationExpiresAt" in token:
            dates.append(zoned(token["registrationExpiresAt"]))
        refreshable = all(key in token for key in REFRESH_KEYS)
        return dates[0].timestamp(), dates[-1].timestamp() if refreshable else None


def refreshable(root: SigninRoot, cached: tuple[float, float | None] | None, now: float) -> bool:
    """Whether botocore would refresh `root`'s cached token (`cached_token`) at `now`: the
    token of an sso-session, never a legacy one's (SSOTokenProvider is used only for
    sessions), holding what a refresh needs, while its client registration lasts. The
    daemon (`IdentityCenter._may_refresh`) and `vaultd doctor` decide by this one rule."""
    if cached is None or root.session is None:
        return False
    refresh_until = cached[1]
    return refresh_until is not None and refresh_until > now


class IdentityCenter(CachedSignin):
    """Role credentials for profiles whose root signs in through IAM Identity Center
    (tests and the daemon pass `signin.botocore_session` as `new_session`)."""

    answers = ANSWERS

    @staticmethod
    def default_cache_dir() -> Path:
        """~/.aws/sso/cache, where `aws sso login` writes its tokens."""
        return sso_cache_dir()

    def credentials(self, root: SigninRoot) -> Credentials:
        """Role credentials for `root` (a "sso" root).

        Raises SsoLoginRequired when a person must run `aws sso login` (no token cached or
        its entry unreadable, token expired and not refreshable, refresh token or session
        revoked), ConfigError for a profile botocore cannot use, StsError when the portal
        refuses, or the portal or the token service fails, cannot be reached or answers
        malformed (`signin.ServiceFault`).
        """
        key = f"sso:{root.session or root.profile}"
        return self.gate.run(key, self.cache_dir, lambda: self._fetch(root))

    def _fetch(self, root: SigninRoot) -> Credentials:
        session = self.session(root)
        profile = session.full_config.get("profiles", {}).get(root.profile, {})
        start_url = str(profile.get("sso_start_url", ""))
        # An ill-formed entry stops here; a missing one is botocore's SSOTokenLoadError below.
        cached = cached_token(root, start_url, self.cache_dir)
        # botocore writes tokens with this dumps function; the CLI reads that exact format.
        cache = JSONFileCache(str(self.cache_dir), dumps_func=_sso_json_dumps)
        # One instant for vaultd's decision and botocore's: a threshold passing between two
        # readings of the clock would let botocore refresh what vaultd did not check.
        now = self.clock()
        left_unrefreshed = self._unrefreshed(root, start_url, cached, now)
        tokens = (_Unrefreshed if left_unrefreshed else _Refreshing)(
            session, cache=cache, time_fetcher=utc_clock(lambda: now), profile_name=root.profile
        )
        answers: dict[str, Any] = {}  # the fetcher's cache: GetRoleCredentials' answer lands here
        provider = SSOProvider(
            load_config=lambda: session.full_config,
            client_creator=session.create_client,
            profile_name=root.profile,
            cache=answers,
            token_cache=cache,
            token_provider=tokens,
        )
        with reading_cache(root):
            creds = self._load(root, provider, answers, now)
        return replace(creds, unrefreshed=left_unrefreshed)

    def _unrefreshed(
        self,
        root: SigninRoot,
        start_url: str,
        cached: tuple[float, float | None] | None,
        now: float,
    ) -> str | None:
        """What status says (`signin.unrefreshed`) when a refresh is due at `now` and the
        cache cannot take its answer, so the token is used as it is; None when botocore may
        go ahead. Raises SigninCacheUnwritable when the token has expired as well. botocore
        refreshes a token it can refresh (`refreshable`) with under
        SSOTokenProvider._REFRESH_WINDOW (15 minutes) left.
        """
        if cached is None or not refreshable(root, cached, now):
            return None  # botocore would not refresh it: nothing to lose
        expiry = cached[0]
        if expiry - now >= SSOTokenProvider._REFRESH_WINDOW:
            return None
        refusal = write_refusal(
            self.cache_dir, token_entry(self.cache_dir, start_url, root.session)
        )
        if refusal is None:
            return None
        if expiry <= now:
            raise not_refreshed(root, refusal)
        log.warning(
            "%s: not refreshing the sign-in, since %s; its token serves %.0f more minutes",
            root.label,
            refusal,
            (expiry - now) / 60,
        )
        return unrefreshed(root, refusal, expiry)

    def _load(
        self, root: SigninRoot, provider: SSOProvider, answers: dict[str, Any], issued: float
    ) -> Credentials:
        try:
            loaded = provider.load()
            if loaded is None:
                raise ConfigError(
                    f"profile {root.profile!r}: sso_account_id and sso_role_name are both needed"
                )
            loaded.get_frozen_credentials()
        except (SSOTokenLoadError, UnauthorizedSSOTokenError, TokenRetrievalError) as exc:
            raise self._login_required(root, exc) from None
        except InvalidConfigError as exc:
            raise ConfigError(f"profile {root.profile!r}: {exc}") from None
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
            raise StsError(
                f"{root.label} refused the role for {root.profile!r} ({code})", code
            ) from None
        except BotoCoreError as exc:
            raise StsError(f"cannot reach {root.label}: {type(exc).__name__}") from None
        # SSOCredentialFetcher caches GetRoleCredentials' answer in STS's shape.
        return from_sts(next(iter(answers.values()))["Credentials"], issued)

    @staticmethod
    def _login_required(root: SigninRoot, exc: Exception) -> SsoLoginRequired:
        if isinstance(exc, SSOTokenLoadError):
            why = "not signed in (no token in the AWS CLI's cache)"
        elif isinstance(exc, UnauthorizedSSOTokenError):
            why = "the portal refused the sign-in (expired or revoked)"
        else:
            why = "the sign-in has expired and could not be refreshed"
        return SsoLoginRequired(
            f"{root.label}: {why}: run `{root.command}`",
            profile=root.profile,
            command=root.command,
        )
