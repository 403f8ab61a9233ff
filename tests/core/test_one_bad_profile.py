"""One profile with a wrong value stops only itself (the tester's finding: `region =
eu-west-1  # Ireland` in an unrelated `[profile other]` stopped list, switch, exec and the
daemon's refresh of `master`). botocore reads such a file, and `AWS_PROFILE=master aws`
never looks at `other`; vaultd checks only the profiles a request uses."""

from __future__ import annotations

import pytest

from vaultd.core import config, inventory, resolve
from vaultd.core.keystore import Keystore
from vaultd.errors import ConfigError

ROLE = "arn:aws:iam::222233334444:role/DeveloperRole"
TEXT = (
    "[profile identity]\n"
    "mfa_serial = arn:aws:iam::111122223333:mfa/elmerfudd\n"
    "[profile master]\n"
    f"source_profile = identity\nrole_arn = {ROLE}\n"
    "[profile other]\n"
    "region = eu-west-1  # Ireland\n"
    "[profile via-other]\n"
    f"source_profile = other\nrole_arn = {ROLE}\n"
)


def test_profiles_beside_a_bad_one_resolve() -> None:
    profiles = config.parse_profiles(TEXT, "cfg")
    assert resolve.plan(profiles, "master").role_arn == ROLE
    assert resolve.plan(profiles, "identity").root == "identity"
    assert sorted(profiles) == ["identity", "master", "other", "via-other"]


@pytest.mark.parametrize("name", ["other", "via-other"])
def test_the_bad_profile_and_its_dependents_name_it(name: str) -> None:
    profiles = config.parse_profiles(TEXT, "cfg")
    with pytest.raises(ConfigError) as info:
        resolve.plan(profiles, name)
    assert info.value.message.startswith("cfg: profile 'other': region is not a region")


def test_list_marks_the_bad_row_and_lists_the_rest() -> None:
    profiles = config.parse_profiles(TEXT, "cfg")
    rows = {
        r["name"]: r
        for r in inventory.profile_rows(
            profiles, Keystore(), active="master", exec_tokens={}, now=0.0
        )
    }
    assert set(rows) == {"identity", "master", "other", "via-other"}
    assert rows["other"]["source"] == "config error" and rows["other"]["in_config"]
    assert "region is not a region" in rows["other"]["problem"]
    assert rows["master"]["problem"] is None and rows["master"]["role_arn"] == ROLE
    assert rows["master"]["active"]
    # A profile built on it fails as `switch` would find it, its role still shown.
    assert rows["via-other"]["problem"].startswith("cfg: profile 'other': region is not")
    assert rows["via-other"]["role_arn"] == ROLE


def test_list_names_a_broken_chain_as_switch_would() -> None:
    # The breaker's finding: a source_profile loop or a missing source was listed as
    # "via loopb" and "via ghost", with no problem, until `switch` refused it.
    text = (
        "[profile loopa]\nsource_profile = loopb\n[profile loopb]\nsource_profile = loopa\n"
        f"[profile orphan]\nsource_profile = ghost\nrole_arn = {ROLE}\n"
    )
    profiles = config.parse_profiles(text, "cfg")
    rows = {
        r["name"]: r
        for r in inventory.profile_rows(profiles, Keystore(), active=None, exec_tokens={}, now=0)
    }
    for name in rows:
        with pytest.raises(ConfigError) as info:
            resolve.plan(profiles, name)
        assert (rows[name]["source"], rows[name]["problem"]) == (
            "config error",
            info.value.message,
        )
    assert "loopa -> loopb -> loopa" in rows["loopa"]["problem"]
    assert rows["orphan"]["role_arn"] == ROLE


def test_every_problem_is_still_there_to_report() -> None:
    profiles = config.parse_profiles(TEXT, "cfg")
    assert list(profiles.problems()) == ["other"]
    assert set(profiles.usable()) == {"identity", "master", "via-other"}


def test_what_is_built_on_a_root_skips_the_bad_profile() -> None:
    profiles = config.parse_profiles(TEXT, "cfg")
    assert resolve.built_on(profiles, "identity") == ["identity", "master"]
