"""Turning a profile name into a plan of STS calls. Pure: no keyring, no network.

A chain is read from the target profile down its `source_profile` links to the root, the
profile whose long-lived keys are in the keystore. The plan is then:

1. GetSessionToken with the MFA device when the chain names one (the session is cached, so
   later role calls and daemon restarts need no code); without MFA, a plain GetSessionToken
   only when the target has no role, so that IMDS never hands out long-lived keys;
2. AssumeRole for each `role_arn` from the root upwards, each with the previous credentials.

aws-vault's exception, kept here: AWS treats AssumeRole from session credentials as role
chaining, capped at one hour. When the first role asks for more (`duration_seconds` > 3600)
and the chain has an MFA device, GetSessionToken is skipped and that role is assumed from the
long-lived keys with the MFA code itself; its credentials are then what gets cached.

A root may instead sign in through the AWS CLI: IAM Identity Center (`sso_session` or the
legacy `sso_start_url`, with `sso_account_id`/`sso_role_name`) or `aws login`
(`login_session`). Its credentials are already temporary; roles are assumed on top as usual.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from vaultd.core import rules
from vaultd.core.config import Profile, get_profile
from vaultd.errors import ConfigError
from vaultd.untrusted import option_words

DEFAULT_ROLE_DURATION = 3600
DEFAULT_REGION = "us-east-1"
ROLE_CHAINING_MAX = 3600


@dataclass(frozen=True)
class RoleStep:
    profile: str
    role_arn: str
    session_name: str
    duration: int
    external_id: str | None
    # Set when this role is assumed with the MFA code directly (no session before it).
    mfa_serial: str | None = None


@dataclass(frozen=True)
class SigninRoot:
    """A root whose credentials come from a sign-in the AWS CLI keeps in its own cache.

    `kind` is "sso" (IAM Identity Center) or "login" (`aws login`); `session` is the
    sso-session name (None for the legacy form) or the login_session ARN.
    """

    kind: Literal["sso", "login"]
    profile: str
    session: str | None

    @property
    def label(self) -> str:
        """Where the credentials come from, as `vaultd list` and `status` say it."""
        if self.kind == "login":
            return "aws login"
        return f"IAM Identity Center {self.session or self.profile}"

    @property
    def command(self) -> str:
        """The AWS CLI command that signs the person in again (AWS CLI v2 syntax)."""
        if self.kind == "login":
            return f"aws login {option_words('--profile', self.profile)}"
        if self.session is not None:
            return f"aws sso login {option_words('--sso-session', self.session)}"
        return f"aws sso login {option_words('--profile', self.profile)}"

    @property
    def no_keys(self) -> str:
        """Why `vaultd add` and `vaultd rotate` do not apply to this root."""
        return (
            f"profile {self.profile!r} signs in through {self.label} (`{self.command}`): "
            "it has no access keys for vaultd to store or rotate"
        )


def signin_root(profile: Profile) -> SigninRoot | None:
    """The sign-in a root profile uses, by the keys botocore's providers look for.

    A profile with both sso_* keys and login_session is IAM Identity Center, as for botocore:
    `ProfileProviderBuilder.providers` in botocore/credentials.py lists `SSOProvider` before
    `LoginProvider`, and the first provider that loads wins.
    """
    if profile.sso_account_id or profile.sso_role_name:
        return SigninRoot("sso", profile.name, profile.sso_session)
    if profile.login_session:
        return SigninRoot("login", profile.name, profile.login_session)
    return None


@dataclass(frozen=True)
class Plan:
    target: str
    root: str
    # GetSessionToken first? With a serial it is MFA'd and cached in the keystore.
    session: bool
    mfa_serial: str | None
    roles: tuple[RoleStep, ...]
    # Where STS is called and what IMDS's placement/region answers: the profile chain's
    # region, else the daemon's AWS_REGION, else us-east-1.
    region: str
    role_name: str
    # Where codes can come from without a person: a command, or a YubiKey through ykman.
    mfa_process: str | None = None
    mfa_ykman: bool | None = None
    # The root's keys come from this command instead of the keystore.
    credential_process: str | None = None
    # The region the profile chain's config names, if any: all that `vaultd exec` and
    # `export` may hand on, since anything else would be a region the user never gave.
    config_region: str | None = None
    # The root signs in through the AWS CLI (IAM Identity Center, `aws login`) instead.
    signin: SigninRoot | None = None
    # The role (index in `roles`) a code goes with when the root's credentials turn out to
    # be temporary, so that no MFA session can be made: the first whose profile names the
    # device (`mfa_serial`), as botocore sends a profile's own mfa_serial with its
    # AssumeRole; the first role when only the root names it.
    mfa_role: int = 0

    @property
    def role_arn(self) -> str | None:
        return self.roles[-1].role_arn if self.roles else None


def describe_source(plan: Plan) -> str:
    """What hands out the plan's final credentials, for status and errors
    (`AssumeRole of arn:... for master`, `credential_process for cp`)."""
    if plan.roles:
        return f"AssumeRole of {plan.roles[-1].role_arn} for {plan.target}"
    if plan.credential_process:
        return f"credential_process for {plan.root}"
    if plan.signin is not None:
        return f"{plan.signin.label} for {plan.root}"
    return f"GetSessionToken for {plan.root}"


def default_session_name(user: str | None = None) -> str:
    """`vaultd-<login>`, cut down to what STS accepts for RoleSessionName."""
    if user is None:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "user"
    cleaned = rules.name_chars(user)[:57]
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


def built_on(profiles: Mapping[str, Profile], root: str) -> list[str]:
    """The sorted names of the profiles whose chain ends at `root`. A profile that cannot
    be resolved (a wrong value, a loop) is left out: it has no credentials built on
    anything, and one broken profile must not stop work on the others."""
    found = []
    for name in profiles:
        try:
            if chain_of(profiles, name)[-1].name == root:
                found.append(name)
        except ConfigError:
            continue
    return sorted(found)


def plan(
    profiles: Mapping[str, Profile],
    name: str,
    *,
    env_region: str | None = None,
    user: str | None = None,
) -> Plan:
    chain = chain_of(profiles, name)
    named = {p.name: p for p in chain}
    root = chain[-1]
    if root.role_arn and root.source_profile is None:
        raise ConfigError(
            f"profile {root.name!r}: role_arn needs a source_profile to assume it from"
        )
    # The device that authenticates the session: the root's, else the first one named on
    # the way down (a role that demands MFA from a user profile that does not declare it).
    serial = root.mfa_serial or next((p.mfa_serial for p in chain if p.mfa_serial), None)
    roles = [
        RoleStep(
            profile=p.name,
            role_arn=p.role_arn,
            session_name=p.role_session_name or default_session_name(user),
            duration=p.duration_seconds or DEFAULT_ROLE_DURATION,
            external_id=p.external_id,
        )
        for p in reversed(chain)
        if p.role_arn is not None
    ]
    direct_mfa = serial is not None and bool(roles) and roles[0].duration > ROLE_CHAINING_MAX
    if direct_mfa:
        roles[0] = replace(roles[0], mfa_serial=serial)
    signin = signin_root(root)
    # IAM Identity Center hands out a role's credentials, so the first role is assumed from
    # another role too: role chaining, at most one hour (STS AssumeRole, DurationSeconds).
    chained = roles if signin is not None and signin.kind == "sso" else roles[1:]
    for step in chained:
        if step.duration > ROLE_CHAINING_MAX:
            raise ConfigError(
                f"profile {step.profile!r}: duration_seconds {step.duration} is over one hour, "
                "which AWS refuses for a role assumed from another role"
                + (" (IAM Identity Center's credentials are a role's)" if step is roles[0] else "")
            )
    configured = next((p.region for p in chain if p.region), None)
    region = configured or env_region or DEFAULT_REGION
    return Plan(
        target=name,
        root=root.name,
        session=(serial is not None and not direct_mfa) or not roles,
        mfa_serial=serial,
        roles=tuple(roles),
        region=region,
        config_region=configured,
        role_name=chain[0].role_name,
        mfa_process=next((p.mfa_process for p in chain if p.mfa_process), None),
        mfa_ykman=next((p.mfa_ykman for p in chain if p.mfa_ykman is not None), None),
        credential_process=root.credential_process,
        signin=signin,
        mfa_role=next(
            (i for i, s in enumerate(roles) if serial and named[s.profile].mfa_serial == serial),
            0,
        ),
    )
