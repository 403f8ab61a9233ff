"""The container files say what the README says: the network, the relay's address and the
socket mount. (No docker engine runs here, so they are checked by reading them.)"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import yaml

from vaultd.cli.parser import build_parser

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def test_compose_network_relay_and_mount() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    subnet = ipaddress.ip_network(compose["networks"]["imds"]["ipam"]["config"][0]["subnet"])
    assert subnet == ipaddress.ip_network("169.254.169.0/24")
    relay = compose["services"]["relay"]
    address = ipaddress.ip_address(relay["networks"]["imds"]["ipv4_address"])
    assert str(address) == "169.254.169.254" and address in subnet
    args = build_parser().parse_args(relay["command"])
    assert args.func.__name__ == "cmd_relay"
    assert args.listen == "169.254.169.254:80"
    assert [ipaddress.ip_network(c) for c in args.allow_cidr] == [subnet]
    mount = relay["volumes"][0]
    assert mount["target"] == str(Path(args.control_socket).parent)
    assert mount["source"].endswith("/vaultd") and mount["read_only"] is True
    assert relay["cap_drop"] == ["ALL"]
    assert relay["sysctls"]["net.ipv4.ip_unprivileged_port_start"] == "0"
    app = compose["services"]["app"]
    assert app["networks"] == ["imds"]
    assert "environment" not in app  # no configuration at all


def test_dockerfile_runs_the_relay_as_a_non_root_user() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    final = text.split("\nFROM ")[-1]  # the image that ships
    assert "USER vaultd" in final
    assert "pip wheel" not in final and "build-essential" not in final
    assert '"relay"' in final and "169.254.169.0/24" in final
