"""The child environment of `vaultd exec`, the region of `vaultd export`, and what answers
an SDK's credential chain before vaultd: pure functions over an environment and the shared
files as botocore reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from vaultd import settings
from vaultd.core import chain, childenv

NO_FILES = chain.SharedFiles("/h/.aws/config", "/h/.aws/credentials")
URI = {
    "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:9169/vaultd-ecs/v1/credentials",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN": "token",
}


def child(
    caller: dict[str, str], region: str | None, files: chain.SharedFiles = NO_FILES
) -> childenv.Child:
    return childenv.child_environment(caller, "master", URI, region, files)


@pytest.mark.parametrize(
    ("caller", "configured", "expected"),
    [
        # issue 10 §4: no region anywhere in the chain -> none is invented.
        ({"AWS_DEFAULT_REGION": "eu-west-2"}, None, {"AWS_DEFAULT_REGION": "eu-west-2"}),
        # The caller's region wins over the profile's (environment over config).
        ({"AWS_DEFAULT_REGION": "eu-west-2"}, "us-east-1", {"AWS_DEFAULT_REGION": "eu-west-2"}),
        ({"AWS_REGION": "eu-west-2"}, "us-east-1", {"AWS_REGION": "eu-west-2"}),
        # Only the profile names one: the child gets it under both names.
        ({}, "us-east-1", {"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}),
        ({}, None, {}),
    ],
)
def test_region_follows_botocore_precedence_and_is_never_invented(
    caller: dict[str, str], configured: str | None, expected: dict[str, str]
) -> None:
    env = child(caller, configured).env
    assert {k: v for k, v in env.items() if k in childenv.REGION_VARIABLES} == expected
    # `vaultd export` prints the same: only what the caller's shell does not set already.
    exported = childenv.region_variables(caller, configured)
    assert exported == {k: v for k, v in expected.items() if k not in caller}


def test_everything_that_would_answer_first_is_removed() -> None:
    caller = {name: "x" for name in childenv.SHADOWING} | {"PATH": "/bin", "HOME": "/h"}
    result = child(caller, None)
    assert {k: v for k, v in result.env.items() if k not in URI} == {
        "PATH": "/bin",
        "HOME": "/h",
        "VAULTD_PROFILE": "master",
    }
    assert result.warnings == ()
    # Nothing left in the environment answers before the container provider.
    assert chain.ahead_of(chain.CONTAINER, result.env, NO_FILES) == []


def test_a_default_profile_in_the_shared_files_is_named_before_the_command_runs() -> None:
    files = chain.SharedFiles(
        "/h/.aws/config",
        "/h/.aws/credentials",
        config={"default": {"region": "eu-west-1"}},
        credentials={"default": {"aws_access_key_id": "AKIA", "aws_secret_access_key": "s"}},
    )
    result = child({"AWS_PROFILE": "other"}, None, files)
    assert result.warnings == (
        "[default] in /h/.aws/credentials has aws_access_key_id, which SDKs use before the "
        "credentials of 'master': remove the keys from [default] in /h/.aws/credentials "
        "(`vaultd add default` keeps them in the keyring), or run `vaultd exec --env`",
    )
    # With --env the keys in the environment come first in every chain: nothing to say.
    plain = {"AWS_ACCESS_KEY_ID": "ASIA", "AWS_SECRET_ACCESS_KEY": "s"}
    assert childenv.child_environment({}, "master", plain, None, files).warnings == ()


@pytest.mark.parametrize(
    ("listen", "endpoint"),
    [
        ("[::]:9169", "http://[::1]:9169/"),  # boto3: "Unsupported host '::'"
        ("0.0.0.0:9169", "http://127.0.0.1:9169/"),
        ("[::1]:9169", "http://[::1]:9169/"),
        ("127.0.0.2:9169", "http://127.0.0.2:9169/"),
    ],
)
def test_every_uri_handed_out_names_a_host_the_sdks_accept(
    listen: str, endpoint: str, tmp_path: Path
) -> None:
    conf = settings.load({"HOME": str(tmp_path)}, listen=listen)
    assert conf.endpoint == endpoint
    assert childenv.container_uri_accepted(conf.endpoint + "vaultd-ecs/v1/credentials")


def test_a_container_uri_the_sdks_refuse_is_said_before_running() -> None:
    handed = {**URI, "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://192.168.1.5:9169/x"}
    result = childenv.child_environment({}, "master", handed, None, NO_FILES)
    assert (
        len(result.warnings) == 1
        and "SDKs refuse http://192.168.1.5:9169/x" in (result.warnings[0])
    )


# -- the chain itself, as doctor walks it ---------------------------------------------------
def test_metadata_disabled_and_exported_keys_are_named_with_their_fix() -> None:
    found = chain.ahead_of(chain.IMDS, {"AWS_EC2_METADATA_DISABLED": "true"}, NO_FILES)
    assert [(a.provider, a.fix) for a in found] == [(chain.IMDS, "unset AWS_EC2_METADATA_DISABLED")]
    env = {"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s"}
    found = chain.ahead_of(chain.IMDS, env, NO_FILES)
    assert [(a.provider, a.fix) for a in found] == [
        ("env", "unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY")
    ]


def test_the_profile_in_use_is_read_as_botocore_reads_it() -> None:
    files = chain.SharedFiles(
        "/c",
        "/k",
        config={"dev": {"role_arn": "arn:aws:iam::1:role/x"}, "sso": {"sso_session": "s"}},
    )
    found = chain.ahead_of(chain.IMDS, {"AWS_PROFILE": "dev"}, files)
    assert [a.found for a in found] == ["[profile dev] in /c has role_arn"]
    # AWS_DEFAULT_PROFILE comes first for botocore.
    found = chain.ahead_of(chain.IMDS, {"AWS_PROFILE": "dev", "AWS_DEFAULT_PROFILE": "sso"}, files)
    assert [a.provider for a in found] == ["sso"]
    found = chain.ahead_of(chain.IMDS, {"AWS_PROFILE": "ghost"}, files)
    assert found[0].fix == "unset AWS_PROFILE" and "names no profile" in found[0].found
    env = {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/x", "AWS_WEB_IDENTITY_TOKEN_FILE": "/t"}
    assert [a.provider for a in chain.ahead_of(chain.IMDS, env, files)] == [
        "assume-role-with-web-identity",
        chain.CONTAINER,
    ]


def test_the_order_is_botocores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.session

    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    resolver = botocore.session.Session().get_component("credential_provider")
    assert tuple(p.METHOD for p in resolver.providers) == chain.ORDER


def test_the_shared_files_are_read_by_botocore(tmp_path: Path) -> None:
    (tmp_path / "config").write_text("[profile 'a b']\ncredential_process = x\n")
    (tmp_path / "credentials").write_text("[default]\naws_access_key_id = AKIA\n")
    env = {
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
    }
    files = chain.read_shared_files(env)
    assert files.config == {"a b": {"credential_process": "x"}}
    assert files.credentials["default"]["aws_access_key_id"] == "AKIA"
    # Why not, as the daemon says it (`config.unreadable`): the file and the line.
    (tmp_path / "config").write_text("[default]\n[default]\n")
    assert f"{tmp_path / 'config'}: section [default] appears twice (line 2)" in str(
        chain.read_shared_files(env).unreadable
    )
    (tmp_path / "config").write_text("[default]\n")
    (tmp_path / "credentials").write_text("[default]\naws_access_key_id\n")
    assert chain.read_shared_files(env).unreadable == (
        f"{tmp_path / 'credentials'} line 2 is not valid INI: 'aws_access_key_id'"
    )
