"""The provider's STS calls, checked with botocore's Stubber: moto cannot tell us whether the
MFA parameters were sent or answer a wrong code the way STS does."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.stub import Stubber

from tests.helpers import FakeClock
from vaultd.core import config
from vaultd.core.credentials import AccessKeys, Credentials, Source
from vaultd.core.keystore import Keystore
from vaultd.core.provider import Provider
from vaultd.core.resolve import default_session_name
from vaultd.errors import MfaRejected, MfaRequired, NoKeys, StsError
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


def store_with_session(clock: FakeClock, key_id: str) -> Keystore:
    """The user's keys plus a cached MFA session with two hours left."""
    from vaultd.core.keystore import CachedSession

    store = Keystore()
    store.set_keys("identity", USER_KEY)
    session = Credentials(key_id, Secret("c" * 40), Secret("t" * 80), clock() + 7200, clock())
    store.set_session("identity", CachedSession(SERIAL, session))
    return store


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
    store_with_session(clock, "ASIACACHED0000000001")
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
    assert info.value.serial == SERIAL and info.value.reason is None  # no code source failed
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
    store = store_with_session(clock, "ASIAREVOKED000000001")
    factory.stubber.add_client_error(
        "assume_role", service_error_code="ExpiredToken", http_status_code=403
    )
    with pytest.raises(MfaRequired):
        make_provider(clock, factory).credentials("master")
    assert store.get_session("identity") is None


def write_config(isolated: Path, text: str) -> None:
    (isolated / "home" / ".aws" / "config").write_text(text)


def fake_tool(bin_dir: Path, name: str, script: str) -> Path:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


def session_response(
    factory: RecordingFactory, clock: FakeClock, code: str, n: int = 7
) -> dict[str, Any]:
    creds = sts_credentials(n, in_(clock, 43200))
    factory.stubber.add_response(
        "get_session_token",
        {"Credentials": creds},
        {"DurationSeconds": 43200, "SerialNumber": SERIAL, "TokenCode": code},
    )
    return creds


def test_mfa_process_supplies_the_code(
    isolated: Path, clock: FakeClock, factory: RecordingFactory
) -> None:
    write_config(
        isolated, f"[profile identity]\nmfa_serial = {SERIAL}\nmfa_process = echo 'code: 654321'\n"
    )
    Keystore().set_keys("identity", USER_KEY)
    session_response(factory, clock, "654321")
    creds = make_provider(clock, factory).credentials("identity")
    assert creds.access_key_id == "ASIASTUB000000000007"


