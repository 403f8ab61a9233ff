"""The gateways `vaultd relay` refuses, read from the kernel's routing tables."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vaultd.host import routes

IPV4 = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t01A9FEA9\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t00A9FEA9\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth1\t0000000A\t0102000A\t0003\t0\t0\t0\t000000FF\t0\t0\t0
eth2\t00000000\t0103000A\t0001\t0\t0\t0\t00000000\t0\t0\t0
garbage line
eth3\t00000000\tZZZZZZZZ\t0003\t0\t0\t0\t00000000\t0\t0\t0
"""
# fe80::1 as the default route's next hop; a connected route (next hop zero); a short line.
ZERO = "0" * 32
IPV6 = "\n".join(
    [
        f"{ZERO} 00 {ZERO} 00 fe80{'0' * 27}1 00000400 00000001 00000000 00450003 eth0",
        f"fd00{'0' * 28} 40 {ZERO} 00 {ZERO} 00000100 00000001 00000000 00000001 eth0",
        "fd00 40",
    ]
)


def test_the_gateways_of_both_tables(tmp_path: Path) -> None:
    (tmp_path / "route").write_text(IPV4)
    (tmp_path / "ipv6_route").write_text(IPV6)
    found = routes.gateways(tmp_path / "route", tmp_path / "ipv6_route")
    # 169.254.169.1 (docker's bridge gateway in docker/compose.yaml) and 10.0.2.1; eth2's
    # entry has no RTF_GATEWAY flag, the connected routes have no gateway.
    assert found == {"169.254.169.1", "10.0.2.1", "fe80::1"}


def test_no_tables_no_gateways(tmp_path: Path) -> None:
    assert routes.gateways(tmp_path / "missing", tmp_path / "missing6") == frozenset()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/net/route (Linux)")
def test_this_machines_tables_read_without_error() -> None:
    assert all(isinstance(g, str) for g in routes.gateways())
