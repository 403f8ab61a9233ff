"""`vaultd rotate` on moto IAM (with failures injected between its steps) and `vaultd login`
against a local fake of the federation endpoint."""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.e2e.harness import Daemon, run_vaultd, vaultd_env
from tests.helpers import FakeClock
from vaultd.core import config
from vaultd.core.credentials import Source
from vaultd.core.keystore import Keystore
from vaultd.core.rotate import RotateError, rotate
from vaultd.core.sts import Boto3StsFactory


@pytest.fixture
def all_at_moto(moto: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto)  # IAM too, not only STS
    return moto


def iam_keys(moto: str, user: str = "elmerfudd") -> set[str]:
    # moto scopes IAM by account: look in the identity account, where the user lives.
    sts = boto3.client(
        "sts",
        endpoint_url=moto,
        region_name="us-east-1",
        aws_access_key_id="AKIAADMIN00000000000",
        aws_secret_access_key="x",
    )
    c = sts.assume_role(RoleArn="arn:aws:iam::111122223333:role/x", RoleSessionName="test")[
        "Credentials"
    ]
    iam = boto3.client(
        "iam",
        endpoint_url=moto,
        region_name="us-east-1",
        aws_access_key_id=c["AccessKeyId"],
        aws_secret_access_key=c["SecretAccessKey"],
        aws_session_token=c["SessionToken"],
    )
    return {k["AccessKeyId"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]}


def test_rotate_end_to_end_through_the_cli(
    user_keys: tuple[str, str], all_at_moto: str, daemon: Daemon, aws_config: Path
) -> None:
    # A root without an MFA device: IAM is called with the keys themselves. (With a device
    # vaultd uses an MFA'd session, which moto files under the wrong account; the in-process
    # tests below cover that path with the account moto needs told.)
    aws_config.write_text(
        "[profile identity]\n[profile master]\nsource_profile = identity\n"
        "role_arn = arn:aws:iam::222233334444:role/DeveloperRole\n"
    )
    old, _ = user_keys
    daemon.start()
    assert run_vaultd("switch", "master").returncode == 0
    done = run_vaultd("rotate", "identity")
    assert done.returncode == 0, done.stderr
    new = Keystore().get_keys("identity")
    assert new is not None and new.access_key_id != old
    assert iam_keys(all_at_moto) == {new.access_key_id}
    assert f"****{old[-4:]} -> ****{new.access_key_id[-4:]}" in done.stdout
    assert new.secret_access_key.reveal() not in done.stdout + done.stderr
    assert run_vaultd("refresh").returncode == 0  # the daemon now signs with the new key


class Injected(Exception):
    pass


def session_account(service: str, source: Source, region: str) -> Any:
    """Real clients; IAM calls say which account they are in, as AWS knows from the
    session and moto cannot (it files GetSessionToken credentials under its default)."""
    client = Boto3StsFactory().client(service, source, region)
    if service == "iam":

        def tell(request: Any, **_: Any) -> None:
            request.headers["x-moto-account-id"] = "111122223333"

        client.meta.events.register("before-sign.iam.*", tell)
    return client


class Breaking:
    """Real moto clients, with one call made to fail."""

    def __init__(self, service: str, method: str, when: Any = None) -> None:
        self.real = session_account
        self.service, self.method, self.when = service, method, when

    def __call__(self, service: str, source: Source, region: str) -> Any:
        client = self.real(service, source, region)
        if service != self.service:
            return client
        original = getattr(client, self.method)

        def broken(**kwargs: Any) -> Any:
            if self.when is None or self.when(source, kwargs):
                raise Injected(f"{self.method} broken on purpose")
            return original(**kwargs)

        setattr(client, self.method, broken)
        return client


def test_failure_between_create_and_delete_loses_no_key(
    user_keys: tuple[str, str], all_at_moto: str
) -> None:
    old, _ = user_keys
    with pytest.raises(RotateError) as info:
        rotate(
            "master",
            keystore=Keystore(),
            load_profiles=config.load_profiles,
            clients=Breaking("iam", "delete_access_key"),
            mfa_code="123456",
        )
    stored = Keystore().get_keys("identity")
    assert stored is not None and stored.access_key_id != old
    assert iam_keys(all_at_moto) == {old, stored.access_key_id}  # both exist, as the error says
    message = info.value.message
    assert old in message and "elmerfudd" in message and "is stored and works" in message
    assert stored.secret_access_key.reveal() not in message
    boto3.client(
        "sts",
        endpoint_url=all_at_moto,
        region_name="us-east-1",
        aws_access_key_id=stored.access_key_id,
        aws_secret_access_key=stored.secret_access_key.reveal(),
    ).get_caller_identity()


def test_a_new_key_that_never_works_is_deleted_and_the_old_one_kept(
    user_keys: tuple[str, str], all_at_moto: str
) -> None:
    old, _ = user_keys
    clock = FakeClock()
    breaking = Breaking(
        "sts", "get_caller_identity", when=lambda source, kwargs: source.access_key_id != old
    )
    with pytest.raises(RotateError, match="did not work within 30s and was deleted"):
        rotate(
            "identity",
            keystore=Keystore(),
            load_profiles=config.load_profiles,
            clients=breaking,
            mfa_code="123456",
            clock=clock,
            sleep=clock.advance,
        )
    stored = Keystore().get_keys("identity")
    assert stored is not None and stored.access_key_id == old
    assert iam_keys(all_at_moto) == {old}


