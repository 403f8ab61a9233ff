"""`credential_process` (botocore's profile key): a shell command that prints credentials.

The output is the Version 1 JSON document of the AWS CLI's "Sourcing credentials with an
external process": AccessKeyId and SecretAccessKey, and for temporary credentials
SessionToken and Expiration (ISO 8601, read as UTC when it names no zone, as every time
vaultd reads). The output is never logged: it is a secret.
"""

from __future__ import annotations

import subprocess

from vaultd.core.credentials import AccessKeys, Credentials, parse_time
from vaultd.core.mfa import COMMAND_TIMEOUT, Runner, SourceFailed, run_command
from vaultd.secret import Secret
from vaultd.untrusted import json_object

# A temporary set printed without an Expiration is treated as lasting this long.
DEFAULT_LIFETIME = 3600


def credentials_from_process(
    command: str, issued: float, runner: Runner = subprocess.run
) -> AccessKeys | Credentials:
    """Run a `credential_process` and parse its Version 1 JSON.

    Long-lived keys (no SessionToken) come back as AccessKeys; anything else as Credentials
    issued at `issued` (epoch seconds). Raises SourceFailed with a one-line reason when the
    command fails or prints anything else.
    """
    out = run_command(["/bin/sh", "-c", command], "credential_process", COMMAND_TIMEOUT, runner)
    malformed = SourceFailed(
        "credential_process did not print Version 1 JSON with AccessKeyId and SecretAccessKey"
    )
    data = json_object(out)
    if data is None or data.get("Version") != 1:
        raise malformed
    if not data.get("AccessKeyId") or not data.get("SecretAccessKey"):
        raise malformed
    key_id = str(data["AccessKeyId"])
    secret = Secret(str(data["SecretAccessKey"]))
    token = data.get("SessionToken")
    if not token:
        return AccessKeys(key_id, secret)
    expiration = data.get("Expiration")
    try:
        expires = parse_time(expiration) if expiration else issued + DEFAULT_LIFETIME
    except ValueError:
        raise SourceFailed(
            "credential_process printed an Expiration that is not ISO 8601"
        ) from None
    return Credentials(key_id, secret, Secret(str(token)), expires, issued)
