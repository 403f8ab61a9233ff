"""What a `vaultd exec` child finds, whatever the caller's environment and files hold: moto
as STS, the daemon as a subprocess, boto3 as the child."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import Daemon, run_vaultd, vaultd_env

JS_DIR = Path(__file__).parents[1] / "js"
ROLE = "arn:aws:sts::222233334444:assumed-role/DeveloperRole/"
CHILD = """
import json, os, boto3
session = boto3.session.Session()
creds = session.get_credentials()
arn = session.client("sts", region_name="us-east-1").get_caller_identity()["Arn"]
print(json.dumps({"method": creds.method, "arn": arn, "region": session.region_name,
                  "AWS_REGION": os.environ.get("AWS_REGION"),
                  "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION")}))
"""


def exec_child(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vaultd", "exec", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_child_gets_the_exec_profile_whatever_the_caller_holds(
    user_keys: tuple[str, str], daemon: Daemon, isolated: Path
) -> None:
    daemon.start()
    assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0
    token = isolated / "web-identity-token"
    token.write_text("eyJhbGciOi.not-a-real-token.x")
    env = vaultd_env()
    env.update(
        AWS_DEFAULT_REGION="eu-west-2",
        AWS_PROFILE="elsewhere",
        AWS_DEFAULT_PROFILE="elsewhere",
        AWS_ACCESS_KEY_ID="AKIASHOULDBEREMOVED0",
        AWS_SECRET_ACCESS_KEY="should-be-removed",
        AWS_WEB_IDENTITY_TOKEN_FILE=str(token),
        AWS_ROLE_ARN="arn:aws:iam::123456789012:role/SomeoneElse",
        AWS_CONTAINER_CREDENTIALS_RELATIVE_URI="/v2/credentials/x",
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    done = exec_child(env, "master", "--", sys.executable, "-c", CHILD)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    seen = json.loads(done.stdout)
    assert seen["method"] == "container-role" and seen["arn"].startswith(ROLE)
    # issue 10 §4: no region in the chain; the caller's eu-west-2 stays, none is invented.
    assert (seen["AWS_REGION"], seen["AWS_DEFAULT_REGION"]) == (None, "eu-west-2")
    assert seen["region"] == "eu-west-2"
    exported = run_vaultd("export", "master", "--format", "export").stdout
    assert "AWS_REGION" not in exported and "AWS_DEFAULT_REGION" not in exported

    # Keys in the default profile of the shared credentials file answer before any
    # container provider: vaultd says so before it runs the command.
    keys = isolated / "credentials"
    keys.write_text(
        "[default]\naws_access_key_id = AKIAINTHEFILE0000000\naws_secret_access_key = s\n"
    )
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(keys)
    done = exec_child(env, "master", "--", "true")
    assert done.returncode == 0
    assert done.stderr.startswith(f"vaultd: warning: [default] in {keys} has aws_access_key_id")
    assert done.stderr.count("\n") == 1


def test_a_wrong_region_is_named_and_never_handed_to_a_child(
    user_keys: tuple[str, str], daemon: Daemon, aws_config: Path
) -> None:
    # issue 10 §1: botocore keeps `eu-west-1  # Ireland` whole; the child got it as AWS_REGION.
    aws_config.write_text(aws_config.read_text() + "region = eu-west-1  # Ireland\n")
    daemon.start()
    done = exec_child(vaultd_env(), "master", "--mfa", "123456", "--", "sh", "-c", "echo ran")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        f"vaultd: {aws_config}: profile 'master': region is not a region name like eu-west-1 "
        "(botocore refuses it) (got 'eu-west-1  # Ireland')\n"
    )


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_listening_on_every_ipv6_address_hands_out_a_uri_boto3_accepts(
    user_keys: tuple[str, str], daemon: Daemon
) -> None:
    daemon.args = ("--listen", "[::]:0")
    daemon.start()
    assert daemon.endpoint.startswith("http://[::1]:")
    assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0
    done = exec_child(vaultd_env(), "master", "--", sys.executable, "-c", CHILD)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["method"] == "container-role"
    node = shutil.which("node")
    if node is not None and (JS_DIR / "node_modules").is_dir():  # else: boto3 alone
        client = str(JS_DIR / "imds-client.mjs")
        done = exec_child(vaultd_env(), "master", "--", node, client, "chain")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["accessKeyId"].startswith("ASIA")
    shown = run_vaultd("env", "--listen", "[::]:9169").stdout
    assert shown == "export AWS_EC2_METADATA_SERVICE_ENDPOINT=http://[::1]:9169/\n"
