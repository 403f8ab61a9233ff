"""The one rule for text from outside vaultd, shown on a terminal or written to a log."""

from __future__ import annotations

from vaultd.untrusted import printable


def test_on_a_terminal_controls_are_escaped_and_printable_text_stays() -> None:
    shown = printable("caf\xe9 \u2014 \x1b[2J\x07\n\u202e\u2028", None, ascii=False)
    assert shown == "caf\xe9 \u2014 \\x1b[2J\\x07\\n\\u202e\\u2028"
    assert printable("x" * 20, 5, ascii=False) == "xxxxx...(+15 chars)"


def test_in_a_log_field_everything_outside_printable_ascii_is_escaped() -> None:
    assert printable('a"\\\xe9\x1b') == 'a\\"\\\\\\xe9\\x1b'
