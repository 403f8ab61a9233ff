"""The `vaultd` command: the parser, dispatch, and the rules every command shares at its
edge (exit codes in `exits`, one-line errors, a closed stdout, a mistyped command).

Each command group lives in its own module and declares its commands (`COMMANDS`): session
(switch, mfa, refresh, status, env), keys (add, remove, list, rotate, clear), run (exec,
export, login), host (service, network, doctor, demo), serve (serve, relay) and completion.
Heavy modules (aiohttp, boto3, pydantic, keyring) are imported inside the commands that need
them, never by the control commands.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from vaultd.cli.common import Command
from vaultd.cli.exits import (
    EXIT_CLOSED_PIPE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_MFA,
    EXIT_NO_DAEMON,
    EXIT_OK,
    EXIT_USAGE,
    Failure,
)
from vaultd.client import ControlError, DaemonNotRunning
from vaultd.errors import VaultdError
from vaultd.untrusted import printable

# typing costs milliseconds to import and only the type checker needs it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = [
    "EXIT_CLOSED_PIPE",
    "EXIT_ERROR",
    "EXIT_MFA",
    "EXIT_NO_DAEMON",
    "EXIT_OK",
    "EXIT_USAGE",
    "Failure",
    "build_parser",
    "main",
]

# Every command, in the order `vaultd --help` lists them, and the group module that declares
# it. A command's module is imported only when it runs (or the whole parser is built), so
# `vaultd status` loads session.py and none of the other groups.
GROUP_OF = {
    "serve": "serve",
    "add": "keys",
    "remove": "keys",
    "list": "keys",
    "switch": "session",
    "mfa": "session",
    "exec": "run",
    "export": "run",
    "rotate": "keys",
    "login": "run",
    "refresh": "session",
    "clear": "keys",
    "status": "session",
    "env": "session",
    "relay": "serve",
    "service": "host",
    "network": "host",
    "doctor": "host",
    "demo": "host",
    "completion": "completion",
}
ORDER = tuple(GROUP_OF)

EPILOG = """\
exit codes: 0 success; 1 error (one line on stderr); 2 usage; 3 an MFA code was needed, none
was given and there was no terminal to ask on; 4 the daemon is not running; 130 interrupted
(Ctrl-C); 141 stdout was closed early (`| true`). `vaultd exec` exits with its command's
status (126 not executable, 127 not found). Shell completion:
`vaultd completion bash|zsh|fish`."""


def commands(names: Sequence[str] = ORDER) -> dict[str, Command]:
    """The commands declared by the groups that hold `names` (default: every group), by name."""
    found: dict[str, Command] = {}
    for group in dict.fromkeys(GROUP_OF[name] for name in names):
        module = importlib.import_module(f"vaultd.cli.{group}")
        found.update((c.name, c) for c in module.COMMANDS)
    return found


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


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line: one subparser per command, each group adding its arguments. With
    `only`, just that command's subparser, which parses its words the same way."""
    parser = argparse.ArgumentParser(
        prog="vaultd",
        description="Serve AWS role credentials to every SDK on this machine through IMDS.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "-V", "--version", action=_Version, help="show program's version number and exit"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
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
    return parser


def _fail(message: str, code: int) -> NoReturn:
    # Every one-line error, escaped: it may carry a profile name or a program's stderr.
    print(f"vaultd: {printable(message, None, ascii=False)}", file=sys.stderr)
    raise SystemExit(code)


def _check_command(parser: argparse.ArgumentParser, words: Sequence[str]) -> None:
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


def _silence_closed_pipe() -> None:
    """Point stdout and stderr at /dev/null so that nothing, not even the interpreter's
    final flush, writes to the closed pipe again (the Python docs' recipe for SIGPIPE)."""
    import contextlib  # only on this rare path: not loaded by every command's start

    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `vaultd ARGV` (default: sys.argv) and return its exit code; failures print one
    `vaultd: ...` line on stderr and raise SystemExit with the code (see `exits`).

    A reader that stops reading (`vaultd status | head -c1`) ends every command the same
    way: no traceback, exit 141 (EXIT_CLOSED_PIPE).
    """
    try:
        try:
            return _run(list(sys.argv[1:] if argv is None else argv))
        finally:
            sys.stdout.flush()  # a buffered stdout meets the closed pipe here, not at exit
    except BrokenPipeError:
        _silence_closed_pipe()
        return EXIT_CLOSED_PIPE


def _run(words: list[str]) -> int:
    # Everything after `--` is the command for `vaultd exec`, options included. (argparse
    # mishandles `--` inside subcommands, so it is split off here.)
    trailing: list[str] | None = None
    if "--" in words:
        cut = words.index("--")
        words, trailing = words[:cut], words[cut + 1 :]
    # `vaultd COMMAND ...` needs only COMMAND's subparser; anything else (help, -V, a typo)
    # gets the whole parser.
    word = words[0] if words else None
    parser = build_parser(only=word if word in GROUP_OF else None)
    _check_command(parser, words)
    args = parser.parse_args(words)
    if trailing is not None:
        if word != "exec":
            parser.error("`--` is only for `vaultd exec PROFILE -- CMD`")
        args.command = [*args.command, *trailing]
    try:
        result: int = args.func(args)
    except DaemonNotRunning as exc:
        _fail(str(exc), EXIT_NO_DAEMON)
    except ControlError as exc:
        if exc.code == "mfa_required":
            _fail(f"{exc} (no code given)", EXIT_MFA)
        _fail(str(exc), EXIT_ERROR)
    except Failure as exc:
        _fail(str(exc), exc.exit_code)
    except VaultdError as exc:
        _fail(exc.message, EXIT_ERROR)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)
    except EOFError:
        _fail("no input", EXIT_ERROR)
    return result


if __name__ == "__main__":
    sys.exit(main())