def test_rotate_needs_a_code_for_an_mfa_root(user_keys: tuple[str, str], all_at_moto: str) -> None:
    done = run_vaultd("rotate", "identity")
    assert done.returncode == 3 and "--mfa" in done.stderr


async def test_login_builds_a_signin_url_from_the_daemon_credentials(
    user_keys: tuple[str, str], daemon: Daemon, all_at_moto: str, tmp_path: Path
) -> None:
    seen: list[dict[str, str]] = []

    async def federation(request: web.Request) -> web.Response:
        query = dict(request.query)
        seen.append(query)
        if query.get("Action") != "getSigninToken":
            return web.json_response({"error": "bad action"}, status=400)
        session = json.loads(query["Session"])
        if not {"sessionId", "sessionKey", "sessionToken"} <= set(session):
            return web.json_response({"error": "bad session"}, status=400)
        return web.json_response({"SigninToken": "fake-signin-token"})

    app = web.Application()
    app.router.add_get("/federation", federation)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        await asyncio.to_thread(daemon.start)
        assert (
            await asyncio.to_thread(run_vaultd, "switch", "master", "--mfa", "123456")
        ).returncode == 0
        url = f"http://127.0.0.1:{server.port}/federation"

        async def login(*args: str) -> str:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "vaultd",
                "login",
                *args,
                "--print",
                "--federation-url",
                url,
                env=vaultd_env(),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            return out.decode().strip()

        printed = await login("master", "--duration", "2h", "--region", "eu-west-1")
        params = urllib.parse.parse_qs(urllib.parse.urlparse(printed).query)
        assert params["Action"] == ["login"] and params["SigninToken"] == ["fake-signin-token"]
        assert params["Destination"] == [
            "https://eu-west-1.console.aws.amazon.com/console/home?region=eu-west-1"
        ]
        assert seen[-1]["SessionDuration"] == "7200"  # a role: the console session length
        status = json.loads(
            (await asyncio.to_thread(run_vaultd, "export", "master", "--format", "json")).stdout
        )
        assert json.loads(seen[-1]["Session"])["sessionId"] == status["AccessKeyId"]

        await login("identity")  # no role: GetFederationToken first, no SessionDuration
        assert "SessionDuration" not in seen[-1]
        assert json.loads(seen[-1]["Session"])["sessionId"] != status["AccessKeyId"]

        # Opened in a browser: the token must be in no process's argv (every local user
        # reads those), only in the redirect the owner's browser is given.
        browser = tmp_path / "browser"
        browser.write_text(f"#!{sys.executable}\n{BROWSER}")
        browser.chmod(0o700)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "vaultd",
            "login",
            "master",
            "--federation-url",
            url,
            env={**vaultd_env(), "BROWSER": str(browser), "BROWSER_LOG": str(tmp_path / "seen")},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert (proc.returncode, out) == (0, b""), err.decode()
        argv, status_line, location = (tmp_path / "seen").read_text().splitlines()
        assert "fake-signin-token" not in argv and argv.startswith("http://127.0.0.1:")
        assert status_line == "302"
        query = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)
        assert query["SigninToken"] == ["fake-signin-token"]
    finally:
        await server.close()


# A browser for `vaultd login`: records the URL it was started with, follows no redirect.
BROWSER = r"""
import http.client, os, sys, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
conn.request("GET", url.path)
answer = conn.getresponse()
with open(os.environ["BROWSER_LOG"], "w") as log:
    log.write(f"{sys.argv[1]}\n{answer.status}\n{answer.getheader('Location')}\n")
"""


def test_console_hosts_per_partition() -> None:
    from vaultd.core import console

    assert console.partition_of("arn:aws-cn:iam::123456789012:role/x", None) == "aws-cn"
    assert console.partition_of(None, "us-gov-west-1") == "aws-us-gov"
    assert console.HOSTS["aws-cn"][0] == "https://signin.amazonaws.cn/federation"
    assert console.destination("aws-us-gov", "us-gov-east-1").startswith(
        "https://us-gov-east-1.console.amazonaws-us-gov.com/"
    )


def test_rotate_with_an_mfa_session_drops_the_sessions_built_on_the_old_key(
    user_keys: tuple[str, str], all_at_moto: str
) -> None:
    old, _ = user_keys
    assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 4  # no daemon needed
    store = Keystore()
    from tests.helpers import make_creds
    from vaultd.core.keystore import CachedSession

    store.set_session(
        "identity", CachedSession("arn:aws:iam::111122223333:mfa/elmerfudd", make_creds(0))
    )
    done = rotate(
        "master",
        keystore=store,
        load_profiles=config.load_profiles,
        clients=session_account,
        mfa_code="123456",
    )
    assert (done.profile, done.user, done.old) == ("identity", "elmerfudd", old)
    assert iam_keys(all_at_moto) == {done.new}
    assert store.get_session("identity") is None
    assert "identity" in done.dropped_sessions
