"""The gateways of this network namespace's routes, from the kernel's routing tables.

`vaultd relay` answers a container network (`--allow-cidr`), and on a docker or podman
bridge the network's gateway address is the host itself: a process of any user on the host
that reaches 169.254.169.254 over the bridge arrives from there. The relay cannot look up
that process's owner (its socket is in the host's namespace), so it refuses the gateways.

Linux lists routes in /proc/net/route (IPv4: addresses as little-endian hex words) and
/proc/net/ipv6_route (IPv6: big-endian hex, the next hop in the fifth field); elsewhere, or
when they cannot be read, there are none to refuse.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path
from typing import Final

IPV4_ROUTES: Final = Path("/proc/net/route")
IPV6_ROUTES: Final = Path("/proc/net/ipv6_route")
RTF_GATEWAY: Final = 0x2  # linux/route.h: the route goes through a gateway


def ipv4_gateways(lines: Iterable[str]) -> set[str]:
    """Gateways in /proc/net/route lines (`Iface Destination Gateway Flags ...`, header
    first): e.g. `0101FEA9` is 169.254.1.1. Malformed lines are skipped."""
    found: set[str] = set()
    for line in lines:
        fields = line.split()
        if len(fields) < 4 or fields[0] == "Iface":
            continue
        try:
            gateway, flags = bytes.fromhex(fields[2]), int(fields[3], 16)
        except ValueError:
            continue
        if flags & RTF_GATEWAY and len(gateway) == 4 and any(gateway):
            found.add(str(ipaddress.IPv4Address(gateway[::-1])))
    return found


def ipv6_gateways(lines: Iterable[str]) -> set[str]:
    """Next hops in /proc/net/ipv6_route lines (destination, its prefix, source, its
    prefix, next hop, ...): a next hop of all zeros is a directly connected route."""
    found: set[str] = set()
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        try:
            hop = bytes.fromhex(fields[4])
        except ValueError:
            continue
        if len(hop) == 16 and any(hop):
            found.add(str(ipaddress.IPv6Address(hop)))
    return found


def gateways(ipv4: Path = IPV4_ROUTES, ipv6: Path = IPV6_ROUTES) -> frozenset[str]:
    """Every gateway this namespace routes through (strings as `ipaddress` writes them)."""
    found: set[str] = set()
    for path, parse in ((ipv4, ipv4_gateways), (ipv6, ipv6_gateways)):
        try:
            with path.open(encoding="ascii", errors="replace") as fh:
                found |= parse(fh)
        except OSError:
            continue
    return frozenset(found)
