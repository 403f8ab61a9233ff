"""The instance-metadata tree and what each path answers. Pure: no sockets, no clock reads.

Follows what a real EC2 instance answers rather than what IMDS mocks do: listings end
without a newline, directories end in `/` and answer with or without it, every dated version serves
the same tree, documents are `text/plain` JSON in IMDS's `"Key" : value` style, and a
missing resource is IMDS's own XHTML 404 page.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from vaultd.core.credentials import Credentials, imds_fields, iso8601

TEXT: Final = "text/plain"
HTML: Final = "text/html"
VERSIONS: Final[tuple[str, ...]] = (
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
    "2011-01-01",
    "2011-05-01",
    "2012-01-12",
    "2014-02-25",
    "2014-11-05",
    "2015-10-20",
    "2016-04-19",
    "2016-06-30",
    "2016-09-02",
    "2018-03-28",
    "2018-08-17",
    "2018-09-24",
    "2019-10-01",
    "2020-10-27",
    "2021-01-03",
    "2021-03-23",
    "2021-07-15",
    "2022-09-24",
    "2023-11-30",
    "2024-04-11",
    "latest",
)
DEFAULT_ACCOUNT: Final = "000000000000"


def error_page(status: int, reason: str) -> bytes:
    """IMDS's own XHTML error page, byte for byte in shape."""
    title = f"{status} - {reason}"
    return (
        '<?xml version="1.0" encoding="iso-8859-1"?>\n'
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"\n'
        '\t"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n'
        " <head>\n"
        f"  <title>{title}</title>\n"
        " </head>\n"
        " <body>\n"
        f"  <h1>{title}</h1>\n"
        " </body>\n"
        "</html>\n"
    ).encode("ascii")


def imds_json(fields: Mapping[str, object]) -> bytes:
    """JSON the way IMDS writes it: two-space indent and a space on both sides of the colon."""
    lines = [f"  {json.dumps(k)} : {json.dumps(v)}" for k, v in fields.items()]
    return ("{\n" + ",\n".join(lines) + "\n}").encode("utf-8")


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = TEXT


NOT_FOUND: Final = Reply(404, error_page(404, "Not Found"), HTML)


def credentials_body(creds: Credentials, account_id: str | None = None) -> bytes:
    """The credentials document; with `account_id`, the "extended" form (spec 2.1)."""
    return imds_json(imds_fields(creds, account_id))


def unavailable_body(message: str, now: float) -> bytes:
    # The shape IMDS uses when the instance's role cannot be assumed: SDKs log the
    # message and move on at once instead of retrying into a timeout.
    return imds_json(
        {"Code": "AssumeRoleUnauthorizedAccess", "Message": message, "LastUpdated": iso8601(now)}
    )


@dataclass(frozen=True)
class Instance:
    """What the fake instance looks like for one active profile."""

    profile: str
    role_name: str
    region: str
    account_id: str = DEFAULT_ACCOUNT
    last_updated: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    def _digest(self) -> bytes:
        return hashlib.sha256(f"{self.profile}\0{self.account_id}".encode()).digest()

    @property
    def instance_id(self) -> str:
        # Stable per profile, so tools that key caches on it behave across restarts.
        return "i-" + self._digest().hex()[:17]

    @property
    def mac(self) -> str:
        raw = bytearray(self._digest()[8:14])
        raw[0] = (raw[0] | 0x02) & 0xFE  # locally administered, unicast
        return ":".join(f"{b:02x}" for b in raw)

    @property
    def availability_zone(self) -> str:
        return self.region + "a"

    @property
    def hostname(self) -> str:
        suffix = "ec2.internal" if self.region == "us-east-1" else f"{self.region}.compute.internal"
        return f"ip-127-0-0-1.{suffix}"

    def identity_document(self) -> bytes:
        return imds_json(
            {
                "accountId": self.account_id,
                "architecture": "x86_64",
                "availabilityZone": self.availability_zone,
                "billingProducts": None,
                "devpayProductCodes": None,
                "marketplaceProductCodes": None,
                "imageId": "ami-00000000000000000",
                "instanceId": self.instance_id,
                "instanceType": "vaultd.local",
                "kernelId": None,
                "pendingTime": self.last_updated or None,
                "privateIp": "127.0.0.1",
                "ramdiskId": None,
                "region": self.region,
                "version": "2017-09-30",
            }
        )

    def iam_info(self) -> bytes:
        profile_id = "AIPA" + self._digest().hex().upper()[:17]
        return imds_json(
            {
                "Code": "Success",
                "LastUpdated": self.last_updated,
                "InstanceProfileArn": (
                    f"arn:aws:iam::{self.account_id}:instance-profile/{self.role_name}"
                ),
                "InstanceProfileId": profile_id,
            }
        )


