"""The sso / sso-oidc / signin fakes, checked against plain boto3 first: botocore is the
reference for what the services send and accept. If these fail, the fakes are wrong, not
vaultd."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.credentials import LoginCredentialFetcher
from botocore.exceptions import ClientError
from botocore.utils import JSONFileCache, LoginTokenLoader

from tests.fakes.signin import Fakes, sso_cache_file

SESSION_ARN = "arn:aws:iam::111122223333:user/elmerfudd"


def sso_dir(isolated: Path) -> Path:
    return isolated / "home" / ".aws" / "sso" / "cache"


def login_dir(isolated: Path) -> Path:
    return isolated / "home" / ".aws" / "login" / "cache"


def test_portal_checks_the_bearer_token(signin_fakes: Fakes, isolated: Path) -> None:
    token = signin_fakes.sign_in_sso(sso_dir(isolated))
    sso = boto3.client("sso", region_name="us-east-1")
    got = sso.get_role_credentials(
        roleName="DeveloperAccess", accountId="222233334444", accessToken=token
    )["roleCredentials"]
    assert got["accessKeyId"] == signin_fakes.issued_keys[-1]
    with pytest.raises(sso.exceptions.UnauthorizedException):
        sso.get_role_credentials(
            roleName="DeveloperAccess", accountId="222233334444", accessToken="aoa-forged"
        )


def test_oidc_checks_and_rotates_the_refresh_token(signin_fakes: Fakes, isolated: Path) -> None:
    signin_fakes.sign_in_sso(sso_dir(isolated))
    cached = json.loads(sso_cache_file(sso_dir(isolated), "corp").read_text())
    oidc = boto3.client("sso-oidc", region_name="us-east-1")
    args = {
        "grantType": "refresh_token",
        "clientId": cached["clientId"],
        "clientSecret": cached["clientSecret"],
    }
    new = oidc.create_token(refreshToken=cached["refreshToken"], **args)
    assert new["refreshToken"] != cached["refreshToken"]
    assert new["accessToken"] in signin_fakes.access_tokens
    with pytest.raises(oidc.exceptions.InvalidGrantException):
        oidc.create_token(refreshToken=cached["refreshToken"], **args)  # spent
    with pytest.raises(oidc.exceptions.InvalidClientException):
        oidc.create_token(**{**args, "clientSecret": "wrong"}, refreshToken=new["refreshToken"])


PLAIN_BOTO3 = """
import json, sys, boto3
creds = boto3.Session(profile_name=sys.argv[1]).get_credentials()
frozen = creds.get_frozen_credentials()
print(json.dumps({"method": creds.method, "access_key": frozen.access_key}))
"""


def plain_boto3(profile: str) -> dict[str, str]:
    """botocore's own providers, in a process whose HOME is the test's (its token cache
    directories are fixed when botocore is imported)."""
    done = subprocess.run(
        [sys.executable, "-c", PLAIN_BOTO3, profile],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_botocore_refreshes_an_sso_token_through_the_fake(
    signin_fakes: Fakes, signin_config: Path, isolated: Path
) -> None:
    signin_fakes.sign_in_sso(sso_dir(isolated), expires_in=60)  # inside botocore's window
    before = json.loads(sso_cache_file(sso_dir(isolated), "corp").read_text())
    got = plain_boto3("dev-sso")
    after = json.loads(sso_cache_file(sso_dir(isolated), "corp").read_text())
    assert got == {"method": "sso", "access_key": signin_fakes.issued_keys[-1]}
    assert signin_fakes.create_token_calls == 1
    assert after["refreshToken"] != before["refreshToken"]
    assert after["refreshToken"] in signin_fakes.sso_refresh
    assert signin_fakes.refusals == []


def test_botocore_login_provider_passes_the_dpop_check(
    signin_fakes: Fakes, signin_config: Path, isolated: Path
) -> None:
    signin_fakes.sign_in_login(login_dir(isolated), SESSION_ARN, expires_in=60)
    got = plain_boto3("console")
    assert got == {"method": "login", "access_key": signin_fakes.issued_keys[-1]}
    assert signin_fakes.oauth2_calls == 1
    assert signin_fakes.refusals == []


def test_the_fake_refuses_a_proof_signed_with_another_key(
    signin_fakes: Fakes, signin_config: Path, isolated: Path
) -> None:
    signin_fakes.sign_in_login(login_dir(isolated), SESSION_ARN, expires_in=60)
    # Bind the session to a different key than the one in the cache: the proof must fail.
    first = next(iter(signin_fakes.login_refresh.values()))
    first.jwk = {**first.jwk, "x": first.jwk["y"]}
    done = subprocess.run(
        [sys.executable, "-c", PLAIN_BOTO3, "console"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert signin_fakes.refusals == [
        "CreateOAuth2Token: DPoP key is not the one the session is bound to"
    ]


def test_the_fake_speaks_what_botocore_parses(signin_fakes: Fakes) -> None:
    sso = boto3.client("sso", region_name="us-east-1")
    with pytest.raises(ClientError) as caught:
        sso.get_role_credentials(roleName="R", accountId="1", accessToken="x")
    assert caught.value.response["Error"]["Code"] == "UnauthorizedException"


def test_the_fake_refuses_a_proof_whose_signature_does_not_verify(
    signin_fakes: Fakes, signin_config: Path, isolated: Path
) -> None:
    """botocore's own fetcher, with the proof's signature altered on its way out."""
    signin_fakes.sign_in_login(login_dir(isolated), SESSION_ARN, expires_in=60)
    session = botocore.session.Session(profile="console")

    def corrupt(request: Any, **_: Any) -> None:
        proof = request.headers["DPoP"]
        text = proof.decode() if isinstance(proof, bytes) else proof
        head, payload, signature = text.split(".")
        raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
        raw[0] ^= 0xFF
        bad = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
        request.headers["DPoP"] = f"{head}.{payload}.{bad}"

    def creator(service: str, **kwargs: Any) -> Any:
        client = session.create_client(service, **kwargs)
        client.meta.events.register("before-send.signin.CreateOAuth2Token", corrupt)
        return client

    fetcher = LoginCredentialFetcher(
        session_name=SESSION_ARN,
        token_loader=LoginTokenLoader(JSONFileCache(str(login_dir(isolated)))),
        client_creator=creator,
    )
    with pytest.raises(ClientError):
        fetcher.refresh_credentials()
    assert signin_fakes.refusals == ["CreateOAuth2Token: DPoP signature does not verify"]
