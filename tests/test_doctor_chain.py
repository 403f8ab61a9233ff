"""`vaultd doctor` names whatever answers the SDKs' credential chain in this shell before
IMDS (issue 10 §6: with AWS_EC2_METADATA_DISABLED=true or an exported AWS_ACCESS_KEY_ID,
doctor said all was well, or blamed the daemon)."""

from __future__ import annotations

import os
from pathlib import Path

from vaultd import doctor


def lines(env: dict[str, str]) -> list[str]:
    return [f.line() for f in doctor._chain({**os.environ, **env})]


def test_a_clean_shell_is_ok(aws_config: Path) -> None:
    assert lines({}) == ["[  ok] chain: nothing in this shell answers the SDKs before IMDS"]


def test_metadata_disabled_is_named_with_its_fix(aws_config: Path) -> None:
    assert lines({"AWS_EC2_METADATA_DISABLED": "true"}) == [
        "[FAIL] chain: AWS_EC2_METADATA_DISABLED=true turns the SDKs' IMDS lookup off, so SDKs "
        "here never ask vaultd: unset AWS_EC2_METADATA_DISABLED"
    ]


def test_exported_keys_are_named_with_their_fix(aws_config: Path) -> None:
    assert lines({"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s"}) == [
        "[FAIL] chain: AWS_ACCESS_KEY_ID is set, so SDKs here never ask vaultd: "
        "unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY"
    ]


def test_the_shells_profile_and_the_shared_files_are_walked(
    aws_config: Path, isolated: Path
) -> None:
    # AWS_PROFILE=master: a role the SDK would assume itself from `identity`'s keys.
    assert lines({"AWS_PROFILE": "master"}) == [
        f"[FAIL] chain: [profile master] in {aws_config} has role_arn, so SDKs here never ask "
        "vaultd: unset AWS_PROFILE"
    ]
    keys = isolated / "home" / ".aws" / "credentials"
    keys.write_text("[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = s\n")
    assert lines({}) == [
        f"[FAIL] chain: [default] in {keys} has aws_access_key_id, so SDKs here never ask "
        f"vaultd: remove the keys from [default] in {keys} (`vaultd add default` keeps them "
        "in the keyring)"
    ]
    assert (
        "AWS_CONTAINER_CREDENTIALS_FULL_URI is set"
        in lines({"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:1/x"})[1]
    )


def test_a_value_botocore_keeps_whole_is_reported_by_doctor(aws_config: Path) -> None:
    # issue 10 §1: `region = eu-west-1  # Ireland` reached STS; doctor said the config was fine.
    aws_config.write_text(aws_config.read_text() + "region = eu-west-1  # Ireland\n")
    found, profiles = doctor._config()
    failed = [f for f in found if f.level == doctor.FAIL]
    assert len(failed) == 1 and "master" not in profiles and "identity" in profiles
    assert failed[0].message.startswith(f"{aws_config}: profile 'master': region is not a region")
    assert "'eu-west-1  # Ireland'" in failed[0].message


def test_a_file_botocore_refuses_is_said_once_with_its_own_advice(aws_config: Path) -> None:
    # The newcomer's finding: "...merge or delete one of them: fix that line".
    text = aws_config.read_text()
    second = len(text.splitlines()) + 1  # where configparser found it again
    aws_config.write_text(text + "[profile master]\nregion = x\n")
    found, profiles = doctor._config()
    assert [f.message for f in found] == [
        f"{aws_config}: section [profile master] appears twice (line {second}); botocore and "
        "the AWS CLI refuse the file: merge or delete one of them"
    ]
    assert profiles == {}
