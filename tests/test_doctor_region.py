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
