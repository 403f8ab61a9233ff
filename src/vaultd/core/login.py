"""`aws login` sessions (`login_session` in a profile) as the root of a chain, with botocore's
own login provider pieces.

`aws login` (AWS CLI 2.32+) signs an IAM user in through the browser and caches, under
`~/.aws/login/cache` (or AWS_LOGIN_CACHE_DIRECTORY), 15-minute credentials, a refresh token
and the DPoP key the refresh must be signed with. `botocore.credentials.LoginCredentialFetcher`
reads that file and refreshes it with signin CreateOAuth2Token (a DPoP proof signed with the
cached key, which needs `botocore[crt]`), writing the rotated refresh token back as the CLI
expects.

Those credentials are served as they are, renewed at half-life by the broker's usual rule
(`schedule.refresh_due`), or used to assume the chain's roles. A renewal is sent only when the
cache directory can take its answer (`signin.write_refusal`): when it cannot, the cached
credentials are served while they last, and then it is an error naming the directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

from botocore.compat import HAS_CRT
from botocore.credentials import LoginCredentialFetcher
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    LoginError,
    LoginInsufficientPermissions,
    LoginRefreshRequired,
    LoginTokenLoadError,
    MissingDependencyException,
)
from botocore.utils import (
    JSONFileCache,
    LoginTokenLoader,
    generate_login_cache_key,
    get_login_token_cache_directory,
)

from vaultd.core.credentials import Credentials, parse_time
from vaultd.core.resolve import SigninRoot
from vaultd.core.signin import (
    CachedSignin,
    Shape,
    misfit,
    not_refreshed,
    reading_cache,
    unreadable,
    unrefreshed,
    utc_clock,
    write_refusal,
    zoned,
)
from vaultd.documents import NUMBER
from vaultd.errors import ConfigError, LoginRequired, StsError
from vaultd.secret import Secret

# What `aws login` credentials last: CreateOAuth2Token's expiresIn is at most 900 seconds.
LOGIN_LIFETIME = 15 * 60
# A cached set with more than this left is served as it is; with less, it is renewed. It
# must exceed half of LOGIN_LIFETIME, when the broker asks for a renewal (half-life rule).
REUSE_ABOVE = 10 * 60

log = logging.getLogger("vaultd.provider")

# The fields of an `aws login` cache entry that botocore reads (LoginCredentialFetcher), all
# strings as the AWS CLI writes them. Those its `_REQUIRED_TOKEN_FIELDS` names may be absent
# here: botocore reports that itself (LoginTokenLoadError).
SESSION_SHAPE: Shape = {
    "accessToken": {
        "accessKeyId": str,
        "secretAccessKey": str,
        "sessionToken": str,
        "accountId": str,
        "expiresAt": str,
    },
    "refreshToken?": str,
    "clientId?": str,
    "dpopKey?": str,
    "signInRegion?": str,
}

# What botocore reads of CreateOAuth2Token's answer (the signin service model; `tokenOutput`
# is the payload member, the whole body).
ANSWERS: dict[tuple[str, str], Shape] = {
    ("signin", "CreateOAuth2Token"): {
        "tokenOutput": {
            "accessToken": {"accessKeyId": str, "secretAccessKey": str, "sessionToken": str},
            "expiresIn": NUMBER,
            "refreshToken": str,
        }
    }
}


class _HalfLifeFetcher(LoginCredentialFetcher):  # type: ignore[misc]
    """botocore's fetcher, renewing from REUSE_ABOVE instead of its 5 minutes, so that a
    renewal the broker asks for at half-life is a renewal."""

    _REFRESH_THRESHOLD = REUSE_ABOVE


def session_entry(cache_dir: Path, session: str | None) -> Path:
    """The file in `cache_dir` botocore keeps the `aws login` session `session` in (a login
    root always names one: `resolve.signin_root`)."""
    return cache_dir / f"{generate_login_cache_key(session or '')}.json"


def cached_session(root: SigninRoot, cache_dir: Path) -> float | None:
    """The expiry (epoch seconds, UTC) of the credentials the AWS CLI cached for `root`,
    None when none are cached; read only, with botocore's own loader and checks (its DPoP
    key too, when botocore has its CRT extra). The daemon checks this before every use of
    the cache and `vaultd doctor` reports it, so both reach one verdict.

    Raises LoginRequired (`signin.unreadable`) when the entry is unreadable or ill-formed
    (a field of SESSION_SHAPE missing or of another type too).
    """
    fetcher = LoginCredentialFetcher(
        session_name=root.session,
        token_loader=LoginTokenLoader(JSONFileCache(str(cache_dir))),
        client_creator=None,  # nothing is sent
    )
    with reading_cache(root):
        try:
            cached = fetcher.load_cached_credentials()
        except LoginTokenLoadError:
            return None
        token = fetcher._token_loader.load_token(root.session)
        if misfit(token, SESSION_SHAPE) is not None:
            raise unreadable(root)
        if HAS_CRT:
            try:
                fetcher._load_private_key(token)
            except LoginTokenLoadError:
                raise unreadable(root) from None
        # Two rules, both the daemon's: botocore's (a zone-less date fails there), then the
        # ISO 8601 reading `_fetch` gives the renewed expiry; dateutil alone reads far more.
        zoned(cached["expiry_time"])
        return parse_time(cached["expiry_time"])


def _login_required(root: SigninRoot, why: str) -> LoginRequired:
    return LoginRequired(
        f"{root.label} for {root.profile!r}: {why}: run `{root.command}`",
        profile=root.profile,
        command=root.command,
    )


class AwsLogin(CachedSignin):
    """Credentials for profiles whose root is an `aws login` session."""

    answers = ANSWERS

    @staticmethod
    def default_cache_dir() -> Path:
        """~/.aws/login/cache, where `aws login` writes its session (botocore's own path)."""
        return Path(get_login_token_cache_directory())

    def credentials(self, root: SigninRoot) -> Credentials:
        """The session's credentials, renewed when under REUSE_ABOVE seconds are left.

        Raises LoginRequired when a person must run `aws login` again (nothing cached, the
        refresh token expired or the user's credentials changed, or its entry unreadable),
        ConfigError when botocore lacks its CRT extra, StsError when the sign-in service
        refuses, fails, cannot be reached or answers malformed (`signin.ServiceFault`).
        """
        if not HAS_CRT:
            raise ConfigError(
                f"profile {root.profile!r} uses `aws login`, whose refresh needs botocore's CRT "
                "extra: pip install 'botocore[crt]'"
            )
        key = f"login:{root.session}"
        return self.gate.run(key, self.cache_dir, lambda: self._fetch(root))

    def _write_refusal(self, root: SigninRoot, expiry: float | None, now: float) -> str | None:
        """Why a renewal that is due at `now` (under REUSE_ABOVE seconds left, as
        `_HalfLifeFetcher` decides) cannot be written to the cache, or None; raises
        SigninCacheUnwritable when the cached credentials have expired as well, so nothing
        is left to serve."""
        if expiry is None or expiry - now > REUSE_ABOVE:
            return None
        refusal = write_refusal(self.cache_dir, session_entry(self.cache_dir, root.session))
        if refusal is not None and expiry <= now:
            raise not_refreshed(root, refusal)
        return refusal

    def _fetch(self, root: SigninRoot) -> Credentials:
        # One instant for vaultd's decision and botocore's: a threshold passing between two
        # readings of the clock would let botocore renew what vaultd did not check.
        now = self.clock()
        # An ill-formed entry stops here; a missing one is botocore's LoginTokenLoadError below.
        refusal = self._write_refusal(root, cached_session(root, self.cache_dir), now)
        session = self.session(root)
        fetcher = _HalfLifeFetcher(
            session_name=root.session,
            token_loader=LoginTokenLoader(JSONFileCache(str(self.cache_dir))),
            client_creator=session.create_client,
            time_fetcher=utc_clock(lambda: now),
        )
        try:
            # As LoginProvider.load does: check the cached session is there and complete
            # (refresh_credentials assumes it is), then renew it if it is due.
            with reading_cache(root):
                cached = fetcher.load_cached_credentials()
                answer = cached if refusal else fetcher.refresh_credentials()
        except (LoginTokenLoadError, LoginRefreshRequired) as exc:
            why = (
                "not signed in (no session in the AWS CLI's cache)"
                if isinstance(exc, LoginTokenLoadError)
                else "the session has expired or the user's credentials changed"
            )
            raise _login_required(root, why) from None
        except LoginInsufficientPermissions:
            raise StsError(
                f"the IAM user of {root.profile!r} may not renew `aws login` sessions "
                "(signin:CreateOAuth2Token): ask an administrator"
            ) from None
        except MissingDependencyException:
            raise ConfigError(
                "`aws login` needs botocore's CRT extra: pip install 'botocore[crt]'"
            ) from None
        except (LoginError, ClientError, BotoCoreError) as exc:
            raise StsError(f"cannot renew the {root.label} session: {type(exc).__name__}") from None
        with reading_cache(root):
            expiration = parse_time(answer["expiry_time"])
        if refusal:
            log.warning(
                "%s for %r: not renewing the session, since %s; it serves %.0f more minutes",
                root.label,
                root.profile,
                refusal,
                (expiration - now) / 60,
            )
        return Credentials(
            access_key_id=str(answer["access_key"]),
            secret_access_key=Secret(str(answer["secret_key"])),
            session_token=Secret(str(answer["token"])),
            expiration=expiration,
            # Counted from now even for a set read back from the cache: the half-life rule
            # then always falls after now and below REUSE_ABOVE.
            issued=now,
            unrefreshed=unrefreshed(root, refusal, expiration) if refusal else None,
        )