def test_ykman_on_path_supplies_the_code(
    isolated: Path, clock: FakeClock, factory: RecordingFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    args_file = isolated / "ykman-args"
    fake_tool(isolated / "bin", "ykman", f'echo "$@" > {args_file}\necho 246810\n')
    monkeypatch.setenv("PATH", f"{isolated / 'bin'}:{os.environ['PATH']}")
    write_config(isolated, f"[profile identity]\nmfa_serial = {SERIAL}\nmfa_ykman = true\n")
    Keystore().set_keys("identity", USER_KEY)
    session_response(factory, clock, "246810")
    make_provider(clock, factory).credentials("identity")
    assert args_file.read_text().split() == ["oath", "accounts", "code", "--single", SERIAL]


def test_ykman_setting_and_failures_fall_back_to_the_person(
    isolated: Path, clock: FakeClock, factory: RecordingFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(isolated, f"[profile identity]\nmfa_serial = {SERIAL}\n")
    Keystore().set_keys("identity", USER_KEY)
    monkeypatch.setenv("PATH", str(isolated / "empty"))
    provider = make_provider(clock, factory)
    provider.ykman_default = True
    with pytest.raises(MfaRequired, match="ykman is not installed"):
        provider.credentials("identity")
    fake_tool(isolated / "bin", "ykman", "echo 'Error: no YubiKey detected' >&2\nexit 2\n")
    monkeypatch.setenv("PATH", str(isolated / "bin"))
    with pytest.raises(MfaRequired, match="no YubiKey detected"):
        provider.credentials("identity")
    assert factory.sources == []


def test_a_repeated_automatic_code_is_never_sent_twice(
    isolated: Path, clock: FakeClock, factory: RecordingFactory
) -> None:
    write_config(
        isolated, f"[profile identity]\nmfa_serial = {SERIAL}\nmfa_process = echo 111111\n"
    )
    Keystore().set_keys("identity", USER_KEY)
    session_response(factory, clock, "111111")
    pauses: list[float] = []
    provider = make_provider(clock, factory)
    provider.sleep = pauses.append
    provider.credentials("identity")
    Keystore().delete_session("identity")
    with pytest.raises(MfaRequired, match="already used") as info:
        provider.credentials("identity")
    assert len(pauses) == 2  # asked three times in all, pausing between
    # Why a person is asked now: said on `vaultd status`'s state line.
    assert info.value.reason is not None and "already used" in info.value.reason


def test_long_role_is_assumed_with_mfa_directly_and_cached(
    isolated: Path, clock: FakeClock, factory: RecordingFactory
) -> None:
    write_config(
        isolated,
        f"[profile identity]\nmfa_serial = {SERIAL}\n"
        f"[profile long]\nsource_profile = identity\nmfa_serial = {SERIAL}\n"
        f"role_arn = {ROLE}\nduration_seconds = 7200\nrole_session_name = me\n",
    )
    Keystore().set_keys("identity", USER_KEY)
    factory.stubber.add_response(
        "assume_role",
        {"Credentials": sts_credentials(8, in_(clock, 7200))},
        {
            "RoleArn": ROLE,
            "RoleSessionName": "me",
            "DurationSeconds": 7200,
            "SerialNumber": SERIAL,
            "TokenCode": "135790",
        },
    )
    provider = make_provider(clock, factory)
    creds = provider.credentials("long", "135790")
    assert factory.sources == [USER_KEY.access_key_id]  # no GetSessionToken before it
    assert creds.source_expiration == creds.expiration
    again = provider.credentials("long")  # from the keyring, no STS call, no code
    assert again.access_key_id == creds.access_key_id
    assert len(factory.sources) == 1


def test_chain_order_with_two_roles(
    isolated: Path, clock: FakeClock, factory: RecordingFactory
) -> None:
    write_config(
        isolated,
        f"[profile identity]\nmfa_serial = {SERIAL}\n"
        f"[profile a]\nsource_profile = identity\nrole_arn = arn:aws:iam::111111111111:role/A\n"
        f"role_session_name = ss\n"
        f"[profile b]\nsource_profile = a\nrole_arn = arn:aws:iam::222222222222:role/B\n"
        f"role_session_name = ss\nexternal_id = xb\n",
    )
    Keystore().set_keys("identity", USER_KEY)
    session = session_response(factory, clock, "123456", n=10)
    role_a = sts_credentials(11, in_(clock, 3600))
    factory.stubber.add_response(
        "assume_role",
        {"Credentials": role_a},
        {
            "RoleArn": "arn:aws:iam::111111111111:role/A",
            "RoleSessionName": "ss",
            "DurationSeconds": 3600,
        },
    )
    factory.stubber.add_response(
        "assume_role",
        {"Credentials": sts_credentials(12, in_(clock, 3600))},
        {
            "RoleArn": "arn:aws:iam::222222222222:role/B",
            "RoleSessionName": "ss",
            "DurationSeconds": 3600,
            "ExternalId": "xb",
        },
    )
    creds = make_provider(clock, factory).credentials("b", "123456")
    assert factory.sources == [
        USER_KEY.access_key_id,
        session["AccessKeyId"],
        role_a["AccessKeyId"],
    ]
    assert creds.access_key_id == "ASIASTUB000000000012"
    assert creds.source_expiration == clock() + 43200


PROCESS_KEY = "ASIAFROMPROCESS00001"


def process_root(isolated: Path, mfa: str = "") -> None:
    """Profile `sso`: temporary credentials from a credential_process (`mfa`: more keys for
    it); profile `role` assumes ROLE from it."""
    document = json.dumps(
        {
            "Version": 1,
            "AccessKeyId": PROCESS_KEY,
            "SecretAccessKey": "p" * 40,
            "SessionToken": "q" * 60,
            "Expiration": "2099-01-01T00:00:00Z",
        }
    )
    write_config(
        isolated,
        f"[profile sso]\ncredential_process = echo '{document}'\n{mfa}"
        f"[profile role]\nsource_profile = sso\nrole_arn = {ROLE}\nrole_session_name = ss\n",
    )


def test_credential_process_feeds_the_chain(
    isolated: Path, clock: FakeClock, factory: RecordingFactory
) -> None:
    process_root(isolated)
    factory.stubber.add_response(
        "assume_role",
        {"Credentials": sts_credentials(13, in_(clock, 3600))},
        {"RoleArn": ROLE, "RoleSessionName": "ss", "DurationSeconds": 3600},
    )
    provider = make_provider(clock, factory)
    creds = provider.credentials("role")
    assert factory.sources == [PROCESS_KEY]
    assert creds.source_expiration is None  # no MFA session here for a code to renew
    served = provider.credentials("sso")  # temporary already: served as they are
    assert served.access_key_id == PROCESS_KEY


def test_mfa_over_temporary_root_credentials_goes_with_the_first_assume_role(
    isolated: Path, clock: FakeClock, factory: RecordingFactory
) -> None:
    # Temporary credentials cannot make an MFA session (GetSessionToken), so botocore sends
    # the profile's mfa_serial with AssumeRole. Before, vaultd assumed the role without it;
    # earlier still, it took the process's credentials for the MFA session and asked early
    # for a code that nothing could use.
    process_root(isolated, f"mfa_serial = {SERIAL}\n")
    provider = make_provider(clock, factory)
    with pytest.raises(MfaRequired):
        provider.credentials("role")
    factory.stubber.add_response(
        "assume_role",
        {"Credentials": sts_credentials(13, in_(clock, 3600))},
        {
            "RoleArn": ROLE,
            "RoleSessionName": "ss",
            "DurationSeconds": 3600,
            "SerialNumber": SERIAL,
            "TokenCode": "123456",
        },
    )
    creds = provider.credentials("role", "123456")
    assert factory.sources == [PROCESS_KEY]
    assert creds.source_expiration == clock() + 3600  # a code renews the role's set
    again = provider.credentials("role")  # from the keyring, no code, no STS call
    assert again.access_key_id == creds.access_key_id
    assert provider.credentials("sso").access_key_id == PROCESS_KEY


OTHER_SERIAL = "arn:aws:iam::111122223333:mfa/other"


@pytest.mark.parametrize("case", ["only the last names it", "direct role first", "two devices"])
def test_over_temporary_root_credentials_one_code_goes_with_one_assume_role(
    isolated: Path, clock: FakeClock, factory: RecordingFactory, case: str
) -> None:
    # root (temporary credentials) -> role -> b. "only the last names it": botocore assumes
    # role without MFA and sends the code with b's AssumeRole; vaultd sent it with role's.
    # The second breaker's: "direct role first": role lasts 2 hours, so it takes the code
    # itself, and b (naming the same device) took it again: two AssumeRoles, one code.
    # "two devices": role names one device and b another; the code asked for (b's device,
    # the one nearest the profile) went with role.
    role_b = "arn:aws:iam::222222222222:role/B"
    if case == "only the last names it":
        process_root(isolated)
        first, device, with_code = "", SERIAL, "b"
    elif case == "direct role first":
        process_root(isolated, f"mfa_serial = {SERIAL}\n")
        first, device, with_code = "duration_seconds = 7200\n", SERIAL, "role"
    else:
        process_root(isolated)
        first, device, with_code = f"mfa_serial = {SERIAL}\n", OTHER_SERIAL, "b"
    with (isolated / "home" / ".aws" / "config").open("a") as fh:
        fh.write(first)  # into [profile role], the file's last section so far
        fh.write(f"[profile b]\nsource_profile = role\nrole_arn = {role_b}\n")
        fh.write(f"role_session_name = sb\nmfa_serial = {device}\n")
    code = {"SerialNumber": device, "TokenCode": "123456"}
    role_a = sts_credentials(13, in_(clock, 3600))
    factory.stubber.add_response(
        "assume_role",
        {"Credentials": role_a},
        {
            "RoleArn": ROLE,
            "RoleSessionName": "ss",
            "DurationSeconds": 7200 if case == "direct role first" else 3600,
            **(code if with_code == "role" else {}),
        },
    )
    factory.stubber.add_response(
        "assume_role",
        {"Credentials": sts_credentials(14, in_(clock, 3600))},
        {
            "RoleArn": role_b,
            "RoleSessionName": "sb",
            "DurationSeconds": 3600,
            **(code if with_code == "b" else {}),
        },
    )
    creds = make_provider(clock, factory).credentials("b", "123456")
    assert factory.sources == [PROCESS_KEY, role_a["AccessKeyId"]]
    assert creds.access_key_id == "ASIASTUB000000000014"


def test_broken_credential_process_is_a_clear_error(
    isolated: Path, clock: FakeClock, factory: RecordingFactory
) -> None:
    from vaultd.core.mfa import SourceFailed

    write_config(isolated, "[profile sso]\ncredential_process = echo not-json\n")
    with pytest.raises(SourceFailed, match="Version 1 JSON"):
        make_provider(clock, factory).credentials("sso")
    write_config(isolated, f"[profile sso]\ncredential_process = {sys.executable} -c 'exit(3)'\n")
    with pytest.raises(SourceFailed, match="status 3"):
        make_provider(clock, factory).credentials("sso")


def test_revoked_cached_long_role_is_dropped_not_the_root_session(
    isolated: Path, clock: FakeClock, factory: RecordingFactory
) -> None:
    from vaultd.core.keystore import CachedSession

    write_config(
        isolated,
        f"[profile identity]\nmfa_serial = {SERIAL}\n"
        f"[profile long]\nsource_profile = identity\nmfa_serial = {SERIAL}\n"
        f"role_arn = {ROLE}\nduration_seconds = 7200\n"
        "[profile next]\nsource_profile = long\nrole_arn = arn:aws:iam::333333333333:role/N\n",
    )
    store = Keystore()
    store.set_keys("identity", USER_KEY)
    role = Credentials(
        "ASIALONGROLE00000001", Secret("c" * 40), Secret("t" * 80), clock() + 7200, clock()
    )
    store.set_session("long", CachedSession(SERIAL, role))
    factory.stubber.add_client_error(
        "assume_role", service_error_code="ExpiredToken", http_status_code=403
    )
    with pytest.raises(MfaRequired):
        make_provider(clock, factory).credentials("next")
    assert factory.sources == ["ASIALONGROLE00000001"]
    assert store.get_session("long") is None
