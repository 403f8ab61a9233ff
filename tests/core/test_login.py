"""`aws login` roots against the loopback signin fake: botocore's LoginCredentialFetcher signs
the refresh with the cached DPoP key; vaultd renews at half-life and once for everyone."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from botocore.utils import generate_login_cache_key

from tests.fakes.signin import NOT_JSON, Fakes, Scripted
from vaultd.core import config, login, resolve, schedule
from vaultd.core.login import AwsLogin
from vaultd.errors import LoginRequired, StsError

SESSION_ARN = "arn:aws:iam::111122223333:user/elmerfudd"


def cache_dir(isolated: Path) -> Path:
    return isolated / "home" / ".aws" / "login" / "cache"


def cache_file(isolated: Path) -> Path:
    return cache_dir(isolated) / f"{generate_login_cache_key(SESSION_ARN)}.json"


@pytest.fixture
def root(signin_config: Path) -> resolve.SigninRoot:
    found = resolve.plan(config.load_profiles(), "console").signin
    assert found == resolve.SigninRoot("login", "console", SESSION_ARN)
    return found


@pytest.fixture
def aws_login(isolated: Path) -> AwsLogin:
    return AwsLogin(time.time, cache_dir=cache_dir(isolated))


def test_fresh_cached_credentials_are_served_as_they_are(
    aws_login: AwsLogin, root: resolve.SigninRoot, signin_fakes: Fakes, isolated: Path
) -> None:
    key = signin_fakes.sign_in_login(cache_dir(isolated), SESSION_ARN, expires_in=840)
    creds = aws_login.credentials(root)
    assert creds.access_key_id == key
    assert signin_fakes.oauth2_calls == 0


def test_renewed_at_half_life_with_a_signed_proof_and_the_cache_rewritten(
    aws_login: AwsLogin, root: resolve.SigninRoot, signin_fakes: Fakes, isolated: Path
) -> None:
    signin_fakes.sign_in_login(cache_dir(isolated), SESSION_ARN, expires_in=840)
    first = aws_login.credentials(root)
    due = schedule.refresh_due(first)
    assert first.expiration - due == pytest.approx(first.lifetime / 2)  # the half-life rule
    # At the time the broker renews, botocore's fetcher must renew rather than reuse.
    assert first.expiration - due < login.REUSE_ABOVE
    before = json.loads(cache_file(isolated).read_text())
    before["accessToken"]["expiresAt"] = time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + first.lifetime / 2 - 5)
    )
    cache_file(isolated).write_text(json.dumps(before))
    renewed = aws_login.credentials(root)
    assert signin_fakes.oauth2_calls == 1
    assert signin_fakes.refusals == []
    assert renewed.access_key_id == signin_fakes.issued_keys[-1] != first.access_key_id
    assert renewed.remaining(time.time()) == pytest.approx(900, abs=5)
    after = json.loads(cache_file(isolated).read_text())
    assert after["refreshToken"] != before["refreshToken"]
    assert after["refreshToken"] in signin_fakes.login_refresh
    assert after["dpopKey"] == before["dpopKey"]
    assert after["accessToken"]["accessKeyId"] == renewed.access_key_id


def test_one_renewal_for_twenty_callers(
    aws_login: AwsLogin, root: resolve.SigninRoot, signin_fakes: Fakes, isolated: Path
) -> None:
    signin_fakes.sign_in_login(cache_dir(isolated), SESSION_ARN, expires_in=-30)
    keys: list[str] = []
    start = threading.Barrier(20)

    def ask() -> None:
        start.wait()
        keys.append(aws_login.credentials(root).access_key_id)

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert keys == [signin_fakes.issued_keys[-1]] * 20
    assert signin_fakes.oauth2_calls == 1


def test_an_expired_session_needs_a_person_once(
    aws_login: AwsLogin, root: resolve.SigninRoot, signin_fakes: Fakes, isolated: Path
) -> None:
    signin_fakes.sign_in_login(cache_dir(isolated), SESSION_ARN, expires_in=-30)
    signin_fakes.login_refresh.clear()  # the refresh token's 12 hours are over
    for _ in range(3):
        with pytest.raises(LoginRequired) as caught:
            aws_login.credentials(root)
    assert caught.value.code == "login_required"
    assert caught.value.command == "aws login --profile console"
    assert caught.value.message.endswith("run `aws login --profile console`")
    assert signin_fakes.oauth2_calls == 1
    # `aws login` again: picked up without anyone telling vaultd.
    key = signin_fakes.sign_in_login(cache_dir(isolated), SESSION_ARN)
    assert aws_login.credentials(root).access_key_id == key


def test_not_signed_in(aws_login: AwsLogin, root: resolve.SigninRoot) -> None:
    with pytest.raises(LoginRequired, match="not signed in"):
        aws_login.credentials(root)


def _corrupt_login(path: Path, how: str) -> None:
    if how == "truncated":
        path.write_text(path.read_text()[:40])
        return
    token = json.loads(path.read_text())
    if how == "accessToken a string":
        token["accessToken"] = "ASIAEXAMPLE"
    elif how == "accessKeyId 5":  # botocore would serve it as AccessKeyId "5"
        token["accessToken"]["accessKeyId"] = 5
    elif how == "sessionToken null":
        token["accessToken"]["sessionToken"] = None
    elif how == "refreshToken 7":
        token["refreshToken"] = 7
    elif how == "expiresAt garbage":
        token["accessToken"]["expiresAt"] = "garbage"
    elif how == "expiresAt without a zone":  # botocore compares it with an aware clock
        token["accessToken"]["expiresAt"] = "2099-01-01T00:00:00"
    elif how == "expiresAt not ISO 8601":  # dateutil reads it; the daemon's parse_time not
        token["accessToken"]["expiresAt"] = "2099-01-01 00:00:00 UTC"
    else:  # "dpopKey malformed"
        token["dpopKey"] = (
            "-----BEGIN EC PRIVATE KEY-----\nbm90IGEga2V5\n-----END EC PRIVATE KEY-----\n"
        )
    path.write_text(json.dumps(token))


@pytest.mark.parametrize(
    ("how", "expires_in"),
    [
        ("truncated", 840),
        ("accessToken a string", 840),
        ("accessKeyId 5", 840),
        ("sessionToken null", 840),
        ("refreshToken 7", 300),  # sent only with a renewal
        ("expiresAt garbage", 840),
        ("expiresAt without a zone", 840),
        ("expiresAt not ISO 8601", 840),
        ("dpopKey malformed", 300),  # the key is used only to sign a renewal
    ],
)
def test_an_unreadable_cache_entry_is_the_named_state(
    aws_login: AwsLogin,
    root: resolve.SigninRoot,
    signin_fakes: Fakes,
    isolated: Path,
    how: str,
    expires_in: int,
) -> None:
    signin_fakes.sign_in_login(cache_dir(isolated), SESSION_ARN, expires_in=expires_in)
    _corrupt_login(cache_file(isolated), how)
    with pytest.raises(LoginRequired) as caught:
        aws_login.credentials(root)
    assert caught.value.code == "login_required"
    assert caught.value.message == (
        "the AWS CLI's cache for console is unreadable: run `aws login --profile console`"
    )
    assert signin_fakes.oauth2_calls == 0


@pytest.mark.parametrize("how", ["expiresAt without a zone", "expiresAt not ISO 8601"])
def test_the_daemon_and_doctor_read_an_odd_expiry_alike(
    root: resolve.SigninRoot, signin_fakes: Fakes, isolated: Path, how: str
) -> None:
    """doctor reads the cache through `cached_session`, as the daemon does before each use."""
    signin_fakes.sign_in_login(cache_dir(isolated), SESSION_ARN, expires_in=840)
    _corrupt_login(cache_file(isolated), how)
    with pytest.raises(LoginRequired, match="unreadable"):
        login.cached_session(root, cache_dir(isolated))


# A 200 whose body botocore cannot use as CreateOAuth2Token's answer.
GARBLED = {
    **NOT_JSON,
    "no accessToken": Scripted(200, '{"tokenType":"aws_sigv4","expiresIn":900}'),
    "no refreshToken": Scripted(
        200,
        '{"accessToken":{"accessKeyId":"ASIA","secretAccessKey":"s","sessionToken":"t"},'
        '"expiresIn":900}',
    ),
    "accessKeyId 5": Scripted(
        200,
        '{"accessToken":{"accessKeyId":5,"secretAccessKey":"s","sessionToken":"t"},'
        '"expiresIn":900,"refreshToken":"lor-x"}',
    ),
}


@pytest.mark.parametrize("answer", GARBLED.values(), ids=GARBLED.keys())
def test_a_garbled_renewal_is_the_services_fault(
    aws_login: AwsLogin,
    root: resolve.SigninRoot,
    signin_fakes: Fakes,
    isolated: Path,
    answer: Scripted,
) -> None:
    signin_fakes.sign_in_login(cache_dir(isolated), SESSION_ARN, expires_in=-30)
    before = cache_file(isolated).read_bytes()
    signin_fakes.script("CreateOAuth2Token", answer)
    with pytest.raises(StsError) as caught:
        aws_login.credentials(root)
    assert caught.value.message.startswith(
        "aws login: malformed answer from signin CreateOAuth2Token ("
    )
    assert cache_file(isolated).read_bytes() == before
    # Not parked behind the gate as a sign-in: the next try renews.
    assert aws_login.credentials(root).access_key_id == signin_fakes.issued_keys[-1]


def test_a_failing_sign_in_service_is_retried(
    aws_login: AwsLogin, root: resolve.SigninRoot, signin_fakes: Fakes, isolated: Path
) -> None:
    signin_fakes.sign_in_login(cache_dir(isolated), SESSION_ARN, expires_in=-30)
    signin_fakes.script("CreateOAuth2Token", Scripted(500, "{}", "InternalServerException"), 2)
    with pytest.raises(StsError, match="cannot renew"):
        aws_login.credentials(root)
    assert aws_login.credentials(root).access_key_id == signin_fakes.issued_keys[-1]
