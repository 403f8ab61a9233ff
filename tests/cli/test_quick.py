"""`vaultd.cli.quick` reads the control commands' plain forms without argparse, from the same
declarations: whatever it reads, argparse must read the same (and whatever argparse refuses,
quick must leave to argparse, which then prints its usage error)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import itertools

import pytest

from vaultd import cli
from vaultd.cli import common, quick
from vaultd.cli.parser import build_parser

# Words that exercise each rule: plain values, `-` (stdin), empty and dash-led values,
# a negative number, spaces, and what only argparse reads (help, abbreviations, `=`).
VALUES = ("master", "123456", "-", "", "-x", "-1", "a b", "-x y", "1.5")
EXTRA = ("-h", "--help", "--nope", "-V")


def _pieces(parser: argparse.ArgumentParser) -> list[list[str]]:
    """Word groups for one subparser: each value alone (positionals), and each option bare,
    with each value, abbreviated and in `--option=VALUE` form."""
    pieces = [[value] for value in VALUES] + [[word] for word in EXTRA]
    for action in parser._actions:  # argparse keeps no public list of them
        for option in action.option_strings:
            if option in ("-h", "--help"):
                continue
            pieces += [[option], [option[:4]], [f"{option}=v"]]
            pieces += [[option, value] for value in VALUES]
    return pieces


@functools.cache
def _parser(name: str) -> argparse.ArgumentParser:
    return build_parser(only=name)


def _argparse(name: str, words: list[str]) -> dict[str, object] | None:
    """What argparse makes of `vaultd NAME WORDS`, or None when it refuses them (exit 2)
    or prints help."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            return vars(_parser(name).parse_args([name, *words]))
        except SystemExit:
            return None


@pytest.mark.parametrize("name", sorted(cli.QUICK))
def test_whatever_quick_reads_argparse_reads_the_same(name: str) -> None:
    command = cli.commands((name,))[name]
    declared = argparse.ArgumentParser()  # the declaration alone, to list its options
    if command.arguments is not None:
        command.arguments(declared)
    pieces = _pieces(declared)
    read = 0
    for count in range(4):
        for combination in itertools.product(pieces, repeat=count):
            words = [word for piece in combination for word in piece]
            fast = quick.parse(command, words)
            if fast is None:
                continue
            read += 1
            assert vars(fast) == _argparse(name, words), words
    assert read > 0  # quick reads some forms of every control command


@pytest.mark.parametrize(
    "words",
    [
        ["status"],
        ["status", "--json"],
        ["status", "--control-socket", "/run/x.sock"],
        ["switch", "master"],
        ["switch", "master", "--mfa", "123456"],
        ["switch", "master", "--mfa", "-"],
        ["mfa", "123456"],
        ["mfa", "-"],
        ["mfa"],
        ["refresh"],
        ["env"],
    ],
)
def test_the_daily_forms_are_read_without_argparse(words: list[str]) -> None:
    # Which forms skip argparse is what `make bench` measures; that they agree is above.
    command = cli.commands((words[0],))[words[0]]
    fast = quick.parse(command, words[1:])
    assert fast is not None and vars(fast) == _argparse(words[0], words[1:])


def _help(name: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser(only=name).parse_args([name, "--help"])
    return out.getvalue()


def test_suppress_is_argparses() -> None:
    # argparse tests for SUPPRESS by identity: an equal string alone would show the option
    # in --help. Every option declared with common.SUPPRESS must be left out of its help.
    assert common.SUPPRESS == argparse.SUPPRESS
    hidden = 0
    for name, command in cli.commands().items():
        declared = argparse.ArgumentParser()
        if command.arguments is not None:
            command.arguments(declared)
        for action in declared._actions:  # argparse keeps no public list of them
            if action.help == common.SUPPRESS:
                hidden += 1
                assert action.option_strings[0] not in _help(name), name
    assert hidden > 0  # `vaultd mfa --interval`
