"""vaultd reads ~/.aws/config exactly as botocore does, and names every value AWS would refuse."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import botocore.exceptions
import botocore.session
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaultd.core import config, rules
from vaultd.errors import ConfigError


def test_a_quoted_section_name_is_the_profile_botocore_sees() -> None:
    # The AWS CLI writes `aws configure --profile "Foo Bar"` as [profile 'Foo Bar'].
    profiles = config.parse_profiles("[profile 'Foo Bar']\nregion = eu-west-1\n")
    assert list(profiles) == ["Foo Bar"]
    assert profiles["Foo Bar"].region == "eu-west-1"


def test_a_section_pasted_twice_is_refused_in_one_line_naming_file_and_section() -> None:
    text = (
        "[profile identity]\n"
        "[profile master]\nsource_profile = identity\n"
        "role_arn = arn:aws:iam::222233334444:role/DeveloperRole\n"
        "[profile master]\nsource_profile = identity\n"
        "role_arn = arn:aws:iam::222233334444:role/OtherRole\n"
    )
    with pytest.raises(ConfigError) as info:
        config.parse_profiles(text, "/home/u/.aws/config")
    message = info.value.message
    assert "\n" not in message
    assert message.startswith("/home/u/.aws/config: ")
    assert "[profile master] appears twice" in message


def test_a_key_given_twice_is_refused_as_botocore_does() -> None:
    with pytest.raises(ConfigError, match=r"'region' appears twice in section \[profile a\]"):
        config.parse_profiles("[profile a]\nregion = eu-west-1\nregion = eu-west-2\n", "cfg")


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("region", "eu-west-1  # Ireland", "is not a region name"),
        ("external_id", "has a space", "external_id must be 2-1224 characters"),
        ("role_arn", "arn:aws:iam::222233334444:role/Dev Role", "is not a role ARN"),
        ("duration_seconds", "3600s", "whole number"),
        ("mfa_ykman", "sometimes", "must be true or false"),
    ],
)
def test_a_wrong_value_is_named_with_profile_key_and_value(
    key: str, value: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse_profiles(f"[profile master]\n{key} = {value}\n", "cfg")["master"]
    message = info.value.message
    assert message.startswith(f"cfg: profile 'master': {key} ")
    assert fragment in message
    assert repr(value) in message


def test_values_are_kept_whole_as_botocore_keeps_them(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("[profile master]\nregion = eu-west-1  # Ireland\noutput = json ; x\n")
    raw = config.read_profile_map(path)
    assert raw["master"]["region"] == "eu-west-1  # Ireland"
    assert botocore_profiles(path)["master"]["region"] == "eu-west-1  # Ireland"


@pytest.mark.parametrize(
    ("profile", "served"),
    [
        ("team/dev", "team-dev"),
        ("Foo Bar", "Foo-Bar"),
        ("café", "caf-"),
        ("..", "..-"),
        ("dev@corp.example", "dev@corp.example"),
        ("x" * 80, "x" * 64),
    ],
)
def test_the_imds_role_name_is_one_segment_like_an_iam_role_name(profile: str, served: str) -> None:
    assert config.Profile(name=profile).role_name == served
    assert rules.IAM_ROLE_NAME.fullmatch(served)


@given(st.text(min_size=1, max_size=100))
def test_every_profile_name_maps_to_a_role_name(name: str) -> None:
    served = rules.imds_role_name(name)
    assert rules.IAM_ROLE_NAME.fullmatch(served)
    assert served not in (".", "..")


# -- generated config files: vaultd's view equals botocore's ----------------------------------
NAME = st.text(alphabet="ab-_./@ '\"", min_size=1, max_size=6)
VALUES: dict[str, st.SearchStrategy[str]] = {
    "source_profile": st.text(alphabet="ab-_./@ ", min_size=1, max_size=6).map(str.strip),
    "role_arn": st.sampled_from(
        ["arn:aws:iam::111122223333:role/A", "arn:aws-cn:iam::222233334444:role/path/B+x"]
    ),
    "mfa_serial": st.sampled_from(["arn:aws:iam::111122223333:mfa/u", "GAHT12345678"]),
    "external_id": st.sampled_from(["ext-1", "a:b/c=d"]),
    "role_session_name": st.sampled_from(["me", "vaultd@corp"]),
    "duration_seconds": st.integers(900, 43200).map(str),
    "region": st.sampled_from(["eu-west-1", "us-gov-west-1", "ap-northeast-1"]),
    "sts_regional_endpoints": st.sampled_from(["legacy", "regional"]),
    "mfa_process": st.sampled_from(["pass otp aws", "echo 123456 # code"]),
    "mfa_ykman": st.sampled_from(["true", "false", "True"]),
    "credential_process": st.sampled_from(["/bin/creds --json", "x  ;  y"]),
    "output": st.sampled_from(["json", "text"]),
    "sso_start_url": st.just("https://example.awsapps.com/start"),
}
KEY_SPELLING = st.sampled_from(["{k} = {v}", "{k}={v}", "{k}: {v}", "  {K} = {v}  "])
HEADER = st.one_of(
    st.just("default"),
    st.just("DEFAULT"),
    NAME.map(lambda n: f"profile {n}"),
    NAME.map(lambda n: f"profile '{n}'"),
    NAME.map(lambda n: f'profile "{n}"'),
    NAME.map(lambda n: f"profile  {n}"),
    NAME.map(lambda n: f"sso-session {n}"),
    st.just("profilex"),
    st.just("services s"),
)
SECTION = st.tuples(
    HEADER,
    st.lists(
        st.tuples(st.sampled_from(sorted(VALUES)), KEY_SPELLING).flatmap(
            lambda kf: VALUES[kf[0]].map(lambda v: kf[1].format(k=kf[0], K=kf[0].capitalize(), v=v))
        ),
        max_size=5,
    ),
    st.sampled_from(["", "# a comment\n", "; another\n", "\n"]),
)


def render(sections: list[tuple[str, list[str], str]]) -> str:
    return "".join(
        f"{extra}[{header}]\n" + "".join(line + "\n" for line in lines)
        for header, lines, extra in sections
    )


def botocore_profiles(path: Path) -> dict[str, Any]:
    """What a botocore session (the AWS CLI, boto3) reads from this config file."""
    session = botocore.session.Session()
    session.set_config_variable("config_file", str(path))
    session.set_config_variable("credentials_file", os.devnull)
    return dict(session.full_config["profiles"])


def vaultd_view(profile: config.Profile) -> dict[str, str]:
    out = {}
    for key in config.KNOWN_KEYS:
        value = getattr(profile, key)
        if value is not None:
            out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def botocore_view(keys: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key in config.KNOWN_KEYS:
        value = keys.get(key)
        if isinstance(value, str) and value.strip():
            out[key] = value.strip().lower() if key == "mfa_ykman" else value.strip()
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SECTION, max_size=6))
def test_vaultd_reads_every_generated_config_as_botocore_does(
    sections: list[tuple[str, list[str], str]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config"
        path.write_text(render(sections), encoding="utf-8")
        try:
            theirs = botocore_profiles(path)
        except botocore.exceptions.ConfigParseError:
            with pytest.raises(ConfigError) as info:
                config.load_profiles(path)
            assert "\n" not in info.value.message and str(path) in info.value.message
            return
        refused = {
            (name, key)
            for name, keys in theirs.items()
            for key, value in botocore_view(keys).items()
            if rules.problem(key, value) is not None
        } | {  # `key =` then indented lines: botocore reads a nested block, not a value
            (name, key)
            for name, keys in theirs.items()
            for key in config.KNOWN_KEYS
            if isinstance(keys.get(key), dict)
        }
        if refused:  # e.g. an indented line, which INI reads as the value's second line
            problems = config.load_profiles(path).problems()
            assert set(problems) == {n for n, _ in refused}, problems
            for n, message in problems.items():
                assert any(f"profile {n!r}: {k} " in message for m, k in refused if m == n)
            return
        ours = config.load_profiles(path)
    assert set(ours) == set(theirs)
    for name, profile in ours.items():
        assert vaultd_view(profile) == botocore_view(theirs[name]), name


def test_a_nested_block_where_a_value_belongs_is_named() -> None:
    # Found by the generated configs: botocore reads `key =` plus indented lines as a block.
    text = "[default]\nsource_profile =\n  sso_start_url = https://example.awsapps.com/start\n"
    with pytest.raises(ConfigError, match="profile 'default': source_profile must be one value"):
        config.parse_profiles(text, "cfg")["default"]
