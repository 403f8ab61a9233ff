"""Expiry times from a credential_process, end to end: the daemon as a subprocess in another
time zone, boto3 as a client that finds credentials only through IMDS."""

from __future__ import annotations

import calendar
import json
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.harness import Daemon, client_env, run_json, run_vaultd

# Prints a Version 1 set expiring SECONDS from now, the time written with SUFFIX ("-": no
# zone at all), and counts its runs in COUNT_FILE.
PROCESS = """
import datetime, json, sys
count_file, seconds, suffix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(count_file, "a") as fh:
    fh.write("run\\n")
now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)
expires = (now + datetime.timedelta(seconds=seconds)).isoformat()
print(json.dumps({"Version": 1, "AccessKeyId": "ASIAPROCESS000000001",
                  "SecretAccessKey": "s" * 40, "SessionToken": "t" * 80,
                  "Expiration": expires + ("" if suffix == "-" else suffix)}))
"""
BOTO3_CREDS = """
import json, boto3
c = boto3.session.Session(region_name="us-east-1").get_credentials()
print(json.dumps({"method": c.method, "key": c.access_key}))
"""


def imds_document(endpoint: str) -> dict[str, str]:
    base = endpoint + "latest/meta-data/iam/security-credentials/"
    with urllib.request.urlopen(base, timeout=5) as r:
        role = r.read().decode()
    with urllib.request.urlopen(base + role, timeout=5) as r:
        return dict(json.loads(r.read()))


def runs(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_zone_less_expiration_in_tokyo_is_utc_and_a_stale_set_is_backed_off(
    daemon: Daemon,
    isolated: Path,
    aws_config: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = isolated / "process.py"
    script.write_text(PROCESS)
    fresh, stale = isolated / "fresh.count", isolated / "stale.count"
    with aws_config.open("a") as fh:
        fh.write(
            f"\n[profile cp]\ncredential_process = {sys.executable} {script} {fresh} 3600 -\n"
            f"\n[profile old]\ncredential_process = {sys.executable} {script} {stale} -28800 Z\n"
        )
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    daemon.start()
    env = client_env(daemon.endpoint, "http://127.0.0.1:9", isolated / "client")

    # A set that is already expired, while nothing else is served: backed off like an STS
    # failure, and status says so.
    done = run_vaultd("switch", "old")
    assert done.returncode == 1
    assert "credential_process for old returned credentials that expire at " in done.stderr
    for _ in range(20):  # two seconds of IMDS clients and status calls
        status = json.loads(run_vaultd("status", "--json").stdout)
        assert status["state"] == "stale_credentials" and status["credentials"] is None
        assert " — retrying in " in status["message"]
        time.sleep(0.1)
    assert runs(stale) <= 4  # backoff 0.5-1 s, 1-2 s, ...: the old loop ran it hundreds of times

    # A zone-less Expiration is UTC: served as printed (plus Z), the process run once.
    done = run_vaultd("switch", "cp")
    assert done.returncode == 0, done.stderr
    seen = run_json([sys.executable, "-c", BOTO3_CREDS], env)
    assert seen == {"method": "iam-role", "key": "ASIAPROCESS000000001"}
    doc = imds_document(daemon.endpoint)
    served = calendar.timegm(time.strptime(doc["Expiration"], "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(served - (time.time() + 3600)) < 60  # read as local time: 9 hours off
    assert runs(fresh) == 1

    # Once cp serves, a switch to the stale source fails and leaves cp served.
    done = run_vaultd("switch", "old")
    assert done.returncode == 1
    status = json.loads(run_vaultd("status", "--json").stdout)
    assert status["active"] == "cp" and status["state"] == "ok"
    assert run_json([sys.executable, "-c", BOTO3_CREDS], env) == seen
