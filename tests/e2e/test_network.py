"""169.254.169.254:80 for real, in a network namespace of the test's own: the alias and the
nftables redirect that `vaultd network install` writes, the daemon on 127.0.0.1:9169, and a
stock boto3 with no endpoint variable at all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import BOTO3_WHOAMI, run_vaultd, vaultd_env
from vaultd.host import network

pytestmark = [
    pytest.mark.skipif(
        not sys.platform.startswith("linux") or os.geteuid() != 0,
        reason="network namespaces need Linux and root (CI runs as root)",
    ),
    pytest.mark.skipif(
        shutil.which("ip") is None or shutil.which("nft") is None,
        reason="needs iproute2 and nftables (`apt-get install iproute2 nftables`)",
    ),
]
MOTO_PORT = 5055


class Namespace:
    def __init__(self) -> None:
        self.name = f"vaultd-test-{uuid.uuid4().hex[:8]}"
        self.procs: list[subprocess.Popen[str]] = []

    def argv(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(self, *cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*cmd), env=env, capture_output=True, text=True, timeout=90, check=False
        )

    def start(self, *cmd: str, env: dict[str, str], log: Path) -> subprocess.Popen[str]:
        with log.open("w") as out:
            proc = subprocess.Popen(
                self.argv(*cmd), env=env, stdout=out, stderr=subprocess.STDOUT, text=True
            )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)


@pytest.fixture
def netns(isolated: Path) -> Iterator[Namespace]:
    ns = Namespace()
    subprocess.run(["ip", "netns", "add", ns.name], check=True)
    try:
        assert ns.run("ip", "link", "set", "lo", "up").returncode == 0
        # Exactly what `vaultd network install` puts in place, inside the namespace.
        for cmd in network.alias_commands():
            done = ns.run(*cmd)
            assert done.returncode == 0, done.stderr
        rules = isolated / "redirect.nft"
        rules.write_text(network.nft_ruleset(9169))
        done = ns.run("nft", "-f", str(rules))
        assert done.returncode == 0, done.stderr
        yield ns
    finally:
        ns.close()


def wait_until(check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_stock_boto3_gets_role_credentials_from_169_254_169_254(
    netns: Namespace, isolated: Path, aws_config: Path
) -> None:
    moto_url = f"http://127.0.0.1:{MOTO_PORT}"
    env = vaultd_env()
    env["AWS_ENDPOINT_URL_STS"] = moto_url
    netns.start(
        sys.executable,
        "-m",
        "moto.server",
        "-H",
        "127.0.0.1",
        "-p",
        str(MOTO_PORT),
        env=env,
        log=isolated / "moto.log",
    )
    ping = "import sys, urllib.request as u; u.urlopen(sys.argv[1] + '/moto-api/', timeout=2)"
    wait_until(lambda: netns.run(sys.executable, "-c", ping, moto_url).returncode == 0)
    seed = "import sys; from vaultd.demo import seed_accounts; print(*seed_accounts(sys.argv[1]))"
    key_id, secret = netns.run(sys.executable, "-c", seed, moto_url, env=env).stdout.split()
    assert run_vaultd("add", "identity", "--stdin", stdin=f"{key_id}\n{secret}\n").returncode == 0

    daemon = netns.start(
        sys.executable,
        "-m",
        "vaultd",
        "serve",
        "--listen",
        "127.0.0.1:9169",
        env=env,
        log=isolated / "daemon.log",
    )
    wait_until(lambda: run_vaultd("status").returncode == 0)
    assert daemon.poll() is None
    assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0

    # A stock SDK process: no endpoint variable, no config, no credentials anywhere.
    client = {
        "PATH": os.environ["PATH"],
        "HOME": str(isolated / "client"),
        "AWS_ENDPOINT_URL_STS": moto_url,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    done = netns.run(sys.executable, "-c", BOTO3_WHOAMI, env=client)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["method"] == "iam-role"
    assert seen["arn"].startswith("arn:aws:sts::222233334444:assumed-role/DeveloperRole/")

    # The guards hold for redirected connections too.
    probe = (
        "import socket,sys\n"
        "s=socket.create_connection(('169.254.169.254',80),timeout=5)\n"
        "s.sendall(('GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\\r\\n'"
        "'Host: '+sys.argv[1]+'\\r\\nConnection: close\\r\\n\\r\\n').encode())\n"
        "print(s.recv(4096).decode(errors='replace'))\n"
    )
    rebound = netns.run(sys.executable, "-c", probe, "evil.example")
    assert rebound.stdout.startswith("HTTP/1.1 403"), rebound.stdout + rebound.stderr
    ours = netns.run(sys.executable, "-c", probe, "169.254.169.254")
    assert ours.stdout.startswith("HTTP/1.1 200"), ours.stdout + ours.stderr
    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if system_python:
        other = netns.run(
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            system_python,
            "-c",
            probe,
            "169.254.169.254",
        )
        assert other.stdout.startswith("HTTP/1.1 403"), other.stdout + other.stderr
        assert "uid 65534" in other.stdout


VICTIM = """\
import socket, sys
for line in sys.stdin:
    if line.strip() == "close":
        held.close()
        continue
    held = socket.create_connection(("127.0.0.1", int(line)), timeout=5)
    print("connected", flush=True)