def _listing(names: Sequence[str]) -> Reply:
    return Reply(200, "\n".join(names).encode("utf-8"))


def normalise(path: str) -> list[str]:
    """Split a request path into segments, collapsing repeated and trailing slashes."""
    return list(filter(None, path.split("/")))


def route(
    segments: list[str],
    instance: Instance | None,
    role_body: bytes | None,
    *,
    extended: bool = False,
    extended_body: bytes | None = None,
) -> Reply:
    """Answer a GET for `segments` (already split by `normalise`).

    `instance` is None when no profile is active: the instance then has no role attached and
    the IAM paths are 404, as on EC2. `role_body` is the prepared credentials document.
    The "extended" credentials path answers 404, as real IMDS does today, unless `extended`
    (clients try it first and fall back on 404).
    """
    if not segments:
        return _listing(VERSIONS)
    if segments[0] not in VERSIONS:
        return NOT_FOUND
    rest = segments[1:]
    if not rest:
        return _listing(["dynamic", "meta-data"])
    head, tail = rest[0], rest[1:]
    if head == "meta-data":
        if (
            extended
            and instance is not None
            and tail[:2] == ["iam", "security-credentials-extended"]
        ):
            return _credentials(tail[2:], instance, extended_body)
        return _meta_data(tail, instance, role_body)
    if head == "dynamic":
        return _dynamic(tail, instance)
    return NOT_FOUND  # user-data: none is set


def _meta_data(path: list[str], inst: Instance | None, role_body: bytes | None) -> Reply:
    if path[:1] == ["iam"]:  # the hot path: no need to build the rest of the tree
        return _iam(path[1:], inst, role_body) if inst is not None else NOT_FOUND
    region = inst.region if inst else "us-east-1"
    fallback = inst or Instance(profile="", role_name="", region=region)
    values: dict[str, str] = {
        "ami-id": "ami-00000000000000000",
        "ami-launch-index": "0",
        "hostname": fallback.hostname,
        "instance-action": "none",
        "instance-id": fallback.instance_id,
        "instance-life-cycle": "on-demand",
        "instance-type": "vaultd.local",
        "local-hostname": fallback.hostname,
        "local-ipv4": "127.0.0.1",
        "mac": fallback.mac,
        "profile": "default-hvm",
        "reservation-id": "r-" + fallback.instance_id[2:],
        "security-groups": "vaultd",
    }
    if not path:
        names = sorted([*values, "placement/", "services/", *(["iam/"] if inst else [])])
        return _listing(names)
    head, tail = path[0], path[1:]
    if head in values and not tail:
        return Reply(200, values[head].encode("utf-8"))
    if head == "placement":
        placement = {
            "availability-zone": fallback.availability_zone,
            "availability-zone-id": region.replace("-", "")[:4] + "-az1",
            "region": region,
        }
        if not tail:
            return _listing(sorted(placement))
        if len(tail) == 1 and tail[0] in placement:
            return Reply(200, placement[tail[0]].encode("utf-8"))
        return NOT_FOUND
    if head == "services":
        services = {"domain": "amazonaws.com", "partition": "aws"}
        if not tail:
            return _listing(sorted(services))
        if len(tail) == 1 and tail[0] in services:
            return Reply(200, services[tail[0]].encode("utf-8"))
        return NOT_FOUND
    return NOT_FOUND


def _iam(path: list[str], inst: Instance, role_body: bytes | None) -> Reply:
    if not path:
        return _listing(["info", "security-credentials/"])
    if path == ["info"]:
        return Reply(200, inst.iam_info())
    if path[0] != "security-credentials":
        return NOT_FOUND  # includes security-credentials-extended: clients fall back on 404
    return _credentials(path[1:], inst, role_body)


def _credentials(path: list[str], inst: Instance, body: bytes | None) -> Reply:
    if not path:
        return Reply(200, inst.role_name.encode("utf-8"))
    if len(path) == 1 and path[0] == inst.role_name and body is not None:
        return Reply(200, body)
    return NOT_FOUND


def _dynamic(path: list[str], inst: Instance | None) -> Reply:
    if not path:
        return _listing(["instance-identity/"])
    if path[0] != "instance-identity":
        return NOT_FOUND
    if len(path) == 1:
        return _listing(["document"])
    if path[1:] == ["document"]:
        fallback = inst or Instance(profile="", role_name="", region="us-east-1")
        return Reply(200, fallback.identity_document())
    return NOT_FOUND
