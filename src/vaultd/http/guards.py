"""Who may ask the IMDS listener for credentials. Pure checks on addresses and headers.

aws-vault's lesson (#578, #723): check the Host header against DNS rebinding, but accept the
listener's own address too so that `AWS_EC2_METADATA_SERVICE_ENDPOINT` works. A header that
carries a secret (the relay token, an exec token) is compared with `same_secret`, which takes
any header text.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

IMDS_HOSTS = ("169.254.169.254", "[fd00:ec2::254]")
IMDS_ADDRESSES = (
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
)
BROWSER_HEADERS = ("origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest")
# What a proxy adds to a request it forwards (RFC 9110 §7.6.3 Via, RFC 7239 Forwarded, and
# the de facto X-Forwarded-For, X-Forwarded-Host and nginx's usual X-Real-IP): no SDK sends
# them to IMDS itself.
PROXY_HEADERS = ("via", "forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@dataclass(frozen=True)
class Guard:
    allowed_hosts: frozenset[str]
    allowed_networks: tuple[Network, ...] = ()
    # Only a loopback listener can trust a peer of 169.254.169.254 to be this machine:
    # on 0.0.0.0, a LAN neighbour could send from that link-local address.
    listener_loopback: bool = True
    # Refused even inside an allowed network: the relay network's gateways, which are the
    # host, where any user's process can reach the relay from (`host.routes`).
    gateways: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address] = frozenset()

    @classmethod
    def for_listener(
        cls, host: str, port: int, allow_cidrs: Iterable[str] = (), gateways: Iterable[str] = ()
    ) -> Guard:
        hosts: set[str] = set()
        for name in (*IMDS_HOSTS, "localhost", host if ":" not in host else f"[{host}]"):
            hosts.add(f"{name}:{port}")
            if port == 80 or name in IMDS_HOSTS:
                hosts.add(name)
        for name in IMDS_HOSTS:
            hosts.add(f"{name}:80")
        if host in ("0.0.0.0", "::", ""):  # noqa: S104
            hosts.update({f"127.0.0.1:{port}", f"[::1]:{port}"})
        nets = tuple(ipaddress.ip_network(c, strict=False) for c in allow_cidrs)
        bound = _address(host)
        loopback = bound is not None and bound.is_loopback
        refused = frozenset(a for a in (_address(g) for g in gateways) if a is not None)
        return cls(frozenset(h.lower() for h in hosts), nets, loopback, refused)

    @staticmethod
    def is_local(peer: str) -> bool:
        """Loopback, or the metadata address itself: with 169.254.169.254 on `lo` and a
        redirect to our loopback listener, local clients arrive from that address."""
        addr = _address(peer)
        return addr is not None and (addr.is_loopback or addr in IMDS_ADDRESSES)

    def peer_refusal(self, peer: str | None) -> str | None:
        addr = _address(peer) if peer else None
        if addr is None:
            return "unknown peer address"
        if addr in self.gateways:
            return f"peer {addr} is the network's gateway: the host, whose users are not checked"
        if addr.is_loopback or any(addr in net for net in self.allowed_networks):
            return None
        if self.listener_loopback and addr in IMDS_ADDRESSES:
            return None
        return f"peer {addr} is not loopback or an allowed network"

    def host_refusal(self, host: str | None) -> str | None:
        if host is None:
            return None  # HTTP/1.0 clients send none; the peer check still applies
        if host.lower() in self.allowed_hosts:
            return None
        return "Host header is not the metadata address or this listener"

    @staticmethod
    def browser_refusal(headers: Mapping[str, str]) -> str | None:
        for name in BROWSER_HEADERS:
            if name in headers:
                return f"browser requests are refused ({name} header)"
        return None

    @staticmethod
    def proxy_refusal(headers: Mapping[str, str]) -> str | None:
        """A request a proxy says it forwarded is refused: the owner check sees the proxy's
        socket, so a proxy the owner runs would hand the owner's credentials to every user
        who can reach it. Only a proxy that adds one of PROXY_HEADERS can be told apart:
        many add none by default, and a tunnel (CONNECT, SOCKS) never does (README,
        Security)."""
        for name in PROXY_HEADERS:
            if name in headers:
                return (
                    f"requests forwarded by a proxy are refused ({name} header): "
                    "let SDKs reach IMDS directly (NO_PROXY=127.0.0.1,169.254.169.254)"
                )
        return None


def same_secret(given: str | None, secret: str) -> bool:
    """Whether header text `given` (None when the header is absent) is `secret`, compared in
    constant time for a given length. Never raises: the parser decodes header bytes that
    are not UTF-8 as lone surrogates (surrogateescape), which a plain `.encode()` refuses;
    `surrogatepass` encodes every str, one-to-one, and such bytes never occur in a secret's
    UTF-8, so a value that is not UTF-8 is simply not the secret."""
    return hmac.compare_digest(
        (given or "").encode("utf-8", "surrogatepass"), secret.encode("utf-8", "surrogatepass")
    )
