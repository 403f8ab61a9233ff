"""`vaultd demo`: the whole flow against an embedded fake AWS, for people without an account.

A moto server on loopback plays STS and IAM. The demo creates the README's two accounts (an
IAM user `elmerfudd` in 111122223333, `DeveloperRole` in 222233334444), writes a config like
the README's into a temporary directory, stores the user's key in a throwaway file keyring
there, starts `vaultd serve` on it, switches to `master` with a demo MFA code, and proves it
with a boto3 process that finds credentials only through IMDS. It then prints one block of
shell lines (`Sandbox.shell_block`) that makes `vaultd` and `aws` work against the demo in
any new shell. Ctrl-C removes everything.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer

IDENTITY_ACCOUNT = "111122223333"
MASTER_ACCOUNT = "222233334444"
MFA_SERIAL = f"arn:aws:iam::{IDENTITY_ACCOUNT}:mfa/elmerfudd"
ROLE_ARN = f"arn:aws:iam::{MASTER_ACCOUNT}:role/DeveloperRole"
DEMO_CODE = "123456"

# `[default]` carries the region as `aws configure` writes it: SDKs and the AWS CLI in a shell
# with no AWS_PROFILE read their region from there (the AWS CLI v1 never asks IMDS for one).
CONFIG = f"""\
[default]
region = eu-west-1

[profile identity]
region = eu-west-1
mfa_serial = {MFA_SERIAL}

