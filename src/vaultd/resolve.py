"""Turning a profile name into a plan of STS calls. Pure: no keyring, no network.

A chain is read from the target profile down its `source_profile` links to the root, the
profile whose long-lived keys are in the keystore. The plan is then:

1. GetSessionToken with the MFA device when the chain names one (the session is cached, so
   later role calls and daemon restarts need no code); without MFA, a plain GetSessionToken
   only when the target has no role, so that IMDS never hands out long-lived keys;
2. AssumeRole for each `role_arn` from the root upwards, each with the previous credentials.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Mapping
from dataclasses import dataclass

from vaultd.config import Profile, get_profile
from vaultd.errors import ConfigError

DEFAULT_ROLE_DURATION = 3600
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class RoleStep:
    profile: str
    role_arn: str
    session_name: str
    duration: int
    external_id: str | None


@dataclass(frozen=True)
class Plan:
    target: str
    root: str
    # GetSessionToken first? With a serial it is MFA'd and cached in the keystore.
    session: bool
    mfa_serial: str | None
    roles: tuple[RoleStep, ...]
    region: str
    role_name: str

    @property
    def role_arn(self) -> str | None:
        return self.roles[-1].role_arn if self.roles else None


def default_session_name(user: str | None = None) -> str:
    """`vaultd-<login>`, cut down to what STS accepts for RoleSessionName."""
    if user is None:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "user"
    cleaned = re.sub(r"[^\w+=,.@-]", "-", user)[:57]
    return f"vaultd-{cleaned}"


def chain_of(profiles: Mapping[str, Profile], name: str) -> list[Profile]:
    """The target first, then each source profile, ending at the root."""
    chain = [get_profile(profiles, name)]
    seen = [name]
    while (source := chain[-1].source_profile) is not None:
        if source == chain[-1].name:
            break  # botocore reads a self-reference as "my own keys"
        if source in seen:
            loop = " -> ".join([*seen, source])
            raise ConfigError(f"profile {name!r}: source_profile loop: {loop}")
        if source not in profiles:
            raise ConfigError(
                f"profile {chain[-1].name!r}: source_profile {source!r} is not a profile"
            )
        seen.append(source)
        chain.append(profiles[source])
    return chain


def plan(
    profiles: Mapping[str, Profile],
    name: str,
    *,
    env_region: str | None = None,
    user: str | None = None,
) -> Plan:
    chain = chain_of(profiles, name)
    root = chain[-1]
    if root.role_arn and root.source_profile is None:
        raise ConfigError(
            f"profile {root.name!r}: role_arn needs a source_profile to assume it from"
        )
    # The device that authenticates the session: the root's, else the first one named on
    # the way down (a role that demands MFA from a user profile that does not declare it).
    serial = root.mfa_serial or next((p.mfa_serial for p in chain if p.mfa_serial), None)
    roles = tuple(
        RoleStep(
            profile=p.name,
            role_arn=p.role_arn,
            session_name=p.role_session_name or default_session_name(user),
            duration=p.duration_seconds or DEFAULT_ROLE_DURATION,
            external_id=p.external_id,
        )
        for p in reversed(chain)
        if p.role_arn is not None
    )
    region = next((p.region for p in chain if p.region), None) or env_region or DEFAULT_REGION
    return Plan(
        target=name,
        root=root.name,
        session=serial is not None or not roles,
        mfa_serial=serial,
        roles=roles,
        region=region,
        role_name=chain[0].role_name,
    )
