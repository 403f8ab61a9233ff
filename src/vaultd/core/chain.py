"""What answers an SDK's credential chain before vaultd does, in a given environment.

Every SDK walks a chain of credential providers and takes the first that answers. vaultd
answers two links of it: the container provider (`vaultd exec`'s child) and the instance
metadata provider (IMDS). Whatever sits earlier in the chain and has something to say wins,
and the SDK never asks vaultd. The order is botocore's own (`create_credential_resolver`:
env, assume-role, assume-role-with-web-identity, sso, shared-credentials-file, login,
custom-process, config-file, ec2-credentials-file, boto-config, container-role, iam-role);
the JavaScript, Go and Java SDKs read the same variables and files in the same spirit.

`ahead_of` is pure: it reads the environment and the shared files as botocore loaded them
(`SharedFiles`, read once by `read_shared_files`). `vaultd exec` and `vaultd doctor` both
ask it; neither keeps its own list.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.configloader
import botocore.exceptions

from vaultd.core.config import present
from vaultd.core.config import unreadable as config_unreadable
from vaultd.errors import ConfigError
from vaultd.untrusted import profile_words

CONTAINER = "container-role"
IMDS = "iam-role"
ORDER = (
    "env",
    "assume-role",
    "assume-role-with-web-identity",
    "sso",
    "shared-credentials-file",
    "login",
    "custom-process",
    "config-file",
    "ec2-credentials-file",
    "boto-config",
    CONTAINER,
    IMDS,
)
# Profile keys that make a profile answer by itself, per provider (botocore's keys).
PROFILE_KEYS = {
    "assume-role": ("role_arn",),
    "assume-role-with-web-identity": ("web_identity_token_file",),
    "sso": ("sso_session", "sso_start_url"),
    "login": ("login_session",),
    "custom-process": ("credential_process",),
    "config-file": ("aws_access_key_id",),
}
ENV_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
CONTAINER_VARIABLES = (
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)


@dataclass(frozen=True)
class SharedFiles:
    """The shared config and credentials files as botocore reads them: profile -> keys.
    `unreadable` holds a one-line reason when botocore refuses one of them (every SDK call
    fails); `unopened` one when a file is there but cannot be read as one (`config.present`),
    which botocore reads as empty: nothing in it answers, and no profile of it is found."""

    config_path: str
    credentials_path: str
    config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    credentials: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    unreadable: str | None = None
    unopened: str | None = None


@dataclass(frozen=True)
class Ahead:
    """One thing that answers before vaultd: which provider, what it found, and the fix."""

    provider: str
    found: str
    fix: str


def profile_in_use(env: Mapping[str, str]) -> str:
    """The profile an SDK uses with no --profile: botocore reads AWS_DEFAULT_PROFILE first,
    then AWS_PROFILE, else `default`."""
    return env.get("AWS_DEFAULT_PROFILE") or env.get("AWS_PROFILE") or "default"


def _profile_variable(env: Mapping[str, str]) -> str | None:
    """The variable that chose the profile in use, if one did."""
    for name in ("AWS_DEFAULT_PROFILE", "AWS_PROFILE"):
        if env.get(name):
            return name
    return None


def _section(profile: str) -> str:
    return "[default]" if profile == "default" else f"[profile {profile}]"


def _env(env: Mapping[str, str], files: SharedFiles) -> list[Ahead]:
    present = [k for k in ENV_KEYS if env.get(k)]
    if not env.get("AWS_ACCESS_KEY_ID"):
        return []
    return [Ahead("env", "AWS_ACCESS_KEY_ID is set", f"unset {' '.join(present)}")]


def _from_profile(provider: str) -> Callable[[Mapping[str, str], SharedFiles], list[Ahead]]:
    def check(env: Mapping[str, str], files: SharedFiles) -> list[Ahead]:
        name = profile_in_use(env)
        keys = files.config.get(name, {})
        found = [k for k in PROFILE_KEYS[provider] if keys.get(k)]
        if not found:
            return []
        where = f"{_section(name)} in {files.config_path}"
        variable = _profile_variable(env)
        fix = f"unset {variable}" if variable else f"remove {found[0]} from {where}"
        return [Ahead(provider, f"{where} has {found[0]}", fix)]

    return check


def _credentials_file(env: Mapping[str, str], files: SharedFiles) -> list[Ahead]:
    name = profile_in_use(env)
    if not files.credentials.get(name, {}).get("aws_access_key_id"):
        return []
    where = f"[{name}] in {files.credentials_path}"
    variable = _profile_variable(env)
    add = f"vaultd add {profile_words(name)}"
    fix = (
        f"unset {variable}"
        if variable
        else f"remove the keys from {where} (`{add}` keeps them in the keyring)"
    )
    return [Ahead("shared-credentials-file", f"{where} has aws_access_key_id", fix)]


def _variable(
    provider: str, *names: str
) -> Callable[[Mapping[str, str], SharedFiles], list[Ahead]]:
    def check(env: Mapping[str, str], files: SharedFiles) -> list[Ahead]:
        found = [n for n in names if env.get(n)]
        if not found:
            return []
        return [Ahead(provider, f"{found[0]} is set", f"unset {' '.join(found)}")]

    return check


CHECKS: dict[str, Callable[[Mapping[str, str], SharedFiles], list[Ahead]]] = {
    "env": _env,
    "assume-role": _from_profile("assume-role"),
    "assume-role-with-web-identity": lambda env, files: (
        _variable("assume-role-with-web-identity", "AWS_WEB_IDENTITY_TOKEN_FILE")(env, files)
        or _from_profile("assume-role-with-web-identity")(env, files)
    ),
    "sso": _from_profile("sso"),
    "shared-credentials-file": _credentials_file,
    "login": _from_profile("login"),
    "custom-process": _from_profile("custom-process"),
    "config-file": _from_profile("config-file"),
    "ec2-credentials-file": _variable("ec2-credentials-file", "AWS_CREDENTIAL_FILE"),
    "boto-config": _variable("boto-config", "BOTO_CONFIG"),
    CONTAINER: _variable(CONTAINER, *CONTAINER_VARIABLES),
}


def ahead_of(target: str, env: Mapping[str, str], files: SharedFiles) -> list[Ahead]:
    """Everything in `env` and `files` that answers an SDK's chain before provider
    `target` (CONTAINER or IMDS), in chain order; also what stops the chain outright
    (a profile that does not exist, a file botocore cannot read, IMDS turned off)."""
    out: list[Ahead] = []
    if files.unreadable:
        out.append(Ahead("config", files.unreadable, "fix the file: every SDK call fails"))
    name = profile_in_use(env)
    variable = _profile_variable(env)
    if variable and name not in files.config and name not in files.credentials:
        out.append(
            Ahead(
                "profile",
                f"{variable}={name} names no profile in {files.config_path} or "
                f"{files.credentials_path} (every SDK call fails)",
                f"unset {variable}",
            )
        )
    for provider in ORDER[: ORDER.index(target)]:
        out += CHECKS[provider](env, files)
    if target == IMDS and env.get("AWS_EC2_METADATA_DISABLED", "").strip().lower() == "true":
        out.append(
            Ahead(
                IMDS,
                "AWS_EC2_METADATA_DISABLED=true turns the SDKs' IMDS lookup off",
                "unset AWS_EC2_METADATA_DISABLED",
            )
        )
    return out


def _path(env: Mapping[str, str], variable: str, default: str) -> str:
    return os.path.expanduser(env.get(variable) or str(Path(env.get("HOME", "~")) / default))


def read_shared_files(env: Mapping[str, str]) -> SharedFiles:
    """The shared config and credentials files that `env` points an SDK at, read by
    botocore's loader. Never raises: a file botocore refuses is noted in `unreadable`, and
    one that is there but cannot be read (the daemon's rule, `config.present`) in
    `unopened`."""
    config_path = _path(env, "AWS_CONFIG_FILE", ".aws/config")
    credentials_path = _path(env, "AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials")
    config: dict[str, Any] = {}
    credentials: dict[str, Any] = {}
    unreadable = unopened = None
    try:
        if present(Path(config_path)):
            config = dict(botocore.configloader.load_config(config_path).get("profiles", {}))
    except ConfigError as exc:
        unopened = exc.message
    except botocore.exceptions.ConfigNotFound:
        pass  # removed since `present` looked
    except botocore.exceptions.ConfigParseError as exc:
        unreadable = config_unreadable(config_path, exc).message
    try:
        if present(Path(credentials_path)):
            credentials = dict(botocore.configloader.raw_config_parse(credentials_path))
    except ConfigError as exc:
        unopened = unopened or exc.message
    except botocore.exceptions.ConfigNotFound:
        pass
    except botocore.exceptions.ConfigParseError as exc:
        unreadable = config_unreadable(credentials_path, exc).message
    return SharedFiles(config_path, credentials_path, config, credentials, unreadable, unopened)
