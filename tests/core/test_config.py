"""Reading ~/.aws/config and vaultd's own settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import README_CONFIG
from vaultd import settings
from vaultd.client import ensure_private_dir
from vaultd.core import config, resolve, rules
from vaultd.errors import ConfigError, UnknownProfile


def test_readme_profiles_parse() -> None:
    profiles = config.parse_profiles(README_CONFIG)
    assert set(profiles) == {"identity", "master"}
    assert profiles["master"].source_profile == "identity"
    assert profiles["master"].role_name == "DeveloperRole"
    assert profiles["identity"].role_name == "identity"


def test_default_is_a_profile_and_nothing_is_inherited() -> None:
    profiles = config.parse_profiles(
        "[default]\nregion = eu-west-1\nmfa_serial = arn:aws:iam::111122223333:mfa/x\n"
        "[profile other]\noutput = json\nsso_start_url = https://x\n"
        "[sso-session s]\nsso_region = x\n"
    )
    assert profiles["default"].region == "eu-west-1"
    assert profiles["other"].mfa_serial is None  # aws-vault would inherit it; botocore does not
    assert profiles["other"].region is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[profile a]\nrole_arn = not-an-arn\n", "profile 'a': role_arn is not a role ARN"),
        ("[profile a]\nduration_seconds = 60\n", "profile 'a': duration_seconds must be between"),
        ("[profile a]\nduration_seconds = soon\n", "whole number"),
        ("[profile a]\nmfa_serial = 123\n", "mfa_serial is not an MFA device ARN"),
        ("[profile a]\nrole_session_name = has space\n", "role_session_name"),
        ("[profile a\nx = 1\n", "not valid INI"),
        ("role_arn = orphan\n", "not valid INI"),
    ],
)
def test_bad_config_names_profile_and_key(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse_profiles(text, "cfg")["a"]
    assert fragment in info.value.message
    assert "\n" not in info.value.message


@pytest.mark.parametrize(
    ("text", "said"),
    [
        # The tester's finding: an unterminated header said only "Source contains parsing
        # errors".
        (
            "[default]\nregion = eu-west-1\n\n[profile a]\nregion = x\n\n[profile\n",
            "cfg line 7 is not valid INI: '[profile'",
        ),
        ("[profile a]\nkey\n", "cfg line 2 is not valid INI: 'key'"),
        (
            "role_arn = orphan\n",
            "cfg line 1 is not valid INI: 'role_arn = orphan' (before any [section])",
        ),
        (
            "[profile a]\nk\n = y\n[profile b",
            "cfg lines 2, 3, 4 are not valid INI: 'k', ' = y', '[profile b'",
        ),
        # Escaped, cut, and at most three shown.
        (
            "[profile a]\nk\n\x1b]0;t\x07\u202e\n" + "z" * 70 + "\nx\ny\n",
            "cfg lines 2, 3, 4 and 2 more are not valid INI: 'k', '\\x1b]0;t\\x07\\u202e', '"
            + "z" * 60
            + "...(+10 chars)'",
        ),
    ],
)
def test_an_ini_error_names_the_lines_and_shows_them(text: str, said: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse_profiles(text, "cfg")
    assert info.value.message == said


@pytest.mark.parametrize(
    ("data", "said"),
    [
        # The breaker's findings: a byte position with no line, and a value on the line
        # after its key ("not enough values to unpack (expected 2, got 1)"), naming nothing.
        (
            b"[default]\nregion = x\n# caf\xe9\n",
            "line 3 is not UTF-8 text (byte 0xe9)",
        ),
        (
            b"[default]\nregion = x\n[profile a]\nrole_arn =\n  arn:aws:iam::1:role/X\n",
            "[profile a] role_arn: the value is on the lines after `key =`, which botocore "
            "reads as a block of `name = value` lines: put it on the key's own line",
        ),
        (  # the newcomer's: the keys after an unclosed header became duplicates
            b"[default]\nregion = x\n[profile a\nregion = y\n",
            "line 3 is not valid INI: '[profile a'",
        ),
        (  # the second breaker's: a real block, one line of it astray
            b"[profile a]\ns3 =\n  max_concurrent_requests = 10\n  junk\n",
            "[profile a] s3: 'junk' in its block is not `name = value`",
        ),
    ],
)
def test_a_file_botocore_cannot_read_is_named_by_line_or_key(
    tmp_path: Path, data: bytes, said: str
) -> None:
    path = tmp_path / "config"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        config.load_profiles(path)
    assert info.value.message == f"{path} {said}"


def test_missing_file_is_no_profiles(tmp_path: Path) -> None:
    assert config.load_profiles(tmp_path / "none") == {}


def test_unknown_profile_names_the_file_it_was_looked_up_in_even_an_empty_one() -> None:
    # The third breaker's: Profiles with none is falsy, and the default path was named.
    with pytest.raises(UnknownProfile) as info:
        config.get_profile(config.Profiles({}, "/x/y"), "a")
    assert info.value.message == "no profile 'a' in /x/y (profiles: none)"


def test_unknown_profile_lists_known_ones() -> None:
    profiles = config.parse_profiles(README_CONFIG)
    with pytest.raises(UnknownProfile, match="identity, master"):
        config.get_profile(profiles, "nope")


def test_config_path_honours_env(tmp_path: Path) -> None:
    assert config.config_path({"AWS_CONFIG_FILE": str(tmp_path / "c")}) == tmp_path / "c"
    assert config.config_path({"HOME": str(tmp_path)}) == tmp_path / ".aws" / "config"


# -- resolution ------------------------------------------------------------------------------
def test_plan_for_readme_master() -> None:
    plan = resolve.plan(config.parse_profiles(README_CONFIG), "master", user="elmer")
    assert plan.root == "identity"
    assert plan.session and plan.mfa_serial == "arn:aws:iam::111122223333:mfa/elmerfudd"
    assert [s.role_arn for s in plan.roles] == ["arn:aws:iam::222233334444:role/DeveloperRole"]
    assert plan.roles[0].session_name == "vaultd-elmer"
    assert plan.roles[0].duration == 3600
    assert plan.region == "us-east-1"


def test_role_chain_order_and_region() -> None:
    text = (
        "[profile user]\nregion = eu-north-1\n"
        "[profile a]\nsource_profile = user\nrole_arn = arn:aws:iam::111111111111:role/A\n"
        "[profile b]\nsource_profile = a\nrole_arn = arn:aws:iam::222222222222:role/B\n"
        "duration_seconds = 900\n"
    )
    plan = resolve.plan(config.parse_profiles(text), "b")
    assert [s.profile for s in plan.roles] == ["a", "b"]
    assert plan.roles[1].duration == 900
    assert plan.region == "eu-north-1"
    assert not plan.session  # no MFA and a role: no GetSessionToken needed
    assert plan.role_name == "B"


SSO_ROOT = (
    "[profile sso]\nsso_session = corp\nsso_account_id = 111122223333\n"
    "sso_role_name = Dev\n[sso-session corp]\nsso_start_url = https://x.awsapps.com/start\n"
    "sso_region = eu-west-1\n"
)


@pytest.mark.parametrize(("root", "refused"), [(SSO_ROOT, True), ("[profile sso]\n", False)])
def test_a_role_over_iam_identity_center_is_role_chaining(root: str, refused: bool) -> None:
    # IAM Identity Center's credentials are a role's: the first role assumed from them is
    # capped at one hour too. Before, 7200 went to STS, which refuses it.
    text = root + (
        "[profile a]\nsource_profile = sso\nrole_arn = arn:aws:iam::111111111111:role/A\n"
        "duration_seconds = 7200\n"
    )
    if not refused:  # keys in the keyring: the first role may last 12 hours
        assert resolve.plan(config.parse_profiles(text), "a").roles[0].duration == 7200
        return
    with pytest.raises(ConfigError, match="'a': duration_seconds 7200 is over one hour"):
        resolve.plan(config.parse_profiles(text), "a")
    fine = resolve.plan(config.parse_profiles(text.replace("7200", "3600")), "a")
    assert fine.roles[0].duration == 3600


def test_loops_and_missing_sources_are_named() -> None:
    text = (
        "[profile a]\nsource_profile = b\n[profile b]\nsource_profile = c\n"
        "[profile c]\nsource_profile = a\n"
    )
    with pytest.raises(ConfigError, match="a -> b -> c -> a"):
        resolve.plan(config.parse_profiles(text), "a")
    with pytest.raises(ConfigError, match="'ghost' is not a profile"):
        resolve.plan(config.parse_profiles("[profile a]\nsource_profile = ghost\n"), "a")
    with pytest.raises(ConfigError, match="needs a source_profile"):
        resolve.plan(
            config.parse_profiles("[profile a]\nrole_arn = arn:aws:iam::111111111111:role/A\n"), "a"
        )


def test_session_name_is_valid_for_sts() -> None:
    name = resolve.default_session_name("Jöhn Doe/admin" * 10)
    assert rules.SESSION_NAME.fullmatch(name)


# -- vaultd settings -------------------------------------------------------------------------
def test_settings_precedence(tmp_path: Path) -> None:
    toml = tmp_path / "vaultd" / "config.toml"
    toml.parent.mkdir()
    toml.write_text('listen = "127.0.0.1:7000"\nprofile = "from-toml"\nimds_tokens = "required"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path), "XDG_RUNTIME_DIR": "/run/user/1"}
    s = settings.load(env)
    assert (s.listen.port, s.profile, s.imds_tokens) == (7000, "from-toml", "required")
    assert s.control_socket == Path("/run/user/1/vaultd/control.sock")
    s = settings.load({**env, "VAULTD_LISTEN": "127.0.0.1:8000", "VAULTD_PROFILE": "env"})
    assert (s.listen.port, s.profile) == (8000, "env")
    s = settings.load({**env, "VAULTD_LISTEN": "127.0.0.1:8000"}, listen="9000", profile="flag")
    assert (s.listen.port, s.profile) == (9000, "flag")
    assert s.endpoint == "http://127.0.0.1:9000/"


def test_settings_defaults_and_errors(tmp_path: Path) -> None:
    s = settings.load({"HOME": str(tmp_path)})
    assert str(s.listen) == "127.0.0.1:9169" and s.imds_tokens == "optional"
    assert s.control_socket.name == "control.sock"
    for bad in (
        {"VAULTD_LISTEN": "host:port"},
        {"VAULTD_LISTEN": "1:99999"},
        {"VAULTD_IMDS_TOKENS": "maybe"},
    ):
        with pytest.raises(ConfigError):
            settings.load({"HOME": str(tmp_path), **bad})
    toml = tmp_path / "c" / "vaultd" / "config.toml"
    toml.parent.mkdir(parents=True)
    toml.write_text("listen = [")
    with pytest.raises(ConfigError, match=r"config\.toml"):
        settings.load({"XDG_CONFIG_HOME": str(tmp_path / "c")})


def test_private_dir_is_made_private(tmp_path: Path) -> None:
    d = tmp_path / "run" / "vaultd"
    ensure_private_dir(d)
    assert d.stat().st_mode & 0o777 == 0o700
    d.chmod(0o755)
    ensure_private_dir(d)
    assert d.stat().st_mode & 0o777 == 0o700