"""


def test_another_uid_sharing_a_port_is_refused_through_the_redirect(
    netns: Namespace, isolated: Path, aws_config: Path
) -> None:
    """The port-sharing attack (tests/host/port_share.py) against 169.254.169.254:80."""
    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if system_python is None:
        pytest.skip("acting as uid 65534 needs /usr/bin/python3")
    netns.start(
        sys.executable, "-m", "vaultd", "serve", "--listen", "127.0.0.1:9169",
        env=vaultd_env(), log=isolated / "daemon.log",
    )  # fmt: skip
    wait_until(lambda: run_vaultd("status").returncode == 0)
    # The owner is served through the redirect (its owner found by SO_ORIGINAL_DST)...
    probe = (
        "import socket\n"
        "s=socket.create_connection(('169.254.169.254',80),timeout=5)\n"
        "s.sendall(b'GET /latest/meta-data/ HTTP/1.1\\r\\nHost: 169.254.169.254\\r\\n\\r\\n')\n"
        "print(s.recv(4096).decode(errors='replace'))\n"
    )
    ours = netns.run(sys.executable, "-c", probe)
    assert ours.stdout.startswith("HTTP/1.1 200"), ours.stdout + ours.stderr
    # ...and another uid on the owner's own local port never is.
    attack = (Path(__file__).parent.parent / "host" / "port_share.py").read_text()
    attacker = subprocess.Popen(
        netns.argv("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                   system_python, "-c", attack, "169.254.169.254", "80", "8"),
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    victim = subprocess.Popen(
        netns.argv(system_python, "-c", VICTIM),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    results = []
    try:
        assert attacker.stdout is not None and victim.stdin is not None
        assert victim.stdout is not None
        for _ in range(8):
            line = attacker.stdout.readline().strip()
            if line == "unsupported":
                pytest.skip("this kernel has no IP_LOCAL_PORT_RANGE (Linux 6.3+)")
            assert line.startswith("listening"), line
            victim.stdin.write(line.split()[1] + "\n")
            victim.stdin.flush()
            assert victim.stdout.readline().strip() == "connected"
            results.append(attacker.stdout.readline().strip())
            victim.stdin.write("close\n")  # the attacker's next round starts
            victim.stdin.flush()
    finally:
        for proc in (attacker, victim):
            proc.kill()
            proc.wait()
    shared = [r for r in results if "status" in r]
    assert len(shared) >= 4, results
    assert all(r.endswith("status 403") for r in shared), results
