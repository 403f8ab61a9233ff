"""The one rule for text from outside vaultd, shown on a terminal or written to a log."""

from __future__ import annotations

from vaultd.untrusted import printable


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
