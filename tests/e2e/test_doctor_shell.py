"""`vaultd doctor` in a shell whose SDKs would not reach vaultd, against a running daemon,
with boto3 in the same shell showing what it actually does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.harness import Daemon, run_vaultd, vaultd_env

BOTO3_METHOD = """
import json, boto3
creds = boto3.session.Session(region_name="us-east-1").get_credentials()
print(json.dumps({"method": creds.method if creds else None}))
"""


def in_shell(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_doctor_names_what_stops_sdks_from_asking_vaultd(
    user_keys: tuple[str, str], daemon: Daemon, isolated: Path
) -> None:
    daemon.start()
    assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0
    shell = vaultd_env()
    shell["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = daemon.endpoint

    # IMDS turned off in this shell: boto3 finds nothing; doctor names the variable and
    # still checks the daemon itself (which serves).
    off = {**shell, "AWS_EC2_METADATA_DISABLED": "true"}
    sdk = json.loads(in_shell(off, sys.executable, "-c", BOTO3_METHOD).stdout)
    assert sdk["method"] is None
    done = in_shell(off, sys.executable, "-m", "vaultd", "doctor")
    assert done.returncode == 1
    assert (
        "[FAIL] chain: AWS_EC2_METADATA_DISABLED=true turns the SDKs' IMDS lookup off, so "
        "SDKs here never ask vaultd: unset AWS_EC2_METADATA_DISABLED"
    ) in done.stdout
    assert "[  ok] fetch: botocore got role DeveloperRole" in done.stdout

    # Keys exported in this shell: boto3 uses them; doctor says so, and how to stop it.
    keyed = {**shell, "AWS_ACCESS_KEY_ID": "AKIAEXPORTED00000000", "AWS_SECRET_ACCESS_KEY": "s"}
    sdk = json.loads(in_shell(keyed, sys.executable, "-c", BOTO3_METHOD).stdout)
    assert sdk["method"] == "env"
    done = in_shell(keyed, sys.executable, "-m", "vaultd", "doctor")
    assert done.returncode == 1
    assert (
        "[FAIL] chain: AWS_ACCESS_KEY_ID is set, so SDKs here never ask vaultd: "
        "unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY"
    ) in done.stdout

    # Neither: boto3 asks vaultd, and doctor's chain line is ok.
    sdk = json.loads(in_shell(shell, sys.executable, "-c", BOTO3_METHOD).stdout)
    assert sdk["method"] == "iam-role"
    done = in_shell(shell, sys.executable, "-m", "vaultd", "doctor")
    assert "[  ok] chain: nothing in this shell answers the SDKs before IMDS" in done.stdout
