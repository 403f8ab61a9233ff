"""IAM Identity Center roots against the loopback fakes: botocore's providers do the work,
vaultd decides when (one refresh at a time, nothing sent while a person is needed)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tests.fakes.signin import NOT_JSON, Fakes, Scripted, sso_cache_file
from vaultd.core import config, resolve
from vaultd.core.sso import IdentityCenter
from vaultd.errors import ConfigError, SsoLoginRequired, StsError


def cache_dir(isolated: Path) -> Path:
    return isolated / "home" / ".aws" / "sso" / "cache"


def root_of(profile: str) -> resolve.SigninRoot:
    root = resolve.plan(config.load_profiles(), profile).signin
    assert root is not None
    return root


@pytest.fixture
def center(signin_config: Path, isolated: Path) -> IdentityCenter:
    return IdentityCenter(time.time, cache_dir=cache_dir(isolated))


def test_the_portals_role_credentials(
    center: IdentityCenter, signin_fakes: Fakes, isolated: Path
) -> None:
    signin_fakes.sign_in_sso(cache_dir(isolated))
    creds = center.credentials(root_of("dev-sso"))
    assert creds.access_key_id == signin_fakes.issued_keys[-1]
    assert signin_fakes.role_calls == [("222233334444", "DeveloperAccess")]
    assert creds.remaining(time.time()) == pytest.approx(3600, abs=5)
    assert signin_fakes.create_token_calls == 0  # the token had hours left


def test_master_via_sso_has_its_root_at_dev_sso(signin_config: Path) -> None:
    plan = resolve.plan(config.load_profiles(), "master-via-sso")
    assert plan.signin == resolve.SigninRoot("sso", "dev-sso", "corp")
    assert plan.role_arn == "arn:aws:iam::222233334444:role/DeveloperRole"
    assert plan.signin.label == "IAM Identity Center corp"
    assert plan.signin.command == "aws sso login --sso-session corp"


def test_the_legacy_form(center: IdentityCenter, signin_fakes: Fakes, isolated: Path) -> None:
    signin_fakes.sign_in_sso(cache_dir(isolated), session=None)
    root = root_of("legacy-sso")
    assert root.command == "aws sso login --profile legacy-sso"
    creds = center.credentials(root)
    assert creds.access_key_id == signin_fakes.issued_keys[-1]
    assert signin_fakes.role_calls == [("222233334444", "ReadOnly")]


def test_one_refresh_for_twenty_callers_and_the_cache_rewritten(
    center: IdentityCenter, signin_fakes: Fakes, isolated: Path
) -> None:
    signin_fakes.sign_in_sso(cache_dir(isolated), expires_in=-60)  # expired, refreshable
    before = json.loads(sso_cache_file(cache_dir(isolated), "corp").read_text())
    keys: list[str] = []
    start = threading.Barrier(20)

    def ask(profile: str) -> None:
        start.wait()
        keys.append(center.credentials(root_of(profile)).access_key_id)

    # dev-sso and the root of master-via-sso share the sso-session's token.
    threads = [
        threading.Thread(target=ask, args=("dev-sso" if i % 2 else "master-via-sso",))
        for i in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(keys) == 20
    assert signin_fakes.create_token_calls == 1
    after = json.loads(sso_cache_file(cache_dir(isolated), "corp").read_text())
    assert after["refreshToken"] != before["refreshToken"]
    assert after["refreshToken"] in signin_fakes.sso_refresh  # the CLI can refresh next
    assert after["accessToken"] in signin_fakes.access_tokens
    assert signin_fakes.refusals == []


def test_an_expired_token_without_refresh_needs_a_person(
    center: IdentityCenter, signin_fakes: Fakes, isolated: Path
) -> None:
    signin_fakes.sign_in_sso(cache_dir(isolated), expires_in=-60, refreshable=False)
    with pytest.raises(SsoLoginRequired) as caught:
        center.credentials(root_of("dev-sso"))
    assert caught.value.code == "sso_login_required"
    assert caught.value.command == "aws sso login --sso-session corp"
    assert "\n" not in caught.value.message
    assert caught.value.message.endswith("run `aws sso login --sso-session corp`")
    # Asked again with nothing changed: answered at once, nothing sent.
    with pytest.raises(SsoLoginRequired):
        center.credentials(root_of("master-via-sso"))
    assert signin_fakes.role_calls == []
    assert signin_fakes.create_token_calls == 0
    # `aws sso login` in some terminal: the next ask finds the new token.
    signin_fakes.sign_in_sso(cache_dir(isolated))
    assert center.credentials(root_of("dev-sso")).access_key_id == signin_fakes.issued_keys[-1]


def test_a_revoked_refresh_token_is_tried_once(
    center: IdentityCenter, signin_fakes: Fakes, isolated: Path
) -> None:
    signin_fakes.sign_in_sso(cache_dir(isolated), expires_in=-60)
    signin_fakes.sso_refresh.clear()  # revoked by an administrator
    for _ in range(3):
        with pytest.raises(SsoLoginRequired):
            center.credentials(root_of("dev-sso"))
    assert signin_fakes.create_token_calls == 1


def test_not_signed_in_at_all(center: IdentityCenter, signin_fakes: Fakes) -> None:
    with pytest.raises(SsoLoginRequired, match="not signed in"):
        center.credentials(root_of("dev-sso"))


def test_no_token_or_secret_in_errors_or_logs(
    center: IdentityCenter,
    signin_fakes: Fakes,
    isolated: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG", logger="vaultd")
    access = signin_fakes.sign_in_sso(cache_dir(isolated), expires_in=-60)
    cached = json.loads(sso_cache_file(cache_dir(isolated), "corp").read_text())
    signin_fakes.sso_refresh.clear()
    with pytest.raises(SsoLoginRequired) as caught:
        center.credentials(root_of("dev-sso"))
    shown = f"{caught.value.message} {caught.value.to_json()} {caplog.text}"
    for secret in (access, cached["refreshToken"], cached["clientSecret"]):
        assert secret not in shown


def _corrupt_sso(path: Path, how: str) -> None:
    if how == "truncated":
        path.write_text(path.read_text()[:40])
        return
    if how == "empty":
        path.write_text("")
        return
    if how == "null":
        path.write_text("null")
        return
    field, value = {
        "expiresAt soon": ("expiresAt", "soon"),
        "expiresAt 5": ("expiresAt", 5),
        "expiresAt null": ("expiresAt", None),
        "expiresAt zone-less": ("expiresAt", "2099-01-01T00:00:00"),
        "registrationExpiresAt garbage": ("registrationExpiresAt", "garbage"),
        "accessToken 5": ("accessToken", 5),
        "refreshToken 7": ("refreshToken", 7),
        "clientSecret null": ("clientSecret", None),
    }[how]
    token = json.loads(path.read_text())
    token[field] = value
    path.write_text(json.dumps(token))


BROKEN_SSO = [
    "truncated",
    "empty",
    "null",
    "expiresAt soon",
    "expiresAt 5",
    "expiresAt null",
    "expiresAt zone-less",
    "registrationExpiresAt garbage",
    # Wrong types botocore would send as they are (a ParamValidationError, not a sign-in).
    "accessToken 5",
    "refreshToken 7",
    "clientSecret null",
]


# With hours left, and when due for a refresh.
@pytest.mark.parametrize(
    ("how", "expires_in"),
    [(how, 3600) for how in BROKEN_SSO] + [(how, -60) for how in BROKEN_SSO],
)
def test_an_unreadable_cache_entry_is_the_named_state(
    center: IdentityCenter, signin_fakes: Fakes, isolated: Path, how: str, expires_in: int
) -> None:
    signin_fakes.sign_in_sso(cache_dir(isolated), expires_in=expires_in)
    _corrupt_sso(sso_cache_file(cache_dir(isolated), "corp"), how)
    with pytest.raises(SsoLoginRequired) as caught:
        center.credentials(root_of("dev-sso"))
    assert caught.value.code == "sso_login_required"
    assert caught.value.message == (
        "the AWS CLI's cache for corp is unreadable: run `aws sso login --sso-session corp`"
    )
    assert signin_fakes.role_calls == []


def test_sso_keys_win_over_login_session_as_in_botocore() -> None:
    # botocore's ProfileProviderBuilder tries SSOProvider before LoginProvider.
    both = config.Profile(
        name="both",
        sso_session="corp",
        sso_account_id="222233334444",
        sso_role_name="DeveloperAccess",
        login_session="arn:aws:iam::111122223333:user/elmerfudd",
    )
    assert resolve.signin_root(both) == resolve.SigninRoot("sso", "both", "corp")


def test_a_profile_gone_from_the_config_is_a_config_error(
    center: IdentityCenter, signin_fakes: Fakes, signin_config: Path, isolated: Path
) -> None:
    """The plan was made from the file as it was; botocore, reading it again, finds no such
    profile (or could not open it at all): one line, no traceback."""
    signin_fakes.sign_in_sso(cache_dir(isolated))
    root = root_of("dev-sso")
    signin_config.write_text("[default]\nregion = us-east-1\n")
    with pytest.raises(ConfigError, match=r"^profile 'dev-sso': "):
        center.credentials(root)
    assert signin_fakes.role_calls == []


# What the token service and the portal send when they fail rather than refuse: an outage
# (as JSON, or as a front end's HTML page) and throttling, with the status AWS gives each.
FAILURES = {
    "500 InternalServerException": Scripted(
        500, '{"error":"server_error"}', "InternalServerException"
    ),
    "502 from a front end": Scripted(502, "<html>Bad Gateway</html>", content_type="text/html"),
    "503": Scripted(503, "{}"),
    "SlowDownException": Scripted(400, '{"error":"slow_down"}', "SlowDownException"),
    "429 ThrottlingException": Scripted(429, "{}", "ThrottlingException"),
}

# A 200 whose body botocore cannot use as CreateToken's answer.
GARBLED_TOKENS = {
    **NOT_JSON,
    "no expiresIn": Scripted(200, '{"accessToken":"aoa-x","tokenType":"Bearer"}'),
    "accessToken 5": Scripted(200, '{"accessToken":5,"expiresIn":3600}'),
    "expiresIn a word": Scripted(200, '{"accessToken":"aoa-x","expiresIn":"soon"}'),
}


@pytest.mark.parametrize("answer", FAILURES.values(), ids=FAILURES.keys())
def test_a_failing_token_service_is_retried_not_a_sign_in(
    center: IdentityCenter, signin_fakes: Fakes, isolated: Path, answer: Scripted
) -> None:
    """Token expired, refresh token valid: CreateToken failing is the service's fault, an
    StsError retried with backoff; nothing waits for a person, and the next try refreshes."""
    signin_fakes.sign_in_sso(cache_dir(isolated), expires_in=-60)
    entry = sso_cache_file(cache_dir(isolated), "corp")
    before = entry.read_bytes()
    signin_fakes.script("CreateToken", answer, times=2)  # botocore retries once
    with pytest.raises(StsError) as caught:
        center.credentials(root_of("dev-sso"))
    assert caught.value.message.startswith("IAM Identity Center corp: sso-oidc CreateToken failed")
    assert entry.read_bytes() == before
    assert signin_fakes.role_calls == []
    signin_fakes.scripted.clear()
    creds = center.credentials(root_of("dev-sso"))
    assert creds.access_key_id == signin_fakes.issued_keys[-1]
    assert json.loads(entry.read_text())["refreshToken"] in signin_fakes.sso_refresh


REFUSALS = {
    "InvalidGrantException": Scripted(400, '{"error":"invalid_grant"}', "InvalidGrantException"),
    "InvalidClientException": Scripted(401, '{"error":"invalid_client"}', "InvalidClientException"),
    "UnauthorizedClientException": Scripted(
        400, '{"error":"unauthorized_client"}', "UnauthorizedClientException"
    ),
}


@pytest.mark.parametrize("answer", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_refused_refresh_needs_a_person(
    center: IdentityCenter, signin_fakes: Fakes, isolated: Path, answer: Scripted
) -> None:
    signin_fakes.sign_in_sso(cache_dir(isolated), expires_in=-60)
    signin_fakes.script("CreateToken", answer)
    with pytest.raises(SsoLoginRequired, match="could not be refreshed"):
        center.credentials(root_of("dev-sso"))
    assert signin_fakes.create_token_calls == 1


@pytest.mark.parametrize(
    "answer",
    [FAILURES["500 InternalServerException"], GARBLED_TOKENS["HTML"]],
    ids=["500", "garbled"],
)
def test_a_token_still_valid_is_used_when_its_refresh_fails(
    center: IdentityCenter, signin_fakes: Fakes, isolated: Path, answer: Scripted
) -> None:
    """botocore's rule for a failed refresh: a token with minutes left is used as it is."""
    signin_fakes.sign_in_sso(cache_dir(isolated), expires_in=300)  # in the refresh window
    entry = sso_cache_file(cache_dir(isolated), "corp")
    before = entry.read_bytes()
    signin_fakes.script("CreateToken", answer, times=2)
    assert center.credentials(root_of("dev-sso")).access_key_id == signin_fakes.issued_keys[-1]
    assert signin_fakes.create_token_calls >= 1
    assert entry.read_bytes() == before


