"""`vaultd demo`: the whole flow against an embedded fake AWS, for people without an account.

A moto server on loopback plays STS and IAM. The demo creates the README's two accounts (an
IAM user `elmerfudd` in 111122223333, `DeveloperRole` in 222233334444), writes a config like
the README's into a temporary directory, stores the user's key in a throwaway file keyring
there, starts `vaultd serve` on it, switches to `master` with a demo MFA code, and proves it
with a boto3 process that finds credentials only through IMDS. Ctrl-C removes everything.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

IDENTITY_ACCOUNT = "111122223333"
MASTER_ACCOUNT = "222233334444"
MFA_SERIAL = f"arn:aws:iam::{IDENTITY_ACCOUNT}:mfa/elmerfudd"
ROLE_ARN = f"arn:aws:iam::{MASTER_ACCOUNT}:role/DeveloperRole"
DEMO_CODE = "123456"

CONFIG = f"""\
[profile identity]
region = eu-west-1
mfa_serial = {MFA_SERIAL}

[profile master]
source_profile = identity
mfa_serial = {MFA_SERIAL}
role_arn = {ROLE_ARN}
"""

CHECK = (
    "import boto3; print(boto3.client('sts', region_name='eu-west-1').get_caller_identity()['Arn'])"
)


def _client(service: str, endpoint: str, **creds: str) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", **creds)


def seed_accounts(endpoint: str) -> tuple[str, str]:
    """Create the demo user and role in moto; return the user's access key id and secret.

    moto files resources under the account of the calling credentials, and an assumed
    role's credentials belong to the role's account: that is how we act in each account.
    """
    boot = {"aws_access_key_id": "AKIADEMOBOOTSTRAP000", "aws_secret_access_key": "demo"}

    def act_in(account: str) -> dict[str, str]:
        creds = _client("sts", endpoint, **boot).assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/demo-setup", RoleSessionName="setup"
        )["Credentials"]
        return {
            "aws_access_key_id": creds["AccessKeyId"],
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"],
        }

    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{IDENTITY_ACCOUNT}:root"},
                    "Action": "sts:AssumeRole",
                    "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
                }
            ],
        }
    )
    _client("iam", endpoint, **act_in(MASTER_ACCOUNT)).create_role(
        RoleName="DeveloperRole", AssumeRolePolicyDocument=trust
    )
    iam = _client("iam", endpoint, **act_in(IDENTITY_ACCOUNT))
    iam.create_user(UserName="elmerfudd")
    iam.create_virtual_mfa_device(VirtualMFADeviceName="elmerfudd")
    key = iam.create_access_key(UserName="elmerfudd")["AccessKey"]
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])


def _vaultd(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "vaultd", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"vaultd {args[0]} failed: {done.stderr.strip()}")
    return done.stdout


def _wait_for_daemon(env: dict[str, str], proc: subprocess.Popen[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the daemon exited; see its messages above")
        done = subprocess.run(
            [sys.executable, "-m", "vaultd", "status", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            return dict(json.loads(done.stdout))
        time.sleep(0.1)
    raise RuntimeError("the daemon did not come up within 30 s")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class Sandbox:
    """Moto, a throwaway keyring and config, and `vaultd serve`, all under one temp dir.

    Used by `vaultd demo` and by the benchmark; `close()` removes every trace.
    """

    def __init__(self, listen: str = "127.0.0.1:9169", quiet_daemon: bool = False) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.listen = listen
        self.quiet_daemon = quiet_daemon
        self.workdir = Path(tempfile.mkdtemp(prefix="vaultd-demo-"))
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.daemon: subprocess.Popen[str] | None = None
        self.sts_endpoint = ""
        self.imds_endpoint = ""
        self.env: dict[str, str] = {}

    def start(self) -> Sandbox:
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.sts_endpoint = f"http://{host}:{port}"
        key_id, secret = seed_accounts(self.sts_endpoint)
        work = self.workdir
        (work / "aws").mkdir()
        (work / "aws" / "config").write_text(CONFIG)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VAULTD_"))}
        env.update(
            AWS_CONFIG_FILE=str(work / "aws" / "config"),
            AWS_SHARED_CREDENTIALS_FILE=str(work / "aws" / "credentials"),
            AWS_ENDPOINT_URL=self.sts_endpoint,
            PYTHON_KEYRING_BACKEND="keyrings.alt.file.PlaintextKeyring",
            XDG_DATA_HOME=str(work / "data"),
            XDG_CONFIG_HOME=str(work / "config"),
            VAULTD_CONTROL_SOCKET=str(work / "run" / "control.sock"),
            VAULTD_LISTEN=self.listen,
        )
        self.env = env
        _vaultd(env, "add", "identity", "--stdin", stdin=f"{key_id}\n{secret}\n")
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "vaultd", "serve"],
            env=env,
            text=True,
            stderr=subprocess.DEVNULL if self.quiet_daemon else None,
        )
        self.imds_endpoint = str(_wait_for_daemon(env, self.daemon)["endpoint"])
        return self

    def vaultd(self, *args: str) -> str:
        return _vaultd(self.env, *args)

    def client_env(self) -> dict[str, str]:
        """An SDK's view: IMDS and the fake STS, and no credentials or keyring anywhere."""
        env = {k: v for k, v in self.env.items() if not k.startswith(("PYTHON_KEYRING", "XDG_"))}
        env.update(
            AWS_EC2_METADATA_SERVICE_ENDPOINT=self.imds_endpoint,
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )
        return env

    def close(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                self.daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
        self.moto.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def run(listen: str = "127.0.0.1:9169") -> int:
    sandbox = Sandbox(listen)
    try:
        sandbox.start()
        print(f"Stored the demo user's key in a throwaway keyring under {sandbox.workdir}")
        print(sandbox.vaultd("switch", "master", "--mfa", DEMO_CODE).strip())
        seen = subprocess.run(
            [sys.executable, "-c", CHECK],
            env=sandbox.client_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        print(f"Checked: boto3 through IMDS is {seen.stdout.strip() or seen.stderr.strip()}")
        print(
            "\nvaultd is serving the DeveloperRole in the demo's fake AWS. In another terminal:\n\n"
            f"  export AWS_EC2_METADATA_SERVICE_ENDPOINT={sandbox.imds_endpoint}\n"
            f"  export AWS_ENDPOINT_URL={sandbox.sts_endpoint}\n"
            "  export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null\n"
            "  aws sts get-caller-identity\n\n"
            f"  VAULTD_CONTROL_SOCKET={sandbox.env['VAULTD_CONTROL_SOCKET']} vaultd status\n\n"
            "Ready. Press Ctrl-C to stop; the demo leaves nothing behind.",
            flush=True,
        )
        signal.signal(signal.SIGTERM, _interrupt)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(f"vaultd: demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        sandbox.close()
        print("Demo stopped; removed", sandbox.workdir, flush=True)
    return 0