[profile master]
source_profile = identity
mfa_serial = {MFA_SERIAL}
role_arn = {ROLE_ARN}
"""

# No region here: it must come from the config, as it does for the pasted shell.
CHECK = "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])"

# What the demo's own commands use and a second shell needs too, so `vaultd list`, `status`,
# `switch` and the AWS CLI there see the demo (its config, keyring, socket and fake AWS).
SHELL_VARIABLES = (
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ENDPOINT_URL",
    "PYTHON_KEYRING_BACKEND",
    "XDG_DATA_HOME",
    "VAULTD_CONTROL_SOCKET",
)
# The pasted shell's own AWS_ variables would decide before IMDS does (keys, a profile, a web
# identity token, AWS_EC2_METADATA_DISABLED, an AWS_ENDPOINT_URL_STS of its own): drop every
# one, as the demo's own check (`client_env`) does, before the demo's are exported. A loop,
# not `unset $(...)`: zsh's `unset` with nothing to unset is an error.
UNSET_AWS = (
    "for name in $(env | sed -n 's/^\\(AWS_[A-Za-z0-9_]*\\)=.*/\\1/p'); do unset \"$name\"; done"
)


def scripts_dir() -> Path | None:
    """The directory holding the `vaultd` command of this installation (a venv's or pipx's
    bin), or None when it cannot be found next to the running interpreter."""
    for candidate in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        if candidate and (Path(candidate) / "vaultd").exists():
            return Path(candidate)
    return None


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


# What ends the demo: Ctrl-C (SIGINT, Python's KeyboardInterrupt), `kill` (SIGTERM), a closed
# terminal (SIGHUP) and Ctrl-\ (SIGQUIT). Each one cleans up; while it does, they are ignored,
# so that a second Ctrl-C cannot cut the clean-up short.
STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


@contextmanager
def deferred_stop() -> Iterator[None]:
    """Hold STOPPING_SIGNALS until the block is done, then stop (KeyboardInterrupt) if one
    came: for a step whose result the clean-up needs, such as the daemon's Popen (a
    KeyboardInterrupt after its fork and before the assignment left a daemon serving that
    nothing would stop) or the sandbox's temp dir. Main thread only, as signal.signal is."""
    caught: list[int] = []
    previous = {
        s: signal.signal(s, lambda signum, _: caught.append(signum)) for s in STOPPING_SIGNALS
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if caught:
        raise KeyboardInterrupt


def _ended(status: int) -> NoReturn:
    """What the daemon's exit status means for the demo. 0 (a clean stop after a signal) and
    death by one of STOPPING_SIGNALS mean it was stopped as the demo is, often by the same
    signal to the whole process group (which a script's background job may even ignore):
    the demo stops too (KeyboardInterrupt). Anything else is a failure (RuntimeError) that
    says how it ended."""
    # 130: a SIGINT before its loop took the signals over (the CLI's exit for an interrupt).
    if status in (0, 130) or -status in STOPPING_SIGNALS:
        raise KeyboardInterrupt
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:  # a real-time signal has a number, not a name
            name = signal.strsignal(-status) or "unnamed"
        raise RuntimeError(f"its daemon was killed by signal {-status} ({name})")
    raise RuntimeError(f"its daemon stopped by itself (exit status {status})")


def _wait_for_daemon(env: dict[str, str], proc: subprocess.Popen[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _ended(proc.returncode)
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

    def __init__(
        self,
        listen: str = "127.0.0.1:9169",
        quiet_daemon: bool = False,
        fallback: str | None = None,
    ) -> None:
        self.listen = listen
        # Where to listen instead if `listen` is taken between the look and the bind.
        self.fallback = fallback
        self.quiet_daemon = quiet_daemon
        self.workdir = Path(tempfile.mkdtemp(prefix="vaultd-demo-"))
        self.moto: ThreadedMotoServer | None = None  # set once started: what `close` stops
        self.daemon: subprocess.Popen[str] | None = None
        self.sts_endpoint = ""
        self.imds_endpoint = ""
        self.env: dict[str, str] = {}

    def start(self) -> Sandbox:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        # A server half started (its thread made, its socket not yet) could not be stopped.
        with deferred_stop():
            moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            moto.start()
            self.moto = moto
        host, port = moto.get_host_and_port()
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
        self.imds_endpoint = str(self._serve(env)["endpoint"])
        return self

    def _serve(self, env: dict[str, str]) -> dict[str, Any]:
        """Start `vaultd serve`; its status once it answers. A port seen free by `pick_listen`
        can be taken before the daemon binds it (another demo starting): then once more on
        the fallback."""
        while True:
            with deferred_stop():  # a daemon started must be one `close` knows of
                self.daemon = subprocess.Popen(
                    [sys.executable, "-m", "vaultd", "serve"],
                    env=env,
                    text=True,
                    stderr=subprocess.DEVNULL if self.quiet_daemon else None,
                )
            try:
                return _wait_for_daemon(env, self.daemon)
            except RuntimeError:
                host, _, port = self.listen.rpartition(":")
                if self.fallback is None or not _taken(host, int(port)):
                    raise
            print(f"{self.listen} was taken meanwhile; the demo listens on a free port instead.")
            self.listen = env["VAULTD_LISTEN"] = self.fallback
            self.fallback = None

    def vaultd(self, *args: str) -> str:
        """`vaultd ARGS` against the sandbox; when it fails because the daemon has ended,
        what ended it (`_ended`), not the command's own complaint."""
        try:
            return _vaultd(self.env, *args)
        except RuntimeError:
            # A daemon shutting down on a signal drops its connections before it exits.
            if self.daemon is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.daemon.wait(timeout=2)
            self.check()
            raise

    def identity(self) -> str:
        """The ARN boto3 gets credentials for through the sandbox's IMDS, in a process of its
        own (`CHECK`); RuntimeError with its last line of complaint when it gets none."""
        seen = subprocess.run(
            [sys.executable, "-c", CHECK],
            env=self.client_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.check()
        if seen.returncode != 0:
            last = (seen.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"boto3 found no credentials through IMDS: {last}")
        return seen.stdout.strip()

    def check(self) -> None:
        """Return while the daemon runs; else raise as `_ended` says for its exit."""
        status = self._started().poll()
        if status is not None:
            _ended(status)

    def _started(self) -> subprocess.Popen[str]:
        """The daemon's process; RuntimeError when `start` never got that far."""
        if self.daemon is None:
            raise RuntimeError("the daemon was not started")
        return self.daemon

    def shell_exports(self) -> dict[str, str]:
        """The variables a new shell needs to use this sandbox, taken from the environment
        the demo's own `vaultd` commands run with, plus the IMDS endpoint."""
        exports = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": self.imds_endpoint}
        # The address the daemon really listens on (the demo may have moved off 9169), so
        # `vaultd env` and `doctor` in that shell name it too.
        exports["VAULTD_LISTEN"] = self.imds_endpoint.split("//", 1)[-1].rstrip("/")
        exports.update((name, self.env[name]) for name in SHELL_VARIABLES)
        return exports

    def shell_block(self) -> list[str]:
        """Lines to paste into a new shell (absolute paths, no region or PATH assumed):
        afterwards `vaultd status|list|switch` and `aws` there all reach this sandbox."""
        lines = []
        bin_dir = scripts_dir()
        if bin_dir is not None:
            lines.append(f'export PATH={shlex.quote(str(bin_dir))}:"$PATH"')
        lines.append(UNSET_AWS)
        lines += [f"export {k}={shlex.quote(v)}" for k, v in self.shell_exports().items()]
        lines += ["vaultd status", "vaultd list"]
        if shutil.which("aws", path=str(bin_dir) if bin_dir else None) is None:
            lines.append("# no AWS CLI here: pip install awscli (or use any SDK) for the next line")
        lines.append("aws sts get-caller-identity    # ...assumed-role/DeveloperRole/...")
        return lines

    def client_env(self) -> dict[str, str]:
        """An SDK's view, as in a shell after `shell_block`: IMDS, the fake AWS and the demo's
        config (for its region), and no credentials anywhere."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VAULTD_"))}
        env.update(self.shell_exports())
        return env

    def wait(self) -> NoReturn:
        """Block while the daemon runs (a signal's KeyboardInterrupt ends the wait), then
        raise as `_ended` says for its exit."""
        _ended(self._started().wait())

    def close(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                self.daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
        if self.moto is not None:
            self.moto.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def pick_listen(listen: str | None, preferred: tuple[str, int] = ("127.0.0.1", 9169)) -> str:
    """The IMDS listener for the demo: `listen` when one was asked for, else `preferred`
    (vaultd's usual port) while it is free, else any free port. The paste block carries the
    endpoint, so a demo on another port works the same; a daemon already on 9169 must not
    stop `make demo`."""
    if listen is not None:
        return listen
    host, port = preferred
    if _taken(host, port):
        print(f"{host}:{port} is in use; the demo listens on a free port instead.")
        return f"{host}:0"
    return f"{host}:{port}"


def _taken(host: str, port: int) -> bool:
    """Whether binding `host`:`port` fails now (IPv4), as the daemon's listener binds it: with
    SO_REUSEADDR, so a port in TIME_WAIT counts as free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def run(listen: str | None = None) -> int:
    """`vaultd demo`: exit 0 after Ctrl-C (or SIGTERM, SIGHUP, SIGQUIT), 1 when the demo
    cannot start or its daemon fails."""
    # From the start: a signal while the demo starts must clean up as well as a later one.
    for signum in STOPPING_SIGNALS[1:]:
        signal.signal(signum, _interrupt)
    sandbox: Sandbox | None = None
    try:
        with deferred_stop():  # its temp dir must be one the clean-up knows of
            chosen = pick_listen(listen)
            # Only a port vaultd chose may move: one asked for fails plainly.
            host = chosen.rpartition(":")[0]
            fallback = None if listen is not None or chosen.endswith(":0") else f"{host}:0"
            sandbox = Sandbox(chosen, fallback=fallback)
        sandbox.start()
        print(f"Stored the demo user's key in a throwaway keyring under {sandbox.workdir}")
        print(sandbox.vaultd("switch", "master", "--mfa", DEMO_CODE).strip())
        print(f"Checked: boto3 through IMDS is {sandbox.identity()}")
        block = "\n".join(f"  {line}" for line in sandbox.shell_block())
        print(
            "\nvaultd is serving the DeveloperRole in the demo's fake AWS. Paste these lines into"
            " another terminal\n(they point that shell at the demo; close it when you are done):"
            f"\n\n{block}\n\n"
            "Ready. Press Ctrl-C to stop; the demo leaves nothing behind.",
            flush=True,
        )
        sandbox.wait()  # until Ctrl-C, or the daemon ends
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(f"vaultd: demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for signum in STOPPING_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        if sandbox is not None:
            sandbox.close()
            print("Demo stopped; removed", sandbox.workdir, flush=True)
    return 0
