"""The provider's STS calls, checked with botocore's Stubber: moto cannot tell us whether the
MFA parameters were sent or answer a wrong code the way STS does."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.stub import Stubber

from tests.helpers import FakeClock
from vaultd import config
from vaultd.credentials import AccessKeys, Credentials, Source
from vaultd.errors import MfaRejected, MfaRequired, NoKeys, StsError
from vaultd.keystore import Keystore
from vaultd.provider import Provider
from vaultd.resolve import default_session_name
from vaultd.secret import Secret

SERIAL = "arn:aws:iam::111122223333:mfa/elmerfudd"
ROLE = "arn:aws:iam::222233334444:role/DeveloperRole"
USER_KEY = AccessKeys("AKIAUSERKEY000000001", Secret("user-secret-" + "s" * 28))


def sts_credentials(n: int, expires: dt.datetime) -> dict[str, Any]:
    return {
        "AccessKeyId": f"ASIASTUB{n:012d}",
        "SecretAccessKey": f"stub-secret-{n}" + "z" * 20,
        "SessionToken": f"stub-token-{n}" + "t" * 40,
        "Expiration": expires,
    }


class RecordingFactory:
    """One stubbed client; records which credentials each call was made with."""

    def __init__(self) -> None:
        self.client = botocore.session.get_session().create_client(
            "sts", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
        )
        self.stubber = Stubber(self.client)
        self.sources: list[str] = []

    def __call__(self, source: Source, region: str) -> Any:
        self.sources.append(source.access_key_id)
        return self.client


@pytest.fixture
def factory() -> Iterator[RecordingFactory]:
    f = RecordingFactory()
    with f.stubber:
        yield f
    f.stubber.assert_no_pending_responses()


def make_provider(clock: FakeClock, factory: RecordingFactory) -> Provider:
    return Provider(
        load_profiles=config.load_profiles,
        keystore=Keystore(),
        sts_factory=factory,
        clock=clock,
        env={},
    )


def in_(clock: FakeClock, seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock() + seconds, tz=dt.UTC)


def test_mfa_session_then_role_in_order(
    aws_config: Path, clock: FakeClock, factory: RecordingFactory
) -> None:
    Keystore().set_keys("identity", USER_KEY)
    session = sts_credentials(1, in_(clock, 12 * 3600))
    factory.stubber.add_response(
        "get_session_token",
        {"Credentials": session},
        {"DurationSeconds": 43200, "SerialNumber": SERIAL, "TokenCode": "123456"},
    )
    role = sts_credentials(2, in_(clock, 3600))
    factory.stubber.add_response(
        "assume_role",
        {
            "Credentials": role,
            "AssumedRoleUser": {"AssumedRoleId": "AROA1:x", "Arn": f"{ROLE}/x"},
        },
        {"RoleArn": ROLE, "RoleSessionName": default_session_name(), "DurationSeconds": 3600},
    )
    creds = make_provider(clock, factory).credentials("master", "123456")
    assert creds.access_key_id == role["AccessKeyId"]
    assert creds.expiration == clock() + 3600
    # GetSessionToken with the long-lived key, AssumeRole with the session.
    assert factory.sources == [USER_KEY.access_key_id, session["AccessKeyId"]]
    cached = Keystore().get_session("identity")
    assert cached is not None and cached.mfa_serial == SERIAL
    assert cached.credentials.access_key_id == session["AccessKeyId"]


def test_cached_session_needs_no_code(
    aws_config: Path, clock: FakeClock, factory: RecordingFactory
) -> None:
    from vaultd.keystore import CachedSession

    store = Keystore()
    store.set_keys("identity", USER_KEY)
    session = Credentials(
        "ASIACACHED0000000001", Secret("c" * 40), Secret("t" * 80), clock() + 7200, clock()
    )
    store.set_session("identity", CachedSession(SERIAL, session))
    factory.stubber.add_response(
        "assume_role",
        {"Credentials": sts_credentials(3, in_(clock, 3600))},
        {"RoleArn": ROLE, "RoleSessionName": default_session_name(), "DurationSeconds": 3600},
    )
    creds = make_provider(clock, factory).credentials("master")
    assert creds.access_key_id == "ASIASTUB000000000003"
    assert factory.sources == ["ASIACACHED0000000001"]


def test_missing_code_raises_mfa_required_without_calling_sts(
    aws_config: Path, clock: FakeClock, factory: RecordingFactory
) -> None:
    Keystore().set_keys("identity", USER_KEY)
    with pytest.raises(MfaRequired) as info:
        make_provider(clock, factory).credentials("master")
    assert info.value.serial == SERIAL
    assert factory.sources == []


def test_wrong_code_is_mfa_rejected(
    aws_config: Path, clock: FakeClock, factory: RecordingFactory
) -> None:
    Keystore().set_keys("identity", USER_KEY)
    factory.stubber.add_client_error(
        "get_session_token",
        service_error_code="AccessDenied",
        service_message="MultiFactorAuthentication failed with invalid MFA one time pass code.",
        http_status_code=403,
    )
    with pytest.raises(MfaRejected) as info:
        make_provider(clock, factory).credentials("master", "999999")
    assert "999999" not in info.value.message
    assert Keystore().get_session("identity") is None


def test_rejected_keys_are_named_without_the_secret(
    aws_config: Path, clock: FakeClock, factory: RecordingFactory
) -> None:
    Keystore().set_keys("identity", USER_KEY)
    factory.stubber.add_client_error(
        "get_session_token",
        service_error_code="InvalidClientTokenId",
        service_message="The security token included in the request is invalid.",
        http_status_code=403,
    )
    with pytest.raises(StsError) as info:
        make_provider(clock, factory).credentials("identity", "123456")
    assert "****0001" in info.value.message
    assert USER_KEY.secret_access_key.reveal() not in info.value.message
    assert USER_KEY.access_key_id not in info.value.message


def test_no_keys_says_what_to_run(
    aws_config: Path, clock: FakeClock, factory: RecordingFactory
) -> None:
    with pytest.raises(NoKeys, match="vaultd add identity"):
        make_provider(clock, factory).credentials("master", "123456")


def test_profile_without_role_serves_session_credentials(
    aws_config: Path, clock: FakeClock, factory: RecordingFactory
) -> None:
    Keystore().set_keys("identity", USER_KEY)
    factory.stubber.add_response(
        "get_session_token",
        {"Credentials": sts_credentials(4, in_(clock, 43200))},
        {"DurationSeconds": 43200, "SerialNumber": SERIAL, "TokenCode": "123456"},
    )
    creds = make_provider(clock, factory).credentials("identity", "123456")
    assert creds.access_key_id == "ASIASTUB000000000004"
    assert factory.sources == [USER_KEY.access_key_id]


def test_external_id_and_session_name_are_sent(
    isolated: Path, clock: FakeClock, factory: RecordingFactory
) -> None:
    (isolated / "home" / ".aws" / "config").write_text(
        "[profile user]\nregion = eu-central-1\n\n"
        "[profile partner]\nsource_profile = user\n"
        "role_arn = arn:aws:iam::333344445555:role/Partner\n"
        "external_id = ext-42\nrole_session_name = alice\nduration_seconds = 1800\n"
    )
    Keystore().set_keys("user", USER_KEY)
    factory.stubber.add_response(
        "assume_role",
        {"Credentials": sts_credentials(5, in_(clock, 1800))},
        {
            "RoleArn": "arn:aws:iam::333344445555:role/Partner",
            "RoleSessionName": "alice",
            "DurationSeconds": 1800,
            "ExternalId": "ext-42",
        },
    )
    creds = make_provider(clock, factory).credentials("partner")
    # No MFA and a role: the long-lived key assumes the role directly, no session needed.
    assert factory.sources == [USER_KEY.access_key_id]
    assert creds.lifetime == 1800


def test_revoked_cached_session_is_dropped_and_mfa_asked_again(
    aws_config: Path, clock: FakeClock, factory: RecordingFactory
) -> None:
    from vaultd.keystore import CachedSession

    store = Keystore()
    store.set_keys("identity", USER_KEY)
    session = Credentials(
        "ASIAREVOKED000000001", Secret("c" * 40), Secret("t" * 80), clock() + 7200, clock()
    )
    store.set_session("identity", CachedSession(SERIAL, session))
    factory.stubber.add_client_error(
        "assume_role", service_error_code="ExpiredToken", http_status_code=403
    )
    with pytest.raises(MfaRequired):
        make_provider(clock, factory).credentials("master")
    assert store.get_session("identity") is None
