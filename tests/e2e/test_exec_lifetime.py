"""A `vaultd exec` killed with SIGKILL runs no cleanup: its token must die with it anyway,
and the daemon must stop keeping its profile fresh (issue 13 section 5)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.harness import Daemon, run_vaultd
from tests.e2e.test_exec import child_env, get

# A child that hands its token out, then outlives the `vaultd exec` that started it.
CHILD = """
import json, os, sys, time
print(json.dumps({"token": os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"],
                  "url": os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]}), flush=True)
time.sleep(60)
"""


def test_kill_9_of_exec_ends_its_token_and_the_profiles_refresh(
    user_keys: tuple[str, str], daemon: Daemon, isolated: Path, aws_config: Path
) -> None:
    daemon.start()
    assert run_vaultd("switch", "identity", "--mfa", "123456").returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaultd", "exec", "master", "--", sys.executable, "-c", CHILD],
        env=child_env(daemon, isolated),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so the test can end the orphaned child by its group
    )
    try:
        assert proc.stdout is not None
        grant = json.loads(proc.stdout.readline())
        code, body = get(grant["url"], grant["token"])
        assert code == 200 and body["AccessKeyId"].startswith("ASIA")
        assert json.loads(run_vaultd("status", "--json").stdout)["exec_tokens"] == {"master": 1}

        proc.send_signal(signal.SIGKILL)  # no finally, no DELETE
        proc.wait(10)
        deadline = time.monotonic() + 10
        while get(grant["url"], grant["token"])[0] != 403 and time.monotonic() < deadline:
            time.sleep(0.1)
        code, body = get(grant["url"], grant["token"])
        assert code == 403 and body["Code"] == "AccessDenied"
        status = json.loads(run_vaultd("status", "--json").stdout)
        assert status["exec_tokens"] == {}
        rows = {r["name"]: r for r in json.loads(run_vaultd("list", "--json").stdout)["profiles"]}
        assert rows["master"]["exec_tokens"] == 0
        assert f"(pid {proc.pid}) exited" in daemon.log()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the child the killed exec left behind
        proc.wait(10)
