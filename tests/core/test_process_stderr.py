"""What a failing credential_process printed on stderr reaches status and the log only as
one short line with keys and secrets masked (the tester's finding: `boom AKIASECRETLEAK
wJalrSECRET` was copied verbatim). Real /bin/sh commands, as the daemon runs them."""

from __future__ import annotations

import pytest

from vaultd.core import process
from vaultd.core.credentials import DETAIL_MAX, outside_detail
from vaultd.core.mfa import SourceFailed

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def failure(command: str) -> str:
    with pytest.raises(SourceFailed) as info:
        process.credentials_from_process(command, 0.0)
    return info.value.message


def test_keys_and_secrets_on_stderr_are_masked() -> None:
    message = failure("echo boom AKIASECRETLEAK wJalrSECRET >&2; exit 3")
    assert "AKIASECRETLEAK" not in message and "wJalrSECRET" not in message
    assert message.startswith("credential_process exited with status 3: boom ")


def test_a_long_stderr_is_one_bounded_line() -> None:
    message = failure(
        f"echo first >&2; printf 'ASIAABCDEFGHIJKLMNOP {SECRET} %0600d' 0 >&2; exit 1"
    )
    assert "\n" not in message and "first" not in message
    assert SECRET not in message and "ASIAABCDEFGHIJKLMNOP" not in message
    assert len(message) <= len("credential_process exited with status 1: ") + DETAIL_MAX


def test_prose_stays_readable() -> None:
    said = "Unable to locate Credentials: token expired (status 403)"
    assert outside_detail(said) == said
    assert outside_detail("key ASIAABCDEFGHIJKLMNOP\n") == "key ****MNOP"
