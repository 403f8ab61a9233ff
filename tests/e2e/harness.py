"""Real parts for end-to-end tests: a moto server as STS/IAM, `vaultd` as subprocesses, and
SDK clients as subprocesses that find credentials only through IMDS."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from vaultd import settings
from vaultd.client import ControlClient, ControlError, DaemonNotRunning

BOTO3_WHOAMI = """
import json, boto3
session = boto3.session.Session(region_name="us-east-1")
creds = session.get_credentials()
arn = session.client("sts").get_caller_identity()["Arn"]
print(json.dumps({"method": creds.method, "access_key": creds.access_key, "arn": arn}))
"""


def reset_moto(endpoint: str) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def vaultd_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The test's isolated environment (set by the autouse fixture), for subprocesses."""
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def client_env(endpoint: str, moto: str, home: Path) -> dict[str, str]:
    """What an SDK process sees: the IMDS endpoint, STS at moto, and no credentials at all."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": endpoint,
        "AWS_ENDPOINT_URL_STS": moto,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "NO_PROXY": "*",
    }


def run_vaultd(
    *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vaultd", *args],
        env=vaultd_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_json(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run a client process that must succeed and print one JSON document."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def boto3_whoami(env: dict[str, str]) -> dict[str, Any]:
    return run_json([sys.executable, "-c", BOTO3_WHOAMI], env)


AWSCLI_WHOAMI = ["-m", "awscli", "sts", "get-caller-identity", "--region", "us-east-1"]


def awscli_whoami(env: dict[str, str]) -> dict[str, Any]:
    return run_json([sys.executable, *AWSCLI_WHOAMI, "--output", "json"], env)


@dataclass
class Daemon:
    """`vaultd serve` as a subprocess, its stderr kept in a file for inspection; `wrap` is
    argv put before it that must exec it in the end (a namespace, a mount)."""

    log_path: Path
    args: tuple[str, ...] = ()
    wrap: tuple[str, ...] = ()
    proc: subprocess.Popen[str] | None = None
    status: dict[str, Any] = field(default_factory=dict)
    _log: IO[str] | None = None

    def start(self, timeout: float = 30) -> Daemon:
        self._log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            [
                *self.wrap,
                sys.executable,
                "-m",
                "vaultd",
                "serve",
                "--listen",
                "127.0.0.1:0",
                *self.args,
            ],
            env=vaultd_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        # Ask the control socket in-process (no `vaultd status` subprocess per poll) until
        # the daemon answers, exits, or the timeout passes.
        client = ControlClient(self.control_socket(), timeout=5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited early:\n{self.log()}")
            try:
                self.status = client.status()
            except (DaemonNotRunning, ControlError):
                time.sleep(0.05)
                continue
            return self
        raise AssertionError(f"daemon did not start:\n{self.log()}")

    def control_socket(self) -> Path:
        """The control socket this daemon serves: its --control-socket, else the settings'."""
        flag = None
        if "--control-socket" in self.args:
            flag = self.args[self.args.index("--control-socket") + 1]
        return settings.load(vaultd_env(), control_socket=flag).control_socket

    @property
    def endpoint(self) -> str:
        return str(self.status["endpoint"])

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> int:
        """SIGTERM the daemon and return its exit status. One that does not stop within 15 s
        is killed (no test leaves a daemon behind) and the test fails with its log."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
            raise AssertionError(f"the daemon did not stop on SIGTERM:\n{self.log()}") from None
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
        self.proc = None
        return code


def drive_tty(
    args: list[str],
    inputs: list[bytes],
    prompt: bytes,
    *,
    interrupt_after: bytes | None = None,
    timeout: float = 60,
    at_deadline: int = signal.SIGKILL,
) -> tuple[int, bytes]:
    """Run `vaultd ARGS` with a pseudo-terminal as its controlling terminal: type
    `inputs[i]` (raw bytes) once `prompt` has been shown i+1 times; press Ctrl-C once
    `interrupt_after` is printed (after the first input, when there are any); send
    `at_deadline` if the command is still running after `timeout` seconds. Exit code and
    everything the terminal showed."""
    pid, fd = pty.fork()
    if pid == 0:  # child
        # A terminal's Ctrl-C: not ignored, even when the tests were started with SIGINT
        # ignored (`nohup make test &`), which exec would pass on.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.execvpe(sys.executable, [sys.executable, "-m", "vaultd", *args], dict(os.environ))  # noqa: S606
    out, typed, interrupted = b"", 0, False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 0.2)[0]:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
        while typed < len(inputs) and out.count(prompt) > typed:
            os.write(fd, inputs[typed])
            typed += 1
        waited = typed > 0 or not inputs
        if interrupt_after and waited and not interrupted and interrupt_after in out:
            os.kill(pid, signal.SIGINT)
            interrupted = True
    else:
        os.kill(pid, at_deadline)
    status = _reap(pid)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out


def _reap(pid: int, grace: float = 10) -> int:
    """The wait status of child `pid`, killed if it has not ended within `grace` seconds."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def run_on_tty(
    args: list[str],
    answer: str,
    prompt: str,
    *,
    interrupt_after: str | None = None,
    timeout: float = 60,
    times: int = 1,
) -> tuple[int, str]:
    """Run `vaultd ARGS` on a terminal (`drive_tty`) and answer the prompt each time it is
    shown, up to `times` times; optionally press Ctrl-C once `interrupt_after` has been
    printed."""
    code, out = drive_tty(
        args,
        [answer.encode() + b"\n"] * times,
        prompt.encode(),
        interrupt_after=interrupt_after.encode() if interrupt_after else None,
        timeout=timeout,
    )
    return code, out.decode(errors="replace")


