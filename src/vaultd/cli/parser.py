"""The `vaultd` command's argparse parser: one subparser per command, each group adding its
arguments, and the help for a mistyped command.

Loaded only when argparse must read the words: `vaultd.cli.quick` reads the control
commands' plain forms from the same declarations without it (issue 14: argparse, with the
gettext, locale and shutil it loads while it builds a parser, was a third of `vaultd
status`'s start-up).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vaultd.cli import GROUP_OF, ORDER, commands
from vaultd.cli.common import SUPPRESS

# typing costs milliseconds to import and only the type checker needs it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from _typeshed import SupportsWrite

EPILOG = """\
exit codes: 0 success; 1 error (one line on stderr); 2 usage; 3 an MFA code was needed, none
was given and there was no terminal to ask on; 4 the daemon is not running; 130 interrupted
(Ctrl-C; `mfa --watch` ends that way, exit 0); 141 stdout was closed early (`| true`).
`vaultd exec` exits with its command's status (126 not executable, 127 not found, 128+N
killed by signal N). Shell completion:
`vaultd completion bash|zsh|fish`."""


class _Parser(argparse.ArgumentParser):
    """argparse's parser (and each subparser: argparse makes them of the parent's class),
    taking `common.SUPPRESS` for argparse.SUPPRESS: declarations spell it so that `quick`
    loads no argparse, and argparse tests for SUPPRESS by identity, not equality. It keeps
    its option strings (`options`) and, at the top, each command's subparser (`subparsers`)
    for the message about words a command does not take."""

    options: list[str]
    subparsers: dict[str, argparse.ArgumentParser]

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        # argparse's own swallows a failed write (OSError), so `vaultd --help >&-` or to a
        # full disk said it had succeeded; `cli.main` reports it as any failed output.
        if message:
            (file or sys.stderr).write(message)

    def add_argument(self, *name_or_flags: str, **kwargs: Any) -> argparse.Action:
        if kwargs.get("help") == SUPPRESS:
            kwargs["help"] = argparse.SUPPRESS
        action = super().add_argument(*name_or_flags, **kwargs)
        # getattr: argparse's own __init__ adds -h before any attribute of ours exists.
        self.options = [*getattr(self, "options", []), *action.option_strings]
        return action


class _Version(argparse.Action):
    """-V/--version: the installed distribution's version (package metadata, the one place it
    is written), looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        from vaultd import __version__

        print(f"vaultd {__version__}")
        parser.exit()


def build_parser(only: str | None = None) -> _Parser:
    """The command line: one subparser per command, each group adding its arguments. With
    `only`, just that command's subparser, which parses its words the same way."""
    parser = _Parser(
        prog="vaultd",
        description="Serve AWS role credentials to every SDK on this machine through IMDS.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "-V", "--version", action=_Version, help="show program's version number and exit"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    subparsers: dict[str, argparse.ArgumentParser] = {}
    names = ORDER if only is None else (only,)
    declared = commands(names)
    for name in names:
        command = declared[name]  # KeyError: GROUP_OF names a group that does not declare it
        p = sub.add_parser(
            command.name, help=command.help, description=command.description or command.help
        )
        p.set_defaults(func=command.handler)
        if command.arguments is not None:
            command.arguments(p)
        subparsers[command.name] = p
    parser.subparsers = subparsers
    return parser


def check_command(parser: argparse.ArgumentParser, words: Sequence[str]) -> None:
    """A mistyped command names the close one (`vaultd swtich` -> switch) instead of
    argparse's list of every command; with nothing close, argparse's message stands."""
    word = next((w for w in words if not w.startswith("-")), None)
    if word is None or word in ORDER:
        return
    import difflib

    # 0.7 takes `swtich`, `stauts`, `lsit`, `netowrk`, and leaves `frobnicate` to argparse.
    close = difflib.get_close_matches(word, ORDER, n=1, cutoff=0.7)
    if close:
        parser.error(f"unknown command {word!r}: did you mean `vaultd {close[0]}`?")


def unrecognized(parser: argparse.ArgumentParser, words: Sequence[str]) -> None:
    """Words the command does not take: its own usage (not the top-level one, which argparse
    shows for a subcommand's stray option), and the close option for a misspelt one
    (`vaultd status --jsn` -> --json). Exits 2."""
    import difflib

    message = f"unrecognized arguments: {' '.join(words)}"
    options = getattr(parser, "options", [])
    close = difflib.get_close_matches(words[0].partition("=")[0], options, n=1, cutoff=0.6)
    if words[0].startswith("-") and close:
        message += f" (did you mean {close[0]}?)"
    parser.error(message)


def parse(words: list[str], trailing: list[str] | None) -> argparse.Namespace:
    """The namespace for `vaultd WORDS [-- TRAILING]`; argparse's usage error (exit 2) for
    words it cannot read. `TRAILING` is `vaultd exec`'s command (`split_command`)."""
    # `vaultd COMMAND ...` needs only COMMAND's subparser; anything else (help, -V, a typo)
    # gets the whole parser.
    word = words[0] if words else None
    parser = build_parser(only=word if word in GROUP_OF else None)
    check_command(parser, words)
    args, unknown = parser.parse_known_args(words)
    if unknown:
        unrecognized(parser.subparsers.get(args.command, parser), unknown)
    if trailing is not None:
        args.command = [*args.command, *trailing]
    return args
