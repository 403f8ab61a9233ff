"""Real SDK clients against the real daemon, in both token modes.

Each client is a separate process that knows only AWS_EC2_METADATA_SERVICE_ENDPOINT (and
where the fake STS is): boto3's default chain (also IMDSv2-only), botocore's region
provider, the AWS CLI v1, and the AWS SDK for JavaScript v3. Each must receive exactly the
access key the daemon is serving.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Daemon, client_env, run_vaultd, served

JS_DIR = Path(__file__).parents[1] / "js"
BOTOCORE_REGION = """
import botocore.session, botocore.utils
print(botocore.utils.IMDSRegionProvider(botocore.session.get_session()).provide())
"""
BOTO3_CREDS = """
import json, boto3
c = boto3.session.Session().get_credentials()
print(json.dumps({"method": c.method, "key": c.access_key}))
"""


def run(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    done = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=90, check=False, cwd=cwd
    )
    assert done.returncode == 0, f"{cmd[:3]} failed: {done.stderr}"
    return done.stdout.strip()


@pytest.mark.parametrize("mode", ["optional", "required"])
def test_every_client_gets_the_served_key(
    mode: str,
    user_keys: tuple[str, str],
    moto: str,
    isolated: Path,
) -> None:
    d = Daemon(isolated / "daemon.log", ("--imds-tokens", mode))
    try:
        d.start()
        assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0
        expected = served(d.endpoint)
        key = expected["AccessKeyId"]
        env = client_env(d.endpoint, moto, isolated / "client")
        v2_only = {**env, "AWS_EC2_METADATA_V1_DISABLED": "true"}

        for variant in (env, v2_only):
            got = json.loads(run([sys.executable, "-c", BOTO3_CREDS], variant))
            assert got == {"method": "iam-role", "key": key}

        # The README's region is unset for master: us-east-1 + "a".
        assert run([sys.executable, "-c", BOTOCORE_REGION], env) == "us-east-1"

        listing = run([sys.executable, "-m", "awscli", "configure", "list"], env)
        assert f"****************{key[-4:]}" in listing
        assert "iam-role" in listing

        node = shutil.which("node")
        if node is None or not (JS_DIR / "node_modules" / ".installed").exists():
            # `make test` marks a complete `npm ci`; a failed one (offline) leaves no mark.
            pytest.skip("node or the JavaScript SDK missing: run `make test` (npm ci in tests/js)")
        client = str(JS_DIR / "imds-client.mjs")
        got = json.loads(run([node, client, "instance"], env, JS_DIR))
        assert got["accessKeyId"] == key
        assert got["expiration"].replace(".000Z", "Z") == expected["Expiration"]
        got = json.loads(run([node, client, "chain"], v2_only, JS_DIR))
        assert got["accessKeyId"] == key
        assert json.loads(run([node, client, "region"], env, JS_DIR)) == {"region": "us-east-1"}
        assert "Traceback" not in d.log()
    finally:
        d.stop()


def test_two_hundred_parallel_fetches_cost_one_sts_call(
    user_keys: tuple[str, str], moto: str, isolated: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    first = Daemon(isolated / "first.log")
    try:
        first.start()
        assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0
    finally:
        first.stop()
    # A fresh daemon that starts on master from the cached session: its first AssumeRole is
    # the only STS call, however many clients arrive at once.
    d = Daemon(isolated / "daemon.log", ("--profile", "master"))
    try:
        d.start()

        def fetch(_: int) -> dict[str, Any]:
            # As an SDK does: an answer without credentials is tried again shortly.
            for _attempt in range(20):
                doc = served(d.endpoint)
                if doc["Code"] == "Success":
                    break
                time.sleep(0.25)
            return doc

        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(fetch, range(200)))
        assert all(r["Code"] == "Success" for r in results)
        assert len({r["AccessKeyId"] for r in results}) == 1
        status = json.loads(run_vaultd("status", "--json").stdout)
        assert status["sts_calls"] == 1
    finally:
        d.stop()
