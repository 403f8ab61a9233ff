"""`credential_process` (botocore's profile key): a command line that prints credentials.

It is run as botocore's ProcessProvider runs it (so as the AWS CLI and boto3 do): split into
words as a POSIX shell splits them (`compat_shell_split`, shlex on POSIX) and run without a
shell, so `$`, `~`, `#` and globs reach the program as written. (The Go and JS SDKs hand it
to `sh -c`; a command that needs a shell names one: `sh -c '... | jq ...'`.)

The output is the Version 1 JSON document of the AWS CLI's "Sourcing credentials with an
external process": AccessKeyId and SecretAccessKey, and for temporary credentials
SessionToken and Expiration (ISO 8601, read as UTC when it names no zone, as every time
vaultd reads). The output is never logged: it is a secret.
"""

from __future__ import annotations

import subprocess

from botocore.compat import compat_shell_split

from vaultd.core.credentials import AccessKeys, Credentials, parse_time
from vaultd.core.mfa import COMMAND_TIMEOUT, Runner, SourceFailed, run_command
from vaultd.secret import Secret
from vaultd.untrusted import json_object

# A temporary set printed without an Expiration is treated as lasting this long.
DEFAULT_LIFETIME = 3600


def command_argv(command: str) -> list[str]:
    """The argv botocore's ProcessProvider runs for the `credential_process` `command`.
    Raises SourceFailed when its quotes do not close, or it names no program."""
    try:
        argv: list[str] = compat_shell_split(command)
    except ValueError as exc:  # shlex: "No closing quotation", "No escaped character"
        raise SourceFailed(f"credential_process is not a command line: {exc}") from None
    if not argv:
        raise SourceFailed("credential_process names no program")
    return argv


def credentials_from_process(
    command: str, issued: float, runner: Runner = subprocess.run
) -> AccessKeys | Credentials:
    """Run a `credential_process` and parse its Version 1 JSON.

    Long-lived keys (no SessionToken) come back as AccessKeys; anything else as Credentials
    issued at `issued` (epoch seconds). Raises SourceFailed with a one-line reason when the
    command fails or prints anything else.
    """
    out = run_command(command_argv(command), "credential_process", COMMAND_TIMEOUT, runner)
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
