"""`vaultd doctor` says when SDKs in this shell would find no region (issue: the AWS CLI v1
answered "You must specify a region" while doctor reported everything ok)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vaultd import doctor


def test_no_region_anywhere_is_a_warning_with_the_fix(aws_config: Path) -> None:
    found = doctor._region()
    assert found.level == doctor.WARN
    assert "find no region" in found.message
    assert f"under [default] in {aws_config}" in found.message


def test_the_profile_named_by_aws_profile_is_the_one_to_fix(
    aws_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "master")
    found = doctor._region()
    assert found.level == doctor.WARN
    assert "under [profile master]" in found.message


def test_region_from_the_default_profile(aws_config: Path) -> None:
    aws_config.write_text("[default]\nregion = eu-west-1\n" + aws_config.read_text())
    found = doctor._region()
    assert (found.level, found.message) == (doctor.OK, "SDKs in this shell use eu-west-1")


@pytest.mark.parametrize("variable", ["AWS_REGION", "AWS_DEFAULT_REGION"])
def test_region_from_the_environment(
    aws_config: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "ap-south-1")
    found = doctor._region()
    assert (found.level, found.message) == (doctor.OK, "SDKs in this shell use ap-south-1")


def test_a_missing_profile_is_named(aws_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nosuch")
    found = doctor._region()
    assert found.level == doctor.FAIL
    assert "nosuch" in found.message


def test_a_region_botocore_refuses_is_named_with_its_variable(
    aws_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "bogus region")
    found = doctor._region()
    assert found.level == doctor.FAIL
    assert found.message == (
        "AWS_DEFAULT_REGION=bogus region is not a region name like eu-west-1 (botocore refuses it)"
    )


@pytest.mark.parametrize("kind", ["directory", "devnull"])
def test_a_config_path_that_is_no_file_is_said_instead_of_advice_to_edit_it(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    path = isolated if kind == "directory" else Path("/dev/null")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(path))
    found = doctor._region()
    assert found.level == doctor.WARN
    # The daemon's and the command line's rule and words (`config.present`).
    what = "a directory" if kind == "directory" else "a character device, not a regular file"
    said = f"cannot read {path}: is {what}: fix it or point AWS_CONFIG_FILE at a file you can read"
    assert found.message == f"SDKs in this shell find no region: {said}"
    assert "under [default]" not in found.message
    (config_finding,), _ = doctor._config()
    assert (config_finding.level, config_finding.message) == (doctor.FAIL, said)
