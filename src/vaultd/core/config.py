"""Reading ~/.aws/config (or AWS_CONFIG_FILE) into typed profiles.

Only the keys botocore and aws-vault give meaning to are read; anything else is ignored, as
both tools do. `[default]` is a profile like any other: nothing is silently inherited from it.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from vaultd.errors import ConfigError, UnknownProfile

ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
MFA_SERIAL = re.compile(r"^(arn:aws[\w-]*:iam::\d{12}:(mfa|u2f)/[\w+=,.@/-]+|GA[A-Z0-9]{10,})$")
SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")
KNOWN_KEYS = (
    "source_profile",
    "role_arn",
    "mfa_serial",
    "external_id",
    "role_session_name",
    "duration_seconds",
    "region",
    "sts_regional_endpoints",
    "mfa_process",
    "mfa_ykman",
    "credential_process",
)


class Profile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    source_profile: str | None = None
    role_arn: str | None = None
    mfa_serial: str | None = None
    external_id: str | None = None
    role_session_name: str | None = None
    duration_seconds: int | None = None
    region: str | None = None
    sts_regional_endpoints: str | None = None
    mfa_process: str | None = None
    mfa_ykman: bool | None = None
    credential_process: str | None = None

    @field_validator("role_arn")
    @classmethod
    def _role_arn(cls, value: str | None) -> str | None:
        if value is not None and not ROLE_ARN.match(value):
            raise ValueError("is not a role ARN (arn:aws:iam::123456789012:role/Name)")
        return value

    @field_validator("mfa_serial")
    @classmethod
    def _mfa_serial(cls, value: str | None) -> str | None:
        if value is not None and not MFA_SERIAL.match(value):
            raise ValueError("is not an MFA device ARN (arn:aws:iam::123456789012:mfa/name)")
        return value

    @field_validator("role_session_name")
    @classmethod
    def _session_name(cls, value: str | None) -> str | None:
        if value is not None and not SESSION_NAME.match(value):
            raise ValueError("must be 2-64 characters of letters, digits and +=,.@_-")
        return value

    @field_validator("duration_seconds")
    @classmethod
    def _duration(cls, value: int | None) -> int | None:
        # STS's own bounds for AssumeRole; the role's MaxSessionDuration may be lower.
        if value is not None and not 900 <= value <= 43200:
            raise ValueError("must be between 900 and 43200 seconds")
        return value

    @field_validator("sts_regional_endpoints")
    @classmethod
    def _endpoints(cls, value: str | None) -> str | None:
        if value is not None and value not in ("legacy", "regional"):
            raise ValueError("must be 'legacy' or 'regional'")
        return value

    @property
    def role_name(self) -> str:
        """What IMDS lists as the instance's role: the role's name, or the profile's."""
        if self.role_arn:
            return self.role_arn.rsplit("/", 1)[-1]
        return self.name


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("AWS_CONFIG_FILE"):
        return Path(env["AWS_CONFIG_FILE"]).expanduser()
    return Path(env.get("HOME", "~")).expanduser() / ".aws" / "config"


def _section_profile(section: str) -> str | None:
    if section == "default":
        return "default"
    kind, _, rest = section.partition(" ")
    if kind == "profile" and rest.strip():
        return rest.strip()
    return None  # sso-session, services and anything else


def _describe(exc: ValidationError, name: str) -> str:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "?"
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "int_parsing":
        message = "must be a whole number of seconds"
    elif first["type"] == "bool_parsing":
        message = "must be true or false"
    return f"profile {name!r}: {key} {message}"


def parse_profiles(text: str, source: str = "config") -> dict[str, Profile]:
    parser = configparser.RawConfigParser(strict=False, default_section="\0none")
    parser.optionxform = str.lower  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text, source=source)
    except configparser.Error as exc:
        detail = str(exc).splitlines()[0]
        raise ConfigError(f"{source} is not valid INI: {detail}") from None
    profiles: dict[str, Profile] = {}
    for section in parser.sections():
        name = _section_profile(section)
        if name is None:
            continue
        values = {k: v.strip() for k, v in parser.items(section) if k in KNOWN_KEYS and v.strip()}
        try:
            profiles[name] = Profile(name=name, **values)  # type: ignore[arg-type]
        except ValidationError as exc:
            raise ConfigError(f"{source}: {_describe(exc, name)}") from None
    return profiles


def load_profiles(path: Path | None = None) -> dict[str, Profile]:
    path = config_path() if path is None else path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    return parse_profiles(text, str(path))


def get_profile(profiles: Mapping[str, Profile], name: str, path: Path | None = None) -> Profile:
    try:
        return profiles[name]
    except KeyError:
        where = path or config_path()
        known = ", ".join(sorted(profiles)) or "none"
        raise UnknownProfile(f"no profile {name!r} in {where} (profiles: {known})") from None
