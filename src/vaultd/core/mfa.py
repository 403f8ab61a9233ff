"""Where MFA codes and external credentials come from when no person types them.

- `mfa_process` (aws-vault's profile key): a shell command that prints the code;
- `ykman oath accounts code --single ACCOUNT` for a YubiKey (`mfa_ykman = true`), where
  ACCOUNT is the MFA device's ARN, as aws-vault names it;
- `credential_process` (botocore's key): a shell command that prints credentials as JSON.

Their output is never logged: it is a code or a secret.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from datetime import datetime

from vaultd.core.credentials import AccessKeys, Credentials
from vaultd.errors import VaultdError
from vaultd.secret import Secret

CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")
COMMAND_TIMEOUT = 60.0

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class SourceFailed(VaultdError):
    code = "source_failed"
    http_status = 502


def _run(argv: list[str], what: str, timeout: float, runner: Runner) -> str:
    try:
        done = runner(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise SourceFailed(f"{what}: {argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise SourceFailed(f"{what} did not finish within {timeout:.0f}s") from None
    except OSError as exc:
        raise SourceFailed(f"{what} could not run: {exc.strerror}") from None
    if done.returncode != 0:
        # stderr is the tool's own complaint (e.g. "no YubiKey found"); it carries no code.
        detail = (done.stderr or "").strip().splitlines()
        hint = f": {detail[-1][:200]}" if detail else ""
        raise SourceFailed(f"{what} exited with status {done.returncode}{hint}")
    return str(done.stdout)


def mfa_code_from_process(command: str, runner: Runner = subprocess.run) -> str:
    out = _run(["/bin/sh", "-c", command], "mfa_process", COMMAND_TIMEOUT, runner)
    return _one_code(out, "mfa_process")


def mfa_code_from_ykman(account: str, runner: Runner = subprocess.run) -> str:
    argv = ["ykman", "oath", "accounts", "code", "--single", account]
    return _one_code(_run(argv, "ykman", COMMAND_TIMEOUT, runner), "ykman")


def _one_code(output: str, what: str) -> str:
    found = CODE.findall(output)
    if len(found) != 1:
        raise SourceFailed(f"{what} printed no six-digit code")
    return str(found[0])


def credentials_from_process(
    command: str, issued: float, runner: Runner = subprocess.run
) -> AccessKeys | Credentials:
    """Run a `credential_process` and parse its Version 1 JSON."""
    out = _run(["/bin/sh", "-c", command], "credential_process", COMMAND_TIMEOUT, runner)
    malformed = SourceFailed(
        "credential_process did not print Version 1 JSON with AccessKeyId and SecretAccessKey"
    )
    try:
        data = json.loads(out)
    except ValueError:
        raise malformed from None
    if not isinstance(data, dict) or data.get("Version") != 1:
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
        expires = (
            datetime.fromisoformat(str(expiration).replace("Z", "+00:00")).timestamp()
            if expiration
            else issued + 3600
        )
    except ValueError:
        raise SourceFailed(
            "credential_process printed an Expiration that is not ISO 8601"
        ) from None
    return Credentials(key_id, secret, Secret(str(token)), expires, issued)
