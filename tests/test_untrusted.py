"""The one rule for text from outside vaultd, shown on a terminal or written to a log, and
the one for names in the command lines vaultd suggests."""

from __future__ import annotations

import argparse
import shlex

import pytest

from vaultd.cli import split_command
from vaultd.cli.parser import parse
from vaultd.untrusted import option_words, printable, profile_words


def test_on_a_terminal_controls_are_escaped_and_printable_text_stays() -> None:
    shown = printable("caf\xe9 \u2014 \x1b[2J\x07\n\u202e\u2028", None, ascii=False)
    assert shown == "caf\xe9 \u2014 \\x1b[2J\\x07\\n\\u202e\\u2028"
    assert printable("x" * 20, 5, ascii=False) == "xxxxx...(+15 chars)"


def test_in_a_log_field_everything_outside_printable_ascii_is_escaped() -> None:
    assert printable('a"\\\xe9\x1b') == 'a\\"\\\\\\xe9\\x1b'


def test_the_daemon_log_formatter_escapes_every_message_but_keeps_tracebacks() -> None:
    import logging
    import sys

    from vaultd.daemon import EscapingFormatter

    formatter = EscapingFormatter("%(levelname)s %(message)s")
    try:
        int("boom")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "vaultd",
        logging.INFO,
        __file__,
        1,
        "switched to %s",
        ("a\n2026 INFO forged\x1b[2J",),
        exc_info,
    )
    out = formatter.format(record)
    first, *rest = out.split("\n")
    assert first == "INFO switched to a\\n2026 INFO forged\\x1b[2J"
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1].startswith("ValueError: invalid literal")


def test_a_one_line_error_reaches_the_terminal_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    from vaultd.cli import _fail

    # As a credential_process's stderr reaches `vaultd switch` (a breaker's reproduction).
    with pytest.raises(SystemExit) as stopped:
        _fail("credential_process exited with status 3: LAST\x1b]0;t\x07y\x00z", 1)
    assert stopped.value.code == 1
    assert capsys.readouterr().err == (
        "vaultd: credential_process exited with status 3: LAST\\x1b]0;t\\x07y\\x00z\n"
    )


def test_a_traceback_line_cannot_carry_an_escape_sequence() -> None:
    import logging
    import sys

    from vaultd.daemon import EscapingFormatter

    try:
        raise RuntimeError("upstream said \x1b]0;x\x07\rforged")  # noqa: TRY301
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("vaultd", logging.ERROR, __file__, 1, "failed", (), exc_info)
    last = EscapingFormatter("%(message)s").format(record).split("\n")[-1]
    assert last == "RuntimeError: upstream said \\x1b]0;x\\x07\\rforged"


# Names a config file can hold: plain, an ARN, a space, a quote, a leading dash, `$`, a glob.
ODD_NAMES = ["master", "arn:aws:iam::111122223333:user/e", "my dev", "it's", "-dev", "$HOME", "*"]


@pytest.mark.parametrize("name", ODD_NAMES)
@pytest.mark.parametrize("template", ["add {}", "switch {}", "exec {} -- true"])
def test_a_suggested_vaultd_command_reads_back_as_the_profile(name: str, template: str) -> None:
    """What the shell makes of the suggested line is what vaultd's parser takes as PROFILE."""
    words = shlex.split(template.format(profile_words(name)))
    assert parse(*split_command(words)).profile == name


@pytest.mark.parametrize("name", ODD_NAMES)
def test_a_suggested_aws_cli_option_reads_back_as_the_value(name: str) -> None:
    """The AWS CLI reads its options with argparse, as this parser does."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile")
    assert parser.parse_args(shlex.split(option_words("--profile", name))).profile == name
