"""The one time reader and the wire shapes, each checked against literal expected bytes."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.helpers import make_creds, make_plan
from vaultd.core import credentials
from vaultd.core.credentials import Credentials, parse_time
from vaultd.core.process import credentials_from_process
from vaultd.secret import Secret

# 2027-01-15T08:00:00Z: 17:00 in Tokyo, 00:00 in Los Angeles.
INSTANT = 1_800_000_000.0


@pytest.fixture(params=["Asia/Tokyo", "America/Los_Angeles", "UTC"])
def local_zone(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with the process's local time zone set, so local time could leak in."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = str(request.param)
    time.tzset()
    try:
        yield str(request.param)
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


def test_the_local_zone_really_is_set(local_zone: str) -> None:
    # Guards the fixture: were TZ ignored, the tests below could not fail.
    expected = {"Asia/Tokyo": 9 * 3600, "America/Los_Angeles": -8 * 3600, "UTC": 0}
    assert time.localtime(INSTANT).tm_gmtoff == expected[local_zone]


@pytest.mark.parametrize(
    "text",
    [
        "2027-01-15T08:00:00Z",
        "2027-01-15T08:00:00",  # no zone: AWS documents UTC, so UTC
        "2027-01-15T08:00:00+00:00",
        "2027-01-15T17:00:00+09:00",
        "2027-01-15T00:00:00-08:00",
        "2027-01-15 08:00:00",
        "2027-01-15T08:00:00.000Z",
    ],
)
def test_every_spelling_is_the_same_instant(local_zone: str, text: str) -> None:
    assert parse_time(text) == INSTANT


def test_datetimes_from_botocore_and_naive_ones(local_zone: str) -> None:
    aware = datetime(2027, 1, 15, 17, tzinfo=timezone(timedelta(hours=9)))
    assert parse_time(aware) == INSTANT
    assert parse_time(datetime(2027, 1, 15, 8)) == INSTANT  # naive: UTC
    assert parse_time(datetime(2027, 1, 15, 8, tzinfo=UTC)) == INSTANT


@pytest.mark.parametrize("text", ["", "tomorrow", "2027-13-01T00:00:00Z", "1800000000"])
def test_what_is_not_iso8601_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not an ISO 8601 time"):
        parse_time(text)


def test_credential_process_without_a_zone_is_utc(local_zone: str) -> None:
    # issue 10 §2: at TZ=Asia/Tokyo this set looked 9 hours expired and was re-run in a loop;
    # at America/Los_Angeles IMDS served an Expiration 8 hours late.
    doc = {
        "Version": 1,
        "AccessKeyId": "ASIAPROCESS000000001",
        "SecretAccessKey": "s" * 40,
        "SessionToken": "t" * 60,
        "Expiration": "2027-01-15T08:00:00",
    }
    creds = credentials_from_process(f"echo '{json.dumps(doc)}'", issued=INSTANT - 3600)
    assert isinstance(creds, Credentials)
    assert creds.expiration == INSTANT
    assert credentials.iso8601(creds.expiration) == "2027-01-15T08:00:00Z"


def test_iso8601_round_trips(local_zone: str) -> None:
    assert credentials.iso8601(INSTANT) == "2027-01-15T08:00:00Z"
    assert parse_time(credentials.iso8601(INSTANT + 59)) == INSTANT + 59


CREDS = Credentials(
    "ASIAWIRE000000000001",
    Secret("wire-secret"),
    Secret("wire-token"),
    expiration=INSTANT + 3600,
    issued=INSTANT,
    arn="arn:aws:sts::222233334444:assumed-role/DeveloperRole/s",
)


def test_imds_fields() -> None:
    assert list(credentials.imds_fields(CREDS, "222233334444").items()) == [
        ("Code", "Success"),
        ("LastUpdated", "2027-01-15T08:00:00Z"),
        ("Type", "AWS-HMAC"),
        ("AccessKeyId", "ASIAWIRE000000000001"),
        ("SecretAccessKey", "wire-secret"),
        ("Token", "wire-token"),
        ("Expiration", "2027-01-15T09:00:00Z"),
        ("AccountId", "222233334444"),
    ]
    assert "AccountId" not in credentials.imds_fields(CREDS)


def test_container_fields() -> None:
    assert json.dumps(credentials.container_fields(CREDS, "arn:aws:iam::2:role/R")) == (
        '{"AccessKeyId": "ASIAWIRE000000000001", "SecretAccessKey": "wire-secret", '
        '"Token": "wire-token", "Expiration": "2027-01-15T09:00:00Z", '
        '"RoleArn": "arn:aws:iam::2:role/R"}'
    )
    assert "RoleArn" not in credentials.container_fields(CREDS, None)


def test_process_fields() -> None:
    assert json.dumps(credentials.process_fields(CREDS)) == (
        '{"Version": 1, "AccessKeyId": "ASIAWIRE000000000001", "SecretAccessKey": '
        '"wire-secret", "SessionToken": "wire-token", "Expiration": "2027-01-15T09:00:00Z"}'
    )


def test_environment_and_shared_file_section() -> None:
    assert credentials.environment(CREDS, "eu-west-1") == {
        "AWS_ACCESS_KEY_ID": "ASIAWIRE000000000001",
        "AWS_SECRET_ACCESS_KEY": "wire-secret",
        "AWS_SESSION_TOKEN": "wire-token",
        "AWS_CREDENTIAL_EXPIRATION": "2027-01-15T09:00:00Z",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    assert "AWS_REGION" not in credentials.environment(CREDS)
    assert credentials.shared_file_section("master", CREDS, "eu-west-1") == (
        "[master]\naws_access_key_id = ASIAWIRE000000000001\n"
        "aws_secret_access_key = wire-secret\naws_session_token = wire-token\n"
        "aws_credential_expiration = 2027-01-15T09:00:00Z\nregion = eu-west-1\n"
    )


def test_document_round_trips_through_from_document(local_zone: str) -> None:
    creds = make_creds(INSTANT)
    doc = credentials.document(make_plan(), creds)
    assert list(doc) == [
        "Profile",
        "RoleName",
        "RoleArn",
        "Region",
        "AccessKeyId",
        "SecretAccessKey",
        "Token",
        "Expiration",
        "LastUpdated",
        "Arn",
    ]
    back = credentials.from_document(json.loads(json.dumps(doc)))
    assert back == creds
    assert back.secret_access_key.reveal() == creds.secret_access_key.reveal()
