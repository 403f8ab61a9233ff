"""`vaultd relay` without docker: a "container" network namespace holding 169.254.169.254
(the relay and a stock boto3), an "outside" one on the same wire, and the host's daemon
reached over its Unix socket."""

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
from typing import IO

import pytest

from tests.e2e.harness import Daemon, run_vaultd, served, vaultd_env
from tests.e2e.test_clients import BOTO3_CREDS

pytestmark = [
    pytest.mark.skipif(
        not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("ip") is None,
        reason="network namespaces need Linux, root and iproute2 (CI runs as root)",
    ),
]
PROBE = (
    "import socket\n"
    "s=socket.create_connection(('169.254.169.254',80),timeout=5)\n"
    "s.sendall(b'GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\\r\\n'"
    "b'Host: 169.254.169.254\\r\\nConnection: close\\r\\n\\r\\n')\n"
    "print(s.recv(4096).decode(errors='replace'))\n"
)


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


@pytest.fixture
def wire() -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:6]
    inside, outside = f"vd-c-{tag}", f"vd-o-{tag}"
    try:
        sh("ip", "netns", "add", inside)
        sh("ip", "netns", "add", outside)
        sh("ip", "link", "add", f"vc{tag}", "type", "veth", "peer", "name", f"vo{tag}")
        sh("ip", "link", "set", f"vc{tag}", "netns", inside)
        sh("ip", "link", "set", f"vo{tag}", "netns", outside)
        for ns, dev, addr in (
            (inside, f"vc{tag}", "169.254.169.254/24"),
            (outside, f"vo{tag}", "169.254.169.100/24"),
        ):
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", addr, "dev", dev)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up")
        yield inside, outside
    finally:
        for ns in (inside, outside):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def in_ns(
    ns: str, *cmd: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *cmd],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def container_key(ns: str, home: Path) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    done = in_ns(ns, sys.executable, "-c", BOTO3_CREDS, env=env)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["method"] == "iam-role"
    return str(got["key"])


def start_relay(ns: str, cidr: str, log: IO[str]) -> subprocess.Popen[str]:
    """`vaultd relay` in the namespace `ns`, answering `cidr`, its output in `log`."""
    relay = [sys.executable, "-m", "vaultd", "relay", "--allow-cidr", cidr, "--interval", "0.3"]
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, *relay],
        env=vaultd_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until_served(ns: str, relay: subprocess.Popen[str], log: Path) -> None:
    """Probe from `ns` until the relay answers 200 (up to 30 s); the log if it never does."""
    deadline = time.monotonic() + 30
    while "HTTP/1.1 200" not in in_ns(ns, sys.executable, "-c", PROBE).stdout:
        assert relay.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def test_relay_serves_the_host_profile_to_its_network_only(
    wire: tuple[str, str], user_keys: tuple[str, str], daemon: Daemon, isolated: Path
) -> None:
    inside, outside = wire
    daemon.start()
    assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0
    log = (isolated / "relay.log").open("w")
    relay = start_relay(inside, "169.254.169.128/25", log)
    try:
        wait_until_served(inside, relay, isolated / "relay.log")
        assert container_key(inside, isolated / "c") == served(daemon.endpoint)["AccessKeyId"]

        refused = in_ns(outside, sys.executable, "-c", PROBE)
        assert refused.stdout.startswith("HTTP/1.1 403"), refused.stdout + refused.stderr

        # `vaultd switch` on the host changes what containers see.
        assert run_vaultd("switch", "identity").returncode == 0
        want = served(daemon.endpoint)["AccessKeyId"]
        deadline = time.monotonic() + 30
        while container_key(inside, isolated / "c") != want:
            assert time.monotonic() < deadline
            time.sleep(0.3)
    finally:
        relay.terminate()
        assert relay.wait(15) == 0
        log.close()
    text = (isolated / "relay.log").read_text()
    assert "Traceback" not in text
    assert want not in text


def test_relay_refuses_its_networks_gateway_which_is_the_host(
    wire: tuple[str, str], user_keys: tuple[str, str], daemon: Daemon, isolated: Path
) -> None:
    # As on a docker bridge: the "outside" end is the gateway, i.e. the host, where any
    # user's process reaches 169.254.169.254 from. Its address is inside --allow-cidr.
    inside, outside = wire
    sh("ip", "netns", "exec", inside, "ip", "route", "add", "default", "via", "169.254.169.100")
    daemon.start()
    assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0
    with (isolated / "relay.log").open("w") as log:
        relay = start_relay(inside, "169.254.169.0/24", log)
        try:
            wait_until_served(inside, relay, isolated / "relay.log")
            refused = in_ns(outside, sys.executable, "-c", PROBE)
            assert refused.stdout.startswith("HTTP/1.1 403"), refused.stdout + refused.stderr
        finally:
            relay.terminate()
            assert relay.wait(15) == 0
    text = (isolated / "relay.log").read_text()
    assert "refusing the network's gateways (the host): 169.254.169.100" in text
    assert "is the network's gateway" in text
