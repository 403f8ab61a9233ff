"""The `vaultd` command: the parser, dispatch, and the exit codes.

Exit codes: 0 success; 1 error (one line on stderr); 2 usage; 3 MFA needed and no code and
no terminal to ask on; 4 the daemon is not running. Heavy modules (aiohttp, boto3, pydantic,
keyring) are imported inside the commands that need them, never by the control commands.

Each command group lives in its own module and declares its commands (`COMMANDS`): session
(switch, mfa, refresh, status, env), keys (add, remove, list, rotate, clear), run (exec,
export, login), host (service, network, doctor, demo) and serve (serve, relay).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from vaultd import __version__
from vaultd.cli import host, keys, run, serve, session
from vaultd.cli.common import (
    EXIT_ERROR,
    EXIT_MFA,
    EXIT_NO_DAEMON,
    EXIT_OK,
    EXIT_USAGE,
    Command,
    Failure,
)
from vaultd.client import ControlError, DaemonNotRunning
from vaultd.errors import VaultdError

__all__ = [
    "EXIT_ERROR",
    "EXIT_MFA",
    "EXIT_NO_DAEMON",
    "EXIT_OK",
    "EXIT_USAGE",
    "Failure",
    "build_parser",
    "main",
]

# The order `vaultd --help` lists the commands in.
ORDER = (
    "serve",
    "add",
    "remove",
    "list",
    "switch",
    "mfa",
    "exec",
    "export",
    "rotate",
    "login",
    "refresh",
    "clear",
    "status",
    "env",
    "relay",
    "service",
    "network",
    "doctor",
    "demo",
)


def commands() -> dict[str, Command]:
    """Every command of every group, by name."""
    groups = (serve, keys, session, run, host)
    return {c.name: c for group in groups for c in group.COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: one subparser per command, each group adding its arguments."""
    parser = argparse.ArgumentParser(
        prog="vaultd",
        description="Serve AWS role credentials to every SDK on this machine through IMDS.",
    )
    parser.add_argument("--version", action="version", version=f"vaultd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # A command missing from ORDER fails here (ValueError) rather than vanishing from --help.
    for command in sorted(commands().values(), key=lambda c: ORDER.index(c.name)):
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        p.set_defaults(func=command.handler)
        if command.arguments is not None:
            command.arguments(p)
    return parser


def _fail(message: str, code: int) -> NoReturn:
    print(f"vaultd: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `vaultd ARGV` (default: sys.argv) and return its exit code; failures print one
    `vaultd: ...` line on stderr and raise SystemExit with the code."""
    words = list(sys.argv[1:] if argv is None else argv)
    # Everything after `--` is the command for `vaultd exec`, options included. (argparse
    # mishandles `--` inside subcommands, so it is split off here.)
    trailing: list[str] | None = None
    if "--" in words:
        cut = words.index("--")
        words, trailing = words[:cut], words[cut + 1 :]
    parser = build_parser()
    args = parser.parse_args(words)
    if trailing is not None:
        if args.func is not run.cmd_exec:
            parser.error("`--` is only for `vaultd exec PROFILE -- CMD`")
        args.command = [*args.command, *trailing]
    try:
        result: int = args.func(args)
    except DaemonNotRunning as exc:
        _fail(str(exc), EXIT_NO_DAEMON)
    except ControlError as exc:
        code = EXIT_MFA if exc.code == "mfa_required" else EXIT_ERROR
        if exc.code == "mfa_required":
            _fail(f"{exc} (no code given)", code)
        _fail(str(exc), code)
    except Failure as exc:
        _fail(str(exc), exc.exit_code)
    except VaultdError as exc:
        _fail(exc.message, EXIT_ERROR)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except EOFError:
        _fail("no input", EXIT_ERROR)
    return result


if __name__ == "__main__":
    sys.exit(main())
