"""`vaultd relay` without docker: a "container" network namespace holding 169.254.169.254
(the relay and a stock boto3), an "outside" one on the same wire, and the host's daemon
reached over its Unix socket. Another local user is uid 65534 (setpriv, the system python)."""

from __future__ import annotations

import contextlib
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

from tests.e2e.harness import Daemon, linked_namespaces, run_vaultd, served, sh, vaultd_env
from tests.e2e.test_clients import BOTO3_CREDS

pytestmark = [
    pytest.mark.skipif(
        not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("ip") is None,
        reason="network namespaces need Linux, root and iproute2 (CI runs as root)",
    ),
]
# One GET for the role name, to HOST PORT (argv; 169.254.169.254 80 without); prints the answer.
PROBE = (
    "import socket,sys\n"
    "to=(sys.argv[1],int(sys.argv[2])) if len(sys.argv)>2 else ('169.254.169.254',80)\n"
    "s=socket.create_connection(to,timeout=5)\n"
    "s.sendall(b'GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\\r\\n'"
    "b'Host: 169.254.169.254\\r\\nConnection: close\\r\\n\\r\\n')\n"
    "print(s.recv(4096).decode(errors='replace'))\n"
)
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")
AS_NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(SYSTEM_PYTHON))


@pytest.fixture
def wire() -> Iterator[tuple[str, str]]:
    with linked_namespaces("169.254.169.254/24", "169.254.169.100/24") as pair:
        yield pair


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


def start_relay(ns: str, cidr: str, log: IO[str], *args: str) -> subprocess.Popen[str]:
    """`vaultd relay` in the namespace `ns`, answering `cidr`, its output in `log`."""
    relay = [sys.executable, "-m", "vaultd", "relay", "--allow-cidr", cidr, "--interval", "0.3"]
    relay += args
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, *relay],
        env=vaultd_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until_served(ns: str, relay: subprocess.Popen[str], log: Path, *to: str) -> None:
    """Probe from `ns` until the relay answers 200 (up to 30 s); the log if it never does.
    `to`: the relay's host and port, when not 169.254.169.254:80."""
    deadline = time.monotonic() + 30
    while "HTTP/1.1 200" not in in_ns(ns, sys.executable, "-c", PROBE, *to).stdout:
        assert relay.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


@contextlib.contextmanager
def serving_relay(
    ns: str, cidr: str, log: Path, *args: str, to: tuple[str, ...] = ()
) -> Iterator[subprocess.Popen[str]]:
    """`start_relay`, once it serves from `ns` (`wait_until_served`, at `to`); afterwards it
    is stopped and must have exited 0."""
    with log.open("w") as out:
        relay = start_relay(ns, cidr, out, *args)
        try:
            wait_until_served(ns, relay, log, *to)
            yield relay
        finally:
            relay.terminate()
            assert relay.wait(15) == 0


def test_relay_serves_the_host_profile_to_its_network_only(
    wire: tuple[str, str], user_keys: tuple[str, str], daemon: Daemon, isolated: Path
) -> None:
    inside, outside = wire
    daemon.start()
    assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0
    with serving_relay(inside, "169.254.169.128/25", isolated / "relay.log"):
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
    with serving_relay(inside, "169.254.169.0/24", isolated / "relay.log"):
        refused = in_ns(outside, sys.executable, "-c", PROBE)
        assert refused.stdout.startswith("HTTP/1.1 403"), refused.stdout + refused.stderr
    text = (isolated / "relay.log").read_text()
    assert "refusing the network's gateways (the host): 169.254.169.100" in text
    assert "is the network's gateway" in text


@pytest.fixture
def lone() -> Iterator[str]:
    """A network namespace of its own with only `lo`: a machine whose listener ports are free."""
    name = f"vd-l-{uuid.uuid4().hex[:6]}"
    try:
        sh("ip", "netns", "add", name)
        sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@pytest.mark.skipif(SYSTEM_PYTHON is None, reason="acting as uid 65534 needs /usr/bin/python3")
def test_relay_off_its_container_serves_local_peers_of_its_own_uid_only(
    lone: str, user_keys: tuple[str, str], daemon: Daemon, isolated: Path
) -> None:
    # The relay run on a machine with other users (the host), as the finding had it: its
    # allowed network is elsewhere, and loopback is open to every local user.
    daemon.start()
    assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0
    to = ("127.0.0.1", "9300")
    log = isolated / "relay.log"
    # Served once the owner's probe is: then another uid's.
    with serving_relay(lone, "10.99.0.0/24", log, "--listen", "127.0.0.1:9300", to=to):
        other = in_ns(lone, *AS_NOBODY, "-c", PROBE, *to)
        assert other.stdout.startswith("HTTP/1.1 403"), other.stdout + other.stderr
        assert "connection owned by uid 65534" in other.stdout
    text = (isolated / "relay.log").read_text()
    assert "owner check: netlink sock_diag" in text or "owner check: /proc" in text, text
    assert "uid 65534" in text and "Traceback" not in text


@pytest.mark.skipif(SYSTEM_PYTHON is None, reason="acting as uid 65534 needs /usr/bin/python3")
def test_relay_serves_its_network_and_holds_its_own_machine_to_the_owner_rule(
    wire: tuple[str, str], user_keys: tuple[str, str], daemon: Daemon, isolated: Path
) -> None:
    # The whole wire is allowed and names no gateway: the "outside" end is another container,
    # with no socket on the relay's machine, served by its address. On the relay's own
    # machine ("inside"), the owner's process is served and another uid's is not.
    inside, outside = wire
    daemon.start()
    assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0
    with serving_relay(inside, "169.254.169.0/24", isolated / "relay.log"):
        container = in_ns(outside, sys.executable, "-c", PROBE)
        assert container.stdout.startswith("HTTP/1.1 200"), container.stdout + container.stderr
        other = in_ns(inside, *AS_NOBODY, "-c", PROBE)
        assert other.stdout.startswith("HTTP/1.1 403"), other.stdout + other.stderr
        assert "connection owned by uid 65534" in other.stdout
    assert "Traceback" not in (isolated / "relay.log").read_text()
