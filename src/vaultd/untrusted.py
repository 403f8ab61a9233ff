"""Text that came from outside vaultd, made safe to print on a terminal or write to a log.

Profile names and config values (botocore accepts `[profile \\x1b]0;pwned\\x07]`), what an
HTTP request sent, and what the control socket answered may hold control characters: an
escape sequence printed raw retitles or clears the user's terminal, a newline forges a log
line. Everything of that kind goes through `printable` before it is printed or logged (the
IMDS refusal log, `vaultd list`, `status`, `switch`); the daemon's own log lines are escaped
once, by the daemon's log formatter (`vaultd.daemon.EscapingFormatter`). No logging import
here: every control command loads this module at start.

JSON from outside (a credential_process's output, the control socket's or a server's answer,
a keyring item) is read by `json_value` alone, whose every failure is a ValueError, or by
`json_object` where anything but an object is one failure.
"""

from __future__ import annotations

import json

# typing costs milliseconds to import and only the type checker needs it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

MAX_LOGGED: Final = 160


def printable(text: object, limit: int | None = MAX_LOGGED, *, ascii: bool = True) -> str:
    """`text` (str() of it) as one safe field: at most `limit` characters of it (None: all)
    and a note of how much was cut. Every character that is not printable (str.isprintable:
    control, format and separator characters, e.g. ESC, NUL, CR, U+2028, U+202E) is escaped
    Python-style (`\\x1b`, `\\n`, `\\u2028`).

    `ascii=True` (log fields) also escapes all non-ASCII, quotes and backslashes, so the field
    is plain ASCII and unambiguous inside `"..."`; `ascii=False` (what a person reads on a
    terminal) keeps printable text such as `café` or an em dash as it is.
    """
    text = str(text)
    cut = text if limit is None else text[:limit]
    if ascii:
        out = cut.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    else:
        out = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in cut)
    if limit is not None and len(text) > limit:
        out += f"...(+{len(text) - limit} chars)"
    return out


class NestedTooDeeply(ValueError):
    """JSON nested deeper than the standard library's decoder can recurse."""


def json_value(text: str | bytes) -> object:
    """The one JSON value in `text`, which came from outside vaultd.

    Every way it can fail is a ValueError, so each reader's `except ValueError` turns any
    malformed input into its own one-line error: text that is not JSON, bytes that are not
    UTF-8 (UnicodeDecodeError), and NestedTooDeeply. json's decoder recurses once per `[`
    or `{` and raises RecursionError, which is no ValueError: a program printing 200,000
    `[` became an internal error with a traceback. The value is typed `object` so that the
    reader checks its shape before using it.
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise NestedTooDeeply("JSON nested too deeply") from None


def json_object(text: str | bytes) -> dict[str, Any] | None:
    """The JSON object in `text` (from outside vaultd), or None when `text` holds anything
    else: not JSON, not UTF-8, nested too deeply (`json_value`), or another kind of value.
    For readers with one answer to all of those."""
    try:
        value = json_value(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# -- names in the command lines vaultd tells a person to run ----------------------------------
# A profile or session name is whatever a config file holds (`[profile my dev]`, `[profile
# -dev]`), so a command line that names one must quote it for the shell and keep argparse
# (vaultd's, the AWS CLI's) from reading it as an option.


def shell_word(text: str) -> str:
    """`text` as one word a POSIX shell reads back as `text` (shlex.quote: plain names such
    as `master` or an ARN are left as they are)."""
    import shlex  # noqa: PLC0415 - kept off the control commands' start-up path

    return shlex.quote(text)


def profile_words(name: str) -> str:
    """PROFILE in a suggested `vaultd` command line: one shell word, after a `--` of its own
    when it starts with `-` (`vaultd add -- -dev`, `vaultd exec -- -dev -- CMD`)."""
    return f"-- {shell_word(name)}" if name.startswith("-") else shell_word(name)


def option_words(option: str, value: str) -> str:
    """`OPTION VALUE` in a suggested AWS CLI command line, as `OPTION=VALUE` when VALUE starts
    with `-` (the AWS CLI's argparse would read it as an option): `--profile=-dev`."""
    if value.startswith("-"):
        return shell_word(f"{option}={value}")
    return f"{option} {shell_word(value)}"