GARBLED_ROLES = {
    **NOT_JSON,
    "empty roleCredentials": Scripted(200, '{"roleCredentials":{}}'),
    "accessKeyId 5": Scripted(
        200,
        '{"roleCredentials":{"accessKeyId":5,"secretAccessKey":"s","sessionToken":"t",'
        '"expiration":1}}',
    ),
    "expiration a word": Scripted(
        200,
        '{"roleCredentials":{"accessKeyId":"ASIA","secretAccessKey":"s","sessionToken":"t",'
        '"expiration":"soon"}}',
    ),
}


# Each garbled answer: the call it answers, and a token made to need that call (expired, so
# CreateToken is asked; valid, so GetRoleCredentials is).
GARBLED = {
    **{f"CreateToken {k}": ("CreateToken", -60, v) for k, v in GARBLED_TOKENS.items()},
    **{
        f"GetRoleCredentials {k}": ("GetRoleCredentials", 3600, v) for k, v in GARBLED_ROLES.items()
    },
}
SERVICE = {"CreateToken": "sso-oidc CreateToken", "GetRoleCredentials": "sso GetRoleCredentials"}


@pytest.mark.parametrize(("call", "expires_in", "answer"), GARBLED.values(), ids=GARBLED.keys())
def test_a_garbled_answer_is_the_services_fault(
    center: IdentityCenter,
    signin_fakes: Fakes,
    isolated: Path,
    call: str,
    expires_in: int,
    answer: Scripted,
) -> None:
    signin_fakes.sign_in_sso(cache_dir(isolated), expires_in=expires_in)
    entry = sso_cache_file(cache_dir(isolated), "corp")
    before = entry.read_bytes()
    signin_fakes.script(call, answer)
    with pytest.raises(StsError) as caught:
        center.credentials(root_of("dev-sso"))
    assert caught.value.message.startswith(
        f"IAM Identity Center corp: malformed answer from {SERVICE[call]} ("
    )
    assert entry.read_bytes() == before  # the refresh token in it is still the valid one
    # Not parked behind the gate as a sign-in: the next try asks the service again.
    assert center.credentials(root_of("dev-sso")).access_key_id == signin_fakes.issued_keys[-1]
