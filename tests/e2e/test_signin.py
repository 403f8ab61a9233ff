"""IAM Identity Center and `aws login` roots end to end: the loopback sso / sso-oidc / signin
fakes (role credentials minted by moto's STS), `vaultd serve` as a subprocess, and SDK
processes that know only the IMDS endpoint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.utils import generate_login_cache_key

from tests.e2e.harness import (
    Daemon,
    boto3_whoami,
    client_env,
    run_vaultd,
    served,
    vaultd_env,
)
from tests.fakes.signin import Fakes, sso_cache_file

SSO_ROLE = "arn:aws:sts::222233334444:assumed-role/AWSReservedSSO_"
DEVELOPER_ROLE = "arn:aws:sts::222233334444:assumed-role/DeveloperRole/"
SESSION_ARN = "arn:aws:iam::111122223333:user/elmerfudd"


@pytest.fixture
def portal(signin_fakes: Fakes, signin_config: Path, moto: str) -> Fakes:
    signin_fakes.sts = moto
    return signin_fakes


def sso_dir(isolated: Path) -> Path:
    return isolated / "home" / ".aws" / "sso" / "cache"


def login_dir(isolated: Path) -> Path:
    return isolated / "home" / ".aws" / "login" / "cache"


def status() -> dict[str, Any]:
    done = run_vaultd("status", "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_dev_sso_and_master_via_sso_reach_boto3(
    portal: Fakes, daemon: Daemon, moto: str, isolated: Path
) -> None:
    portal.sign_in_sso(sso_dir(isolated))
    daemon.start()
    done = run_vaultd("switch", "dev-sso")
    assert done.returncode == 0, done.stderr
    env = client_env(daemon.endpoint, moto, isolated / "client")
    seen = boto3_whoami(env)
    assert seen["method"] == "iam-role"
    assert seen["access_key"] == portal.issued_keys[-1]  # the portal's credentials
    assert seen["arn"].startswith(SSO_ROLE + "DeveloperAccess_")
    assert portal.role_calls == [("222233334444", "DeveloperAccess")]
    assert status()["message"] == "serving dev-sso (from IAM Identity Center corp)"

    done = run_vaultd("switch", "master-via-sso")
    assert done.returncode == 0, done.stderr
    assert boto3_whoami(env)["arn"].startswith(DEVELOPER_ROLE)

    # list, exec and the keys commands know what these roots are.
    rows = {r["name"]: r for r in json.loads(run_vaultd("list", "--json").stdout)["profiles"]}
    assert rows["dev-sso"]["source"] == "IAM Identity Center corp"
    assert rows["legacy-sso"]["source"] == "IAM Identity Center legacy-sso"
    assert rows["console"]["source"] == "aws login"
    assert rows["master-via-sso"]["source"] == "via dev-sso"
    assert "IAM Identity Center corp" in run_vaultd("list").stdout
    child = [sys.executable, "-c", "import os; print(os.environ['AWS_ACCESS_KEY_ID'])"]
    done = run_vaultd("exec", "dev-sso", "--env", "--", *child)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == seen["access_key"]  # what the dev-sso slot holds
    added = run_vaultd("add", "dev-sso", "--stdin", stdin="AKIAEXAMPLE000000000\nsecret\n")
    assert added.returncode != 0
    assert "IAM Identity Center corp (`aws sso login --sso-session corp`)" in added.stderr
    rotated = run_vaultd("rotate", "master-via-sso")
    assert rotated.returncode != 0 and "no access keys" in rotated.stderr
    assert "Traceback" not in added.stderr + rotated.stderr


def test_one_create_token_for_twenty_clients_and_the_cache_rewritten(
    portal: Fakes, moto: str, isolated: Path
) -> None:
    portal.sign_in_sso(sso_dir(isolated), expires_in=-60)  # expired, with a refresh token
    before = json.loads(sso_cache_file(sso_dir(isolated), "corp").read_text())
    portal.create_token_delay = 1.0  # the clients arrive while it is refreshed
    d = Daemon(isolated / "daemon.log", ("--profile", "dev-sso"))
    try:
        d.start()

        def fetch(_: int) -> dict[str, Any]:
            for _attempt in range(40):  # as an SDK does: no credentials yet, ask again
                doc = served(d.endpoint)
                if doc["Code"] == "Success":
                    break
                time.sleep(0.25)
            return doc

        with ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(fetch, range(20)))
    finally:
        d.stop()
    assert {r["AccessKeyId"] for r in results} == {portal.issued_keys[-1]}
    assert portal.create_token_calls == 1
    after = json.loads(sso_cache_file(sso_dir(isolated), "corp").read_text())
    assert after["refreshToken"] != before["refreshToken"]
    assert after["refreshToken"] in portal.sso_refresh  # the CLI's next refresh works
    assert after["accessToken"] in portal.access_tokens
    assert portal.refusals == []
    log = d.log()
    for secret in (before["refreshToken"], after["refreshToken"], after["clientSecret"]):
        assert secret not in log


def test_a_person_is_needed_then_picked_up_without_a_vaultd_command(
    portal: Fakes, moto: str, isolated: Path
) -> None:
    portal.sign_in_sso(sso_dir(isolated), expires_in=-60, refreshable=False)
    d = Daemon(isolated / "daemon.log", ("--profile", "dev-sso"))
    try:
        d.start()
        deadline = time.monotonic() + 20
        while status()["state"] != "sso_login_required" and time.monotonic() < deadline:
            time.sleep(0.1)
        now = status()
        assert now["state"] == "sso_login_required"
        assert now["message"].endswith("run `aws sso login --sso-session corp`")
        started = time.monotonic()
        doc = served(d.endpoint)
        assert doc["Code"] != "Success" and "aws sso login --sso-session corp" in doc["Message"]
        assert time.monotonic() - started < 2  # at once, as for MFA
        shown = run_vaultd("status")
        assert "aws sso login --sso-session corp" in shown.stdout
        switched = run_vaultd("switch", "dev-sso")
        assert switched.returncode != 0
        assert "aws sso login --sso-session corp" in switched.stderr
        assert "Traceback" not in switched.stderr

        portal.sign_in_sso(sso_dir(isolated))  # `aws sso login` in some terminal
        deadline = time.monotonic() + 15
        while (doc := served(d.endpoint))["Code"] != "Success":
            assert time.monotonic() < deadline, d.log()
            time.sleep(0.25)
        assert doc["AccessKeyId"] == portal.issued_keys[-1]
        assert status()["state"] == "ok"
    finally:
        d.stop()
    assert d.log().count("run `aws sso login --sso-session corp`") == 1  # said once
    assert portal.create_token_calls == 0 and len(portal.role_calls) == 1


def test_the_legacy_profile(portal: Fakes, daemon: Daemon, moto: str, isolated: Path) -> None:
    portal.sign_in_sso(sso_dir(isolated), session=None)
    daemon.start()
    done = run_vaultd("switch", "legacy-sso")
    assert done.returncode == 0, done.stderr
    seen = boto3_whoami(client_env(daemon.endpoint, moto, isolated / "client"))
    assert seen["arn"].startswith(SSO_ROLE + "ReadOnly_")


def test_the_login_profile_is_served_and_refreshed(
    portal: Fakes, daemon: Daemon, moto: str, isolated: Path
) -> None:
    first = portal.sign_in_login(login_dir(isolated), SESSION_ARN, expires_in=840)
    daemon.start()
    done = run_vaultd("switch", "console")
    assert done.returncode == 0, done.stderr
    env = client_env(daemon.endpoint, moto, isolated / "client")
    assert boto3_whoami(env)["access_key"] == first  # fresh in the cache: served as it is
    assert portal.oauth2_calls == 0
    message = status()["message"]
    assert "aws login credentials last 15 minutes: renewed at half-life" in message

    # Past half-life (here: the CLI left a set with 5 minutes in the cache): renewed with a
    # DPoP-signed CreateOAuth2Token, the cache rewritten with the rotated refresh token.
    path = login_dir(isolated) / f"{generate_login_cache_key(SESSION_ARN)}.json"
    cached = json.loads(path.read_text())
    cached["accessToken"]["expiresAt"] = time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 300)
    )
    path.write_text(json.dumps(cached))
    assert run_vaultd("refresh").returncode == 0
    renewed = boto3_whoami(env)["access_key"]
    assert renewed == portal.issued_keys[-1] != first
    assert portal.oauth2_calls == 1 and portal.refusals == []
    after = json.loads(path.read_text())
    assert after["refreshToken"] != cached["refreshToken"]
    assert after["refreshToken"] in portal.login_refresh
    assert after["accessToken"]["accessKeyId"] == renewed
    for secret in (cached["refreshToken"], after["refreshToken"], after["dpopKey"]):
        assert secret not in daemon.log()
        assert secret not in json.dumps(status())


def test_an_expired_login_names_its_command(portal: Fakes, daemon: Daemon, isolated: Path) -> None:
    portal.sign_in_login(login_dir(isolated), SESSION_ARN, expires_in=-30)
    portal.login_refresh.clear()
    daemon.start()
    done = run_vaultd("switch", "console")
    assert done.returncode != 0
    assert "aws login --profile console" in done.stderr
    assert status()["state"] == "login_required"


def test_doctor_reads_the_sign_ins(portal: Fakes, isolated: Path) -> None:
    portal.sign_in_sso(sso_dir(isolated))
    portal.sign_in_sso(sso_dir(isolated), session=None, expires_in=-60)  # legacy: no refresh
    done = run_vaultd("doctor")
    assert (
        "[FAIL] sign-in: IAM Identity Center legacy-sso: sign-in expired: "
        "run `aws sso login --profile legacy-sso`"
    ) in done.stdout
    assert "IAM Identity Center corp: signed in" in done.stdout
    assert "console: not signed in: run `aws login --profile console`" in done.stdout
    assert "no keys stored" not in done.stdout  # dev-sso is master-via-sso's root, keyless


@pytest.mark.parametrize(
    ("sso", "login"),
    [
        ("null", "accessToken a string"),
        ('{"accessToken": "x", "expiresAt": "2099-01-01T00:00:00"}', "truncated"),
    ],
)
def test_doctor_names_an_unreadable_cache_as_the_daemon_does(
    portal: Fakes, isolated: Path, sso: str, login: str
) -> None:
    portal.sign_in_sso(sso_dir(isolated))
    portal.sign_in_login(login_dir(isolated), SESSION_ARN)
    sso_cache_file(sso_dir(isolated), "corp").write_text(sso)
    login_file = login_dir(isolated) / f"{generate_login_cache_key(SESSION_ARN)}.json"
    token = json.loads(login_file.read_text())
    token["accessToken"] = "ASIAEXAMPLE"
    login_file.write_text(json.dumps(token) if login == "accessToken a string" else "{")
    done = run_vaultd("doctor")
    assert "Traceback" not in done.stderr
    assert (
        "the AWS CLI's cache for corp is unreadable: run `aws sso login --sso-session corp`"
        in done.stdout
    )
    assert (
        "the AWS CLI's cache for console is unreadable: run `aws login --profile console`"
        in done.stdout
    )
    assert "signed in (" not in done.stdout
    assert "session cached" not in done.stdout


@pytest.mark.parametrize("how", ["truncated", "refresh token revoked"])
def test_a_broken_sign_in_is_one_line_in_the_log(portal: Fakes, isolated: Path, how: str) -> None:
    portal.sign_in_sso(sso_dir(isolated), expires_in=-60)  # due: botocore must refresh
    path = sso_cache_file(sso_dir(isolated), "corp")
    if how == "truncated":
        path.write_text(path.read_text()[:40])
    else:
        portal.sso_refresh.clear()
    d = Daemon(isolated / "daemon.log", ("--profile", "dev-sso"))
    try:
        d.start()
        assert run_vaultd("switch", "dev-sso").returncode != 0  # answered once it is known
        assert status()["state"] == "sso_login_required"
    finally:
        d.stop()
    log = d.log()
    assert "Traceback" not in log
    assert "internal error" not in log
    assert "Refreshing token failed" not in log  # botocore's own warning, with its traceback


def doctor_with_read_only_caches(isolated: Path) -> subprocess.CompletedProcess[str]:
    """`vaultd doctor` in a mount namespace where both sign-in caches are read-only."""
    remount = " && ".join(
        f'mount --bind "{d}" "{d}" && mount -o remount,ro,bind "{d}"'
        for d in (sso_dir(isolated), login_dir(isolated))
    )
    namespace = ["unshare", "--mount", "--propagation", "private"]
    shell = ["sh", "-c", f'{remount} && exec "$@"', "doctor"]
    done = subprocess.run(
        [*namespace, *shell, sys.executable, "-m", "vaultd", "doctor"],
        env=vaultd_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in done.stderr
    return done


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="a read-only mount in a namespace of the test's own needs root and unshare",
)
def test_doctor_warns_when_the_cache_cannot_take_a_refresh(portal: Fakes, isolated: Path) -> None:
    portal.sign_in_sso(sso_dir(isolated))
    portal.sign_in_login(login_dir(isolated), SESSION_ARN)
    valid = doctor_with_read_only_caches(isolated)
    for who, directory in (
        ("IAM Identity Center corp", sso_dir(isolated)),
        ("console (aws login)", login_dir(isolated)),
    ):
        assert (
            f"[warn] sign-in: {who}: vaultd cannot refresh it when due, since {directory} "
            "cannot be written (Read-only file system): fix the directory"
        ) in valid.stdout
    assert "IAM Identity Center corp: signed in (" in valid.stdout
    # Writable (no mount): nothing to warn about.
    assert "cannot refresh" not in run_vaultd("doctor").stdout
    # Expired: nothing can be served, one failure and no "vaultd refreshes it" beside it.
    portal.sign_in_sso(sso_dir(isolated), expires_in=-60)
    portal.sign_in_login(login_dir(isolated), SESSION_ARN, expires_in=-60)
    expired = doctor_with_read_only_caches(isolated)
    assert expired.returncode == 1
    assert (
        "[FAIL] sign-in: IAM Identity Center corp: expired, and vaultd cannot refresh it, "
        f"since {sso_dir(isolated)} cannot be written (Read-only file system)"
    ) in expired.stdout
    assert "[FAIL] sign-in: console (aws login): expired, and vaultd cannot refresh" in (
        expired.stdout
    )
    assert "vaultd refreshes it" not in expired.stdout
    assert "session cached" not in expired.stdout


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="a read-only mount in a namespace of the test's own needs root and unshare",
)
def test_a_sign_in_the_daemon_cannot_refresh_is_served_and_status_says_so(
    portal: Fakes, daemon: Daemon, moto: str, isolated: Path
) -> None:
    cache = sso_dir(isolated)
    portal.sign_in_sso(cache, expires_in=300)  # under 15 minutes left: a refresh is due
    remount = f'mount --bind "{cache}" "{cache}" && mount -o remount,ro,bind "{cache}"'
    namespace = ("unshare", "--mount", "--propagation", "private")
    daemon.wrap = (*namespace, "sh", "-c", f'{remount} && exec "$@"', "serve")
    daemon.start()
    for profile in ("dev-sso", "master-via-sso"):  # the root's word survives the role step
        done = run_vaultd("switch", profile)
        assert done.returncode == 0, done.stderr
        note = status()["credentials"]["unrefreshed_signin"]
        assert note.startswith(
            f"IAM Identity Center corp: not refreshing the sign-in of 'dev-sso', since {cache} "
            "cannot be written (Read-only file system); it lasts until "
        ), note
        assert f"warning:     {note}" in run_vaultd("status").stdout
    assert portal.create_token_calls == 0  # the refresh token was not spent
    env = client_env(daemon.endpoint, moto, isolated / "client")
    assert boto3_whoami(env)["arn"].startswith(DEVELOPER_ROLE)
