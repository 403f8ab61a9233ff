"""The `vaultd` command: dispatch, and the rules every command shares at its edge (exit
codes in `exits`, one-line errors, a closed stdin or stdout). The argparse parser is in
`parser`; the control commands' plain forms are read from the same declarations by `quick`.

Each command group lives in its own module and declares its commands (`COMMANDS`): session
(switch, mfa, refresh, status, env), keys (add, remove, list, rotate, clear), run (exec,
export, login), host (service, network, doctor, demo), serve (serve, relay) and completion.
Heavy modules (aiohttp, boto3, pydantic, keyring) are imported inside the commands that need
them, never by the control commands.
"""

from __future__ import annotations

import errno
import importlib
import io
import os
import sys
from collections.abc import Sequence

from vaultd.cli import quick
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
    from typing import NoReturn, TextIO

__all__ = [
    "EXIT_CLOSED_PIPE",
    "EXIT_ERROR",
    "EXIT_MFA",
    "EXIT_NO_DAEMON",
    "EXIT_OK",
    "EXIT_USAGE",
    "Failure",
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
# The commands whose plain forms are read without argparse (`quick`): the session group's,
# which only talk to the daemon and run many times a day (issue 14).
QUICK = frozenset(name for name, group in GROUP_OF.items() if group == "session")


def commands(names: Sequence[str] = ORDER) -> dict[str, Command]:
    """The commands declared by the groups that hold `names` (default: every group), by name."""
    found: dict[str, Command] = {}
    for group in dict.fromkeys(GROUP_OF[name] for name in names):
        module = importlib.import_module(f"vaultd.cli.{group}")
        found.update((c.name, c) for c in module.COMMANDS)
    return found


def _fail(message: str, code: int) -> NoReturn:
    # Every one-line error, escaped: it may carry a profile name or a program's stderr.
    print(f"vaultd: {printable(message, None, ascii=False)}", file=sys.stderr)
    raise SystemExit(code)


# What a write to stdout fails with besides a closed pipe (EPIPE: exit 141): a full disk or
# quota, a closed or bad descriptor, an I/O error (write(2)).
OUTPUT_ERRORS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EBADF, errno.EIO, errno.EINVAL}
)


def _silence(*streams: TextIO | None) -> None:
    """Point `streams` at /dev/null so that nothing, not even the interpreter's final flush,
    writes to them again (the Python docs' recipe for SIGPIPE)."""
    import contextlib  # only on this rare path: not loaded by every command's start

    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in streams:
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                os.dup2(devnull, stream.fileno())
    os.close(devnull)


class _ClosedOutput(io.RawIOBase):
    """Where stdout goes when vaultd was started with it closed (`>&-`): every write fails
    as one to a closed descriptor does (EBADF), which `main` reports as output that cannot be
    written. Without it, Python's None stdout swallowed the output of `vaultd export` or
    `status` and the command said it had succeeded."""

    def writable(self) -> bool:
        return True

    def write(self, data: object, /) -> int:
        raise OSError(errno.EBADF, "stdout is closed")


def _closed_streams() -> None:
    """Stand in for a standard stream that vaultd was started without (`<&-`, `>&-`,
    `2>&-`), for which Python leaves its sys attribute None, so that no command meets a None.
    The files opened here stay open for the run; open() makes them non-inheritable, so a
    child of `vaultd exec` still finds the stream closed, as it was given."""
    for fd in (0, 1, 2):
        # The descriptor too, not only the sys attribute: else the next file or socket
        # opened takes the number (the daemon's epoll took 2), and whatever writes to fd 2
        # below Python (a fatal error, C code) would write into it.
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: `fd` itself
            if null != fd:
                os.dup2(null, fd, inheritable=False)
                os.close(null)
    if sys.stdin is None:
        # A closed stdin is an empty one that is no terminal, for every reader of it (the
        # terminal check before a prompt, `--mfa -`, `add --stdin`): each then says what it
        # says of an empty stdin, with its exit code, rather than fail on None.
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115
    if sys.stdout is None:
        sys.stdout = io.TextIOWrapper(_ClosedOutput(), encoding="utf-8", write_through=True)
    if sys.stderr is None:
        # print(file=None) writes to stdout: every error would go where `eval "$(vaultd
        # export ...)"` runs it. Error text is dropped instead; the exit code still tells.
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115


def main(argv: Sequence[str] | None = None) -> int:
    """Run `vaultd ARGV` (default: sys.argv) and return its exit code; failures print one
    `vaultd: ...` line on stderr and raise SystemExit with the code (see `exits`).

    A closed stdin (`<&-`) reads as an empty one that is no terminal; with stderr closed
    (`2>&-`) errors are dropped, never written to stdout. A reader that stops reading
    (`vaultd status | head -c1`) ends every command the same way: no traceback, exit 141
    (EXIT_CLOSED_PIPE). Any other failure to write the output (a full disk, a stdout closed
    from the start) is one line and exit 1.
    """
    _closed_streams()
    try:
        try:
            return _run(list(sys.argv[1:] if argv is None else argv))
        finally:
            _flush_output()
    except BrokenPipeError:
        _silence(sys.stdout, sys.stderr)
        return EXIT_CLOSED_PIPE
    except OSError as exc:
        if exc.errno not in OUTPUT_ERRORS or exc.filename is not None:
            raise  # not a failed write of the output: a bug, with its traceback
        _silence(sys.stdout)
        _fail(f"cannot write the output: {exc.strerror}", EXIT_ERROR)


def _flush_output() -> None:
    """Flush stdout, where a buffered write meets its failure (not at exit, traceback and
    all); `main` turns the failure into exit 141 (a closed pipe) or one line and exit 1."""
    sys.stdout.flush()  # never None: `_closed_streams` stands in for a closed one


def split_command(words: list[str]) -> tuple[list[str], list[str] | None]:
    """`vaultd exec`'s words and, apart, its command: everything after the first `--`,
    options included (argparse would drop a `--` inside the command: `git log -- FILE`).
    A PROFILE that starts with `-` comes after a `--` of its own, as in every other command
    (`vaultd switch -- -dev`, where argparse reads the `--`): `vaultd exec -- -dev -- CMD`,
    or `vaultd exec -- -dev` for the default shell. No program is named `-...`, so neither
    form is ever a command. Other commands' words are left whole (None)."""
    if words[:1] != ["exec"] or "--" not in words:
        return words, None
    cut = words.index("--")
    words, trailing = words[:cut], words[cut + 1 :]
    if trailing[:1] and trailing[0].startswith("-") and trailing[1:2] in ([], ["--"]):
        return [*words, "--", trailing[0]], trailing[2:]
    return words, trailing


def _run(words: list[str]) -> int:
    words, trailing = split_command(words)
    # The control commands' plain forms are read without argparse (`quick`, from the same
    # declaration); everything else, and every usage error, goes through argparse.
    word = words[0] if words else None
    args = None
    if trailing is None and word in QUICK:
        args = quick.parse(commands((word,))[word], words[1:])
    if args is None:
        from vaultd.cli.parser import parse  # argparse: see vaultd.cli.parser

        args = parse(words, trailing)
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
