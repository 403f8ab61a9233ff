"""`vaultd exec`, `export` and credential_process, end to end with moto and the daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.e2e.harness import Daemon, awscli_whoami, run_vaultd, vaultd_env

ROLE = "arn:aws:sts::222233334444:assumed-role/DeveloperRole/"
# A child that reports what it finds, once per line it reads, until its input closes.
CHILD = """
import json, os, sys, boto3
print(json.dumps({"token": os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"],
                  "url": os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]}), flush=True)
for line in sys.stdin:
    session = boto3.session.Session(region_name="us-east-1")
    creds = session.get_credentials()
    arn = session.client("sts").get_caller_identity()["Arn"]
    print(json.dumps({"method": creds.method, "key": creds.access_key, "arn": arn}), flush=True)
"""


def child_env(daemon: Daemon, isolated: Path) -> dict[str, str]:
    env = vaultd_env()
    env.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_SERVICE_ENDPOINT=daemon.endpoint,  # IMDS serves another profile
        AWS_ACCESS_KEY_ID="AKIASHOULDBEREMOVED0",
        AWS_SECRET_ACCESS_KEY="should-be-removed",
        AWS_PROFILE="should-be-removed",
    )
    return env


def get(url: str, token: str) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Authorization": token})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_exec_gives_the_child_its_own_role_kept_fresh_and_revoked_after(
    user_keys: tuple[str, str], daemon: Daemon, isolated: Path, aws_config: Path
) -> None:
    daemon.start()
    assert run_vaultd("switch", "identity", "--mfa", "123456").returncode == 0
    env = child_env(daemon, isolated)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaultd", "exec", "master", "--", sys.executable, "-c", CHILD],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    grant = json.loads(proc.stdout.readline())
    proc.stdin.write("1\n")
    proc.stdin.flush()
    first = json.loads(proc.stdout.readline())
    assert first["method"] == "container-role"
    assert first["arn"].startswith(ROLE)  # while IMDS serves identity
    status = json.loads(run_vaultd("status", "--json").stdout)
    assert status["active"] == "identity"
    assert status["exec_tokens"] == {"master": 1}
    rows = {r["name"]: r for r in json.loads(run_vaultd("list", "--json").stdout)["profiles"]}
    assert rows["master"]["exec_tokens"] == 1 and rows["identity"]["active"]
    assert rows["identity"]["session_left_seconds"] > 11 * 3600
    table = run_vaultd("list").stdout
    assert "* identity" in table and "left" in table
    listing = urllib.request.urlopen(
        daemon.endpoint + "latest/meta-data/iam/security-credentials/", timeout=5
    ).read()
    assert listing == b"identity"  # IMDS keeps serving the active profile

    # A refresh of master while the child runs: the same token serves the new set.
    assert run_vaultd("refresh", "master").returncode == 0
    proc.stdin.write("2\n")
    proc.stdin.flush()
    second = json.loads(proc.stdout.readline())
    assert second["key"] != first["key"] and second["arn"].startswith(ROLE)

    code, body = get(grant["url"], "nope." + "x" * 43)
    assert code == 403 and body["Code"] == "AccessDenied"
    proc.stdin.close()
    assert proc.wait(30) == 0
    code, body = get(grant["url"], grant["token"])  # the child is gone: so is its token
    assert code == 403
    assert json.loads(run_vaultd("status", "--json").stdout)["exec_tokens"] == {}


def test_exec_passes_exit_codes_refuses_nesting_and_cleans_the_env(
    user_keys: tuple[str, str], daemon: Daemon, isolated: Path
) -> None:
    daemon.start()
    env = child_env(daemon, isolated)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vaultd", "exec", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    done = run("master", "--mfa", "123456", "--", "sh", "-c", "exit 7")
    assert done.returncode == 7
    done = run("master", "--", "sh", "-c", "env")
    assert "AWS_ACCESS_KEY_ID" not in done.stdout and "AWS_PROFILE=" not in done.stdout
    assert "VAULTD_PROFILE=master" in done.stdout
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:" in done.stdout
    nested = {**env, "VAULTD_PROFILE": "master"}
    done = subprocess.run(
        [sys.executable, "-m", "vaultd", "exec", "master", "--", "true"],
        env=nested,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1 and "--allow-nested" in done.stderr
    done = run("master", "--env", "--", "sh", "-c", "echo $AWS_CREDENTIAL_EXPIRATION")
    assert done.returncode == 0
    assert done.stdout.strip().endswith("Z")
    done = run("master", "--", "no-such-command-xyz")
    assert done.returncode == 127 and "command not found" in done.stderr


def test_export_formats_and_credential_process_through_the_cli(
    user_keys: tuple[str, str], daemon: Daemon, isolated: Path, aws_config: Path, moto: str
) -> None:
    assert run_vaultd("export", "master").returncode == 4  # no daemon: says so, calls nothing
    daemon.start()
    assert run_vaultd("export", "master").returncode == 3  # needs a code, no terminal
    assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0
    doc = json.loads(run_vaultd("export", "master", "--format", "json").stdout)
    assert doc["Version"] == 1 and doc["Expiration"].endswith("Z")
    assert set(doc) == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    env_lines = run_vaultd("export", "master", "--format", "export").stdout.splitlines()
    assert env_lines[0].startswith("export AWS_ACCESS_KEY_ID=")
    ini = run_vaultd("export", "master", "--format", "ini").stdout
    assert ini.startswith("[master]\naws_access_key_id = ")

    with aws_config.open("a") as fh:
        command = f"{sys.executable} -m vaultd export --format json master"
        fh.write(f"\n[profile via-vaultd]\ncredential_process = {command}\n")
    cli_env = vaultd_env()
    cli_env.update(AWS_PROFILE="via-vaultd", AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    assert awscli_whoami(cli_env)["Arn"].startswith(ROLE)