def wait_for(predicate: Any, timeout: float = 30) -> dict[str, Any]:
    """The daemon's status document (`vaultd status --json`) once `predicate` holds of it,
    looked at every 0.2 s for up to `timeout` seconds; AssertionError with the last one."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = json.loads(run_vaultd("status", "--json").stdout)
        if predicate(status):
            return status
        time.sleep(0.2)
    raise AssertionError(f"condition not met; last status: {status}")


def watch_on_tty(times: int, code: str = "222222") -> tuple[int, str]:
    """`vaultd mfa --watch` on a terminal, looking every 0.1 s: answers `code` to each of up
    to `times` prompts, and presses Ctrl-C once a code has made it print `Serving master`."""
    return run_on_tty(
        ["mfa", "--watch", "--interval", "0.1"],
        code,
        "MFA code for",
        times=times,
        interrupt_after="Serving master",
    )


def served(endpoint: str) -> dict[str, Any]:
    """What the daemon is serving right now, read the way an SDK would (IMDSv2)."""
    put = urllib.request.Request(
        endpoint + "latest/api/token",
        method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
    )
    with urllib.request.urlopen(put, timeout=5) as r:
        token = r.read().decode()
    headers = {"X-aws-ec2-metadata-token": token}
    base = endpoint + "latest/meta-data/iam/security-credentials/"
    with urllib.request.urlopen(urllib.request.Request(base, headers=headers), timeout=5) as r:
        role = r.read().decode()
    with urllib.request.urlopen(
        urllib.request.Request(base + role, headers=headers), timeout=5
    ) as r:
        return dict(json.loads(r.read()))


def sh(*cmd: str) -> None:
    """Run a setup command (ip, nft) that must succeed, within 30 s."""
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def linked_namespaces(first: str, second: str) -> Iterator[tuple[str, str]]:
    """Two network namespaces of the test's own on one wire (a veth pair), `lo` up in both:
    `first` and `second` are the address/prefix of each end. Yields their names; deletes
    both (and the pair with them) after. Needs Linux, root and iproute2."""
    tag = uuid.uuid4().hex[:6]
    one, two = f"vd-c-{tag}", f"vd-o-{tag}"
    try:
        sh("ip", "netns", "add", one)
        sh("ip", "netns", "add", two)
        sh("ip", "link", "add", f"vc{tag}", "type", "veth", "peer", "name", f"vo{tag}")
        sh("ip", "link", "set", f"vc{tag}", "netns", one)
        sh("ip", "link", "set", f"vo{tag}", "netns", two)
        for ns, dev, addr in ((one, f"vc{tag}", first), (two, f"vo{tag}", second)):
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", addr, "dev", dev)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up")
        yield one, two
    finally:
        for ns in (one, two):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
