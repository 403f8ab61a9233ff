"""The environment `vaultd exec` gives its child and the region `vaultd export` prints.

The rule: the child ends up with the exec'd profile's credentials under each SDK's own
credential chain, whatever the caller's environment holds. So every variable that makes a
chain answer earlier, or name another profile, is removed (`SHADOWING`); what vaultd hands
over is added; and what vaultd cannot remove (a default profile in the shared files that
answers by itself) is named as a warning before the command runs (`chain.ahead_of`).

The region follows botocore's precedence, environment over config: a region the caller
already set is left alone, a region from the profile's config is added only when the caller
set none, and no region is ever invented.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from vaultd.core import chain

REGION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")
# Variables that make an SDK's chain answer before the credentials vaultd hands over, or
# point it at another profile or role (botocore, the JavaScript, Go and Java SDKs).
SHADOWING = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CREDENTIAL_FILE",
    "BOTO_CONFIG",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
)


# Hosts the SDKs fetch container credentials from over plain http (botocore's
# ContainerMetadataFetcher, the JavaScript SDK's fromHttp): loopback, and the ECS/EKS agents.
CONTAINER_HOSTS = ("localhost", "169.254.170.2", "169.254.170.23", "fd00:ec2::23")


def container_uri_accepted(url: str) -> bool:
    """Whether the SDKs accept `url` as AWS_CONTAINER_CREDENTIALS_FULL_URI."""
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    if parsed.scheme == "https" or host in CONTAINER_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Child:
    """The child's whole environment, and one line per thing vaultd cannot override."""

    env: dict[str, str]
    warnings: tuple[str, ...]


def region_variables(caller: Mapping[str, str], configured: str | None) -> dict[str, str]:
    """AWS_REGION and AWS_DEFAULT_REGION to add for a profile whose config names
    `configured`: none when the caller set either (environment over config, as botocore
    reads them) or when the config names no region."""
    if configured is None or any(caller.get(name) for name in REGION_VARIABLES):
        return {}
    return dict.fromkeys(REGION_VARIABLES, configured)


def child_environment(
    caller: Mapping[str, str],
    profile: str,
    handed: Mapping[str, str],
    region: str | None,
    files: chain.SharedFiles,
) -> Child:
    """The environment for `vaultd exec PROFILE`'s child.

    `caller` is vaultd's own environment; `handed` the variables carrying the credentials
    (the container-credentials URI and token, or plain keys with `--env`); `region` the
    profile's configured region or None; `files` the shared files the child will read.
    """
    env = {k: v for k, v in caller.items() if k not in SHADOWING}
    env.update(handed)
    env.update(region_variables(caller, region))
    env["VAULTD_PROFILE"] = profile
    plain = "AWS_ACCESS_KEY_ID" in handed  # `--env`: first in every chain
    hint = "" if plain else ", or run `vaultd exec --env`"
    warnings = [
        f"{ahead.found}, which SDKs use before the credentials of {profile!r}: {ahead.fix}{hint}"
        for ahead in chain.ahead_of("env" if plain else chain.CONTAINER, env, files)
    ]
    uri = handed.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
    if uri is not None and not container_uri_accepted(uri):
        warnings.append(
            f"SDKs refuse {uri} as AWS_CONTAINER_CREDENTIALS_FULL_URI (not a loopback "
            "address): let vaultd listen on one, or run `vaultd exec --env`"
        )
    return Child(env, tuple(warnings))
