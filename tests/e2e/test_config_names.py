"""Profile names and config files as the SDKs read them, end to end: moto as STS, the daemon
as a subprocess, boto3 as a client that finds credentials only through IMDS."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.harness import Daemon, boto3_whoami, client_env, run_vaultd

EXTRA = """
[profile team/dev]
source_profile = identity

[profile 'Foo Bar']
source_profile = identity
role_arn = arn:aws:iam::222233334444:role/DeveloperRole
"""
DUPLICATE = """
[profile 'Foo Bar']
source_profile = identity
role_arn = arn:aws:iam::222233334444:role/OtherRole
"""


def test_names_sdks_can_request_and_a_broken_file_that_keeps_what_is_held(
    user_keys: tuple[str, str], daemon: Daemon, moto: str, isolated: Path, aws_config: Path
) -> None:
    with aws_config.open("a") as fh:
        fh.write(EXTRA)
    daemon.start()
    env = client_env(daemon.endpoint, moto, isolated / "client")

    # [profile team/dev]: IMDS lists a name boto3 can request back, and status says which.
    done = run_vaultd("switch", "team/dev", "--mfa", "123456")
    assert done.returncode == 0, done.stderr
    seen = boto3_whoami(env)
    assert seen["method"] == "iam-role"
    status = json.loads(run_vaultd("status", "--json").stdout)
    assert (status["active"], status["role"]) == ("team/dev", "team-dev")
    assert "imds role:   team-dev (profile 'team/dev')" in run_vaultd("status").stdout

    # [profile 'Foo Bar'] is the profile `Foo Bar`, as for the AWS CLI.
    done = run_vaultd("switch", "Foo Bar")
    assert done.returncode == 0, done.stderr
    held = boto3_whoami(env)
    assert held["arn"].startswith("arn:aws:sts::222233334444:assumed-role/DeveloperRole/")

    # A [profile] section pasted twice: refused in one line naming the file and the section,
    # while IMDS keeps serving the credentials the daemon holds.
    with aws_config.open("a") as fh:
        fh.write(DUPLICATE)
    done = run_vaultd("refresh")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert f"{aws_config}: section [profile 'Foo Bar'] appears twice" in done.stderr
    assert boto3_whoami(env)["access_key"] == held["access_key"]
    status = json.loads(run_vaultd("status", "--json").stdout)
    assert status["state"] == "ok" and status["last_error"]["error"] == "config_error"


# Files botocore refuses to parse, each as people's own files have been found broken: the
# daemon must start on them all the same (at login, nobody is watching), say what is wrong
# in one line, and serve once the file is mended, without a restart.
# Each: the file, what is written to it, and whether it is added to what the file holds.
BROKEN: dict[str, tuple[str, bytes, bool]] = {
    "unclosed section": ("config", b"[default\nregion = eu-west-1\n", False),
    "byte-order mark": ("config", "\ufeff[default]\nregion = eu-west-1\n".encode(), False),
    "section twice": (
        "config",
        b"[default]\nregion = eu-west-1\n[default]\noutput = json\n",
        False,
    ),
    "latin-1 comment": ("config", b"# caf\xe9\n[default]\nregion = eu-west-1\n", False),
    "continuation line": ("config", b"role_arn =\n  arn:aws:iam::222233334444:role/X\n", True),
    "credentials file": ("credentials", b"garbage\n", False),
}


@pytest.mark.parametrize("kind", BROKEN)
def test_the_daemon_starts_on_a_broken_file_and_serves_once_it_is_mended(
    kind: str,
    user_keys: tuple[str, str],
    daemon: Daemon,
    moto: str,
    isolated: Path,
    aws_config: Path,
) -> None:
    name, text, added = BROKEN[kind]
    broken = aws_config.with_name(name)
    kept = broken.read_bytes() if broken.exists() else None
    broken.write_bytes((kept or b"") + text if added else text)
    daemon.start()  # before, botocore's ConfigParseError ended it with a traceback
    assert "Traceback" not in daemon.log()
    done = run_vaultd("switch", "master", "--mfa", "123456")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and str(broken) in done.stderr, done.stderr
    if kept is None:
        broken.unlink()
    else:
        broken.write_bytes(kept)
    done = run_vaultd("switch", "master", "--mfa", "123456")
    assert done.returncode == 0, done.stderr
    env = client_env(daemon.endpoint, moto, isolated / "client")
    assert ":assumed-role/DeveloperRole/" in boto3_whoami(env)["arn"]


def test_the_start_up_profile_is_served_once_its_file_is_mended(
    user_keys: tuple[str, str], moto: str, isolated: Path, aws_config: Path
) -> None:
    # A daemon started at login with its profile (--profile, VAULTD_PROFILE, config.toml) on
    # a file with a mistake: before, the first failure stood until a `switch`.
    kept = aws_config.read_bytes()
    aws_config.write_bytes(kept + b"\n[broken\nx = y\n")
    daemon = Daemon(isolated / "daemon.log", args=("--profile", "master"))
    try:
        daemon.start()
        status = json.loads(run_vaultd("status", "--json").stdout)
        assert (status["state"], status.get("active")) == ("config_error", None)
        aws_config.write_bytes(kept)
        deadline = time.monotonic() + 30  # the daemon tries again every 5 s
        while status.get("active") != "master" and time.monotonic() < deadline:
            time.sleep(0.2)
            status = json.loads(run_vaultd("status", "--json").stdout)
        assert status.get("active") == "master", status
        assert run_vaultd("mfa", "123456").returncode == 0
        env = client_env(daemon.endpoint, moto, isolated / "client")
        assert ":assumed-role/DeveloperRole/" in boto3_whoami(env)["arn"]
    finally:
        daemon.stop()
