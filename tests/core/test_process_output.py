"""Whatever a credential_process or mfa_process prints, a refresh fails with the one-line
error for malformed output, never `internal error refreshing ...: RecursionError` with a
traceback in the daemon log (the tester's finding: 200,000 `[`). Real programs, named in a
real test config, run by the daemon's broker and provider."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_config
from tests.helpers import FakeClock
from vaultd.core import config
from vaultd.core.broker import Broker
from vaultd.core.keystore import Keystore
from vaultd.core.mfa import SourceFailed
from vaultd.core.provider import Provider

# Naming the profile (`p`) whose command it is, as config errors do (the newcomer's finding).
MALFORMED = (
    "profile 'p': credential_process did not print Version 1 JSON with AccessKeyId and "
    "SecretAccessKey"
)
NOT_UTF8 = "printed something that is not UTF-8 text"

# What the program writes, by the word it is given: stdout bytes, then stderr bytes, then
# its exit status.
SCRIPT = """\
import sys
DEEP = 200_000
OUTPUTS = {
    "deep-array": (b"[" * DEEP, b"", 0),
    "deep-object": (b'{"a":' * DEEP, b"", 0),
    "deep-valid": (b"[" * DEEP + b"]" * DEEP, b"", 0),
    "deep-member": (b'{"Version": 1, "AccessKeyId": ' + b"[" * DEEP, b"", 0),
    "not-json": (b"not-json", b"", 0),
    "latin1": (b'{"Version": 1, "AccessKeyId": "\\xe9"}', b"", 0),
    "latin1-stderr": (b"", b"caf\\xe9 failed", 1),
    "code-latin1": (b"123456 \\xe9", b"", 0),
}
out, err, status = OUTPUTS[sys.argv[1]]
sys.stdout.buffer.write(out)
sys.stderr.buffer.write(err)
sys.exit(status)
"""


def broker_for(isolated: Path, clock: FakeClock, word: str) -> Broker:
    """A broker over the test config, whose profile `p` has SCRIPT with `word` as its
    credential_process."""
    script = isolated / "prints.py"
    script.write_text(SCRIPT)
    command = f"{sys.executable} {script} {word}"
    shared_config(isolated, f"[profile p]\ncredential_process = {command}\n")
    provider = Provider(
        load_profiles=config.load_profiles,
        keystore=Keystore(),
        sts_factory=lambda source, region: None,
        clock=clock,
        env={},
    )
    return Broker(provider, clock, rand=lambda: 0.5)


async def refresh_fails(broker: Broker, caplog: pytest.LogCaptureFixture) -> str:
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceFailed) as info:
        await broker.switch("p")
    status = broker.status()
    assert status.error is not None and status.error.message == info.value.message
    assert "internal error" not in info.value.message
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    return info.value.message


@pytest.mark.parametrize("word", ["deep-array", "deep-object", "deep-valid", "deep-member"])
async def test_deep_output_is_the_error_for_any_malformed_output(
    isolated: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture, word: str
) -> None:
    plain = broker_for(isolated, clock, "not-json")
    assert await refresh_fails(plain, caplog) == MALFORMED
    broker = broker_for(isolated, clock, word)
    assert await refresh_fails(broker, caplog) == MALFORMED


@pytest.mark.parametrize("word", ["latin1", "latin1-stderr"])
async def test_output_that_is_not_utf8_is_named(
    isolated: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture, word: str
) -> None:
    broker = broker_for(isolated, clock, word)
    assert await refresh_fails(broker, caplog) == f"profile 'p': credential_process {NOT_UTF8}"


def test_an_mfa_process_that_is_not_utf8_is_named(isolated: Path) -> None:
    from vaultd.core.mfa import mfa_code_from_process

    script = isolated / "prints.py"
    script.write_text(SCRIPT)
    with pytest.raises(SourceFailed, match=f"^mfa_process {NOT_UTF8}$"):
        mfa_code_from_process(f"{sys.executable} {script} code-latin1")
