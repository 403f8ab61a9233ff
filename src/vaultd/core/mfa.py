"""Where MFA codes come from when no person types them (what one looks like: `vaultd.mfa_code`).

- `mfa_process` (aws-vault's profile key): a shell command that prints the code;
- `ykman oath accounts code --single ACCOUNT` for a YubiKey (`mfa_ykman = true`), where
  ACCOUNT is the MFA device's ARN, as aws-vault names it.

Their output is never logged: it is a code. (`credential_process` is in `process`.)
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from vaultd.client import SOURCE_DEADLINE
from vaultd.core.credentials import outside_detail
from vaultd.errors import VaultdError
from vaultd.mfa_code import CODE_IN_TEXT

# How long a program run for credentials or a code may take: the control client's
# deadline is derived from this one, so it outwaits the daemon's own reason.
COMMAND_TIMEOUT = SOURCE_DEADLINE

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class SourceFailed(VaultdError):
    code = "source_failed"
    http_status = 502


def run_command(argv: list[str], what: str, timeout: float, runner: Runner) -> str:
    """Run `argv` and return its stdout; SourceFailed names `what` when it cannot run,
    times out after `timeout` seconds, prints what is not UTF-8 or exits non-zero (with the
    last line of stderr)."""
    try:
        # UTF-8 whatever the locale, as botocore's own ProcessProvider decodes the output.
        done = runner(
            argv, capture_output=True, text=True, encoding="utf-8", timeout=timeout, check=False
        )
    except UnicodeDecodeError:  # a ValueError, from decoding either stream
        raise SourceFailed(f"{what} printed something that is not UTF-8 text") from None
    except FileNotFoundError:
        raise SourceFailed(f"{what}: {argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise SourceFailed(f"{what} did not finish within {timeout:.0f}s") from None
    except OSError as exc:
        raise SourceFailed(f"{what} could not run: {exc.strerror}") from None
    except ValueError:  # subprocess refuses argv with a NUL byte (the config file held one)
        raise SourceFailed(f"{what} could not run: its command line holds a NUL byte") from None
    if done.returncode != 0:
        # stderr is the tool's own complaint (e.g. "no YubiKey found"), but a
        # credential_process may echo keys into it: one masked, bounded line only.
        detail = outside_detail(done.stderr or "")
        hint = f": {detail}" if detail else ""
        raise SourceFailed(f"{what} exited with status {done.returncode}{hint}")
    return str(done.stdout)


def mfa_code_from_process(command: str, runner: Runner = subprocess.run) -> str:
    out = run_command(["/bin/sh", "-c", command], "mfa_process", COMMAND_TIMEOUT, runner)
    return _one_code(out, "mfa_process")


def mfa_code_from_ykman(account: str, runner: Runner = subprocess.run) -> str:
    argv = ["ykman", "oath", "accounts", "code", "--single", account]
    return _one_code(run_command(argv, "ykman", COMMAND_TIMEOUT, runner), "ykman")


def _one_code(output: str, what: str) -> str:
    found = CODE_IN_TEXT.findall(output)
    if len(found) != 1:
        raise SourceFailed(f"{what} printed no six-digit code")
    return str(found[0])
