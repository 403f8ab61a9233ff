"""What every command group shares: settings and the control client for a command's flags,
terminal prompts and stdin for MFA codes, and how a command is declared.

Standard library and the control client only: `vaultd status`, `switch` and `mfa` run through
this module, and import-linter keeps it free of aiohttp, boto3, botocore, pydantic and keyring.
"""

from __future__ import annotations

import sys
from functools import partial

from vaultd import sources
from vaultd.cli.exits import EXIT_MFA, EXIT_USAGE, Failure
from vaultd.client import ControlClient, ControlError
from vaultd.documents import SERVING, checked
from vaultd.mfa_code import is_mfa_code
from vaultd.untrusted import printable

# typing costs milliseconds to import and only the type checker needs it; settings (with
# dataclasses and pathlib) is imported by the commands that use more than the socket path,
# argparse where words are parsed with it (`vaultd.cli.parser`; `quick` reads the control
# commands' plain forms without it).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any, TypeAlias

    from vaultd import settings

    Handler: TypeAlias = Callable[[argparse.Namespace], int]


class Command:
    """One subcommand: its name, one-line help, the handler that runs it (returns the exit
    code), a function that adds its arguments to its subparser, and its --help text when it
    says more than `help`. (A plain class: typing.NamedTuple would load typing at start.)"""

    __slots__ = ("arguments", "description", "handler", "help", "name")

    def __init__(
        self,
        name: str,
        help: str,
        handler: Handler,
        arguments: Callable[[argparse.ArgumentParser], None] | None = None,
        description: str | None = None,
    ) -> None:
        self.name = name
        self.help = help
        self.handler = handler
        self.arguments = arguments
        self.description = description


def settings_for(args: argparse.Namespace) -> settings.Settings:
    """The settings, with whichever of --listen, --control-socket, --profile and
    --imds-tokens this command has taking precedence."""
    from vaultd import settings  # see TYPE_CHECKING above

    return settings.load(
        listen=getattr(args, "listen", None),
        control_socket=getattr(args, "control_socket", None),
        profile=getattr(args, "profile", None),
        imds_tokens=getattr(args, "imds_tokens", None),
    )


def client_for(args: argparse.Namespace) -> ControlClient:
    """A control client for the socket these flags and settings name (only that setting is
    read: `sources.control_socket`)."""
    return ControlClient(sources.control_socket(getattr(args, "control_socket", None)))


def has_terminal() -> bool:
    """Whether there is a person to ask: stdin and stderr are both a terminal."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def ask_code(prompt: str) -> str:
    """Ask for a six-digit MFA code without echo, up to three times; Failure after that."""
    import getpass  # termios and friends: only when someone is asked

    for _ in range(3):
        try:
            code = getpass.getpass(prompt).strip()
        except UnicodeDecodeError:  # a byte no terminal encoding reads: not six digits either
            code = ""
        if is_mfa_code(code):
            return code
        print("vaultd: an MFA code is six digits", file=sys.stderr)
    raise Failure("no valid MFA code entered")


def code_from_person(prompt: str, no_terminal: str) -> str:
    """The one rule for a command that needs an MFA code it was not given: ask on the
    terminal, or, with no terminal to ask on, fail with `no_terminal` and exit 3 (EXIT_MFA)."""
    if not has_terminal():
        raise Failure(no_terminal, EXIT_MFA)
    return ask_code(prompt)


def code_argument(value: str | None) -> str | None:
    """An MFA code as given on the command line, checked before the daemon is asked (the one
    place a malformed code becomes exit 2, EXIT_USAGE, as the README's table says). `-` means:
    read it from stdin, so that the code never shows in argv (`ps`); a terminal stdin is asked
    without echo, a piped one gives its first line. None (no code given) stays None.

    Raises Failure: exit 3 when stdin holds no code, exit 2 when a code is not six digits.
    """
    if value is None:
        return None
    if value != "-":
        if not is_mfa_code(value):
            raise Failure("an MFA code is six digits", EXIT_USAGE)
        return value
    if sys.stdin.isatty():
        return ask_code("MFA code: ")
    code = sys.stdin.readline().strip()
    if not code:
        raise Failure("`-` reads the MFA code from stdin, and stdin held none", EXIT_MFA)
    if not is_mfa_code(code):
        raise Failure("the MFA code read from stdin is not six digits", EXIT_USAGE)
    return code


def poll_interval(text: str) -> float:
    """argparse type of `mfa --watch --interval`: seconds between looks, 0.1 to 3600."""
    value = float(text)
    if not 0.1 <= value <= 3600:  # also refuses nan; inf and negatives broke time.sleep
        raise ValueError(text)
    return value


def profile_name(text: str) -> str:
    """argparse type of every PROFILE argument: a name, not an empty string (exit 2)."""
    if not text.strip():
        import argparse  # only argparse reads an empty name: `quick` leaves it to it

        raise argparse.ArgumentTypeError("a profile name cannot be empty")
    return text


# argparse.SUPPRESS (an argument left out of --help), spelled here so that declaring
# arguments loads no argparse (tests/cli/test_quick.py checks it is argparse's).
SUPPRESS = "==SUPPRESS=="

MFA_HELP = "MFA code, if the profile needs one (- reads it from stdin)"


def profile_arg(p: argparse.ArgumentParser, *, optional: bool = False) -> None:
    """Add the PROFILE argument (optional: may be left out)."""
    p.add_argument("profile", metavar="PROFILE", type=profile_name, nargs="?" if optional else None)


def path(value: str) -> str:
    """A path given on the command line: not empty (`--control-socket ""` would otherwise
    fall back to the default socket without a word). argparse reports the ValueError as
    "invalid path value", exit 2."""
    if not value.strip():
        raise ValueError(value)
    return value


def socket_arg(p: argparse.ArgumentParser) -> None:
    """Add --control-socket to a command that talks to the daemon."""
    p.add_argument(
        "--control-socket",
        type=path,
        metavar="PATH",
        help=f"control socket (default {sources.DEFAULT_SOCKET_TEXT}; env VAULTD_CONTROL_SOCKET)",
    )


# What the daemon says of a code it could not use: already sent to STS (spent), or refused
# by STS. Either way a person at a terminal can give the next one.
CODE_REFUSED = ("bad_mfa_code", "mfa_rejected")
CODES_ASKED = 3


def with_code(
    call: Callable[[str], dict[str, Any]], code: str, prompt: str, codes: int = CODES_ASKED
) -> dict[str, Any]:
    """`call(code)`; when the daemon refuses the code (CODE_REFUSED) and a person is at a
    terminal, say why and ask for another, up to `codes` codes in all (CODES_ASKED for a
    command: STS locks a device after repeated failures), so that a code typed wrong or
    already used costs a retype, not the command. Without a terminal the refusal stands.

    Raises ControlError: the refusal, or any other error of the call; Failure from
    `ask_code` when no valid code is typed."""
    for tries in range(1, codes + 1):
        try:
            return call(code)
        except ControlError as exc:
            if exc.code not in CODE_REFUSED or tries >= codes or not has_terminal():
                raise
            print(f"vaultd: {printable(exc, None, ascii=False)}", file=sys.stderr)
            code = ask_code(prompt)
    raise AssertionError("unreachable: the last try returns or raises")


def answer_mfa(
    client: ControlClient, error: ControlError, codes: int = CODES_ASKED, later: str = ""
) -> dict[str, Any]:
    """Satisfy an MFA request by asking on the terminal, up to `codes` codes (`with_code`);
    with none left, the request stands as a Failure (exit 3, EXIT_MFA). With no terminal,
    the error ends with `later`: how else the command itself can be given a code."""
    if codes < 1:
        raise Failure(f"{error} ({CODES_ASKED} codes were tried)")
    # The serial comes from the daemon: shown in the prompt, never obeyed; sent back with
    # the code so that a request replaced meanwhile refuses it unsent.
    serial = error.payload.get("mfa_serial")
    serial = serial if isinstance(serial, str) and serial else None
    shown = printable(serial or "your MFA device", None, ascii=False)
    # The daemon's message already says what to run; only say why nobody was asked.
    no_terminal = f"{error} (no terminal to ask for the code on){later}"
    prompt = f"MFA code for {shown}: "
    code = code_from_person(prompt, no_terminal)
    return with_code(partial(client.mfa, serial=serial), code, prompt, codes)


# For a command that takes --mfa and is over once it exits 3 (exec, export): the request
# `vaultd mfa CODE` answers only helps a run of it that comes after.
RUN_AGAIN = ", then run this command again; or give it the code: --mfa CODE, or --mfa - on stdin"


def with_mfa(
    client: ControlClient,
    call: Callable[[str | None], dict[str, Any]],
    code: str | None = None,
    later: str = "",
) -> dict[str, Any]:
    """Make a control call with the person's `code` (None: none given). If it needs an MFA
    code, get one (terminal) and call again; a given code the daemon refuses is asked
    again on a terminal (`with_code`). `later` ends the exit-3 error (`answer_mfa`)."""
    sent = [0]  # codes given to `call`: one allowance of CODES_ASKED for the command

    def counted(given: str) -> dict[str, Any]:
        sent[0] += 1
        return call(given)

    try:
        return call(None) if code is None else with_code(counted, code, "MFA code: ")
    except ControlError as exc:
        if exc.code != "mfa_required":
            raise
        try:
            answer_mfa(client, exc, CODES_ASKED - sent[0], later)
            return call(None)
        except ControlError as again:
            if again.code != "mfa_required":
                raise
            # Codes were typed, and the daemon wants another all the same: not exit 3,
            # which says nobody could be asked.
            raise Failure(printable(again, None, ascii=False)) from None


def print_serving(status: dict[str, Any]) -> None:
    """One line saying what the daemon serves now, from a status document; after an MFA
    code (POST /v1/mfa), first a line naming the profile whose request it answered, when
    that is not the active one (an exec's, say)."""
    checked(status, SERVING, "status document")
    creds = status.get("credentials") or {}
    # Names and messages come from the config and the daemon: shown, never obeyed.
    answered = status.get("answered")
    if answered is not None and answered != status.get("active"):
        print(f"Code accepted for {printable(answered, None, ascii=False)}.")
    said = printable(status.get("message") or status["state"], None, ascii=False)
    if status.get("active") is None:
        print(f"{said[:1].upper()}{said[1:]}.")  # no profile is active: what to run
        return
    active = printable(status["active"], None, ascii=False)
    # The role, or for a profile without one whose credentials these are (the IAM user).
    source = status.get("role_arn") or creds.get("arn")
    if source:
        active += f" ({printable(source, None, ascii=False)})"
    if creds:
        print(f"Serving {active} until {printable(creds['expires'], None, ascii=False)}.")
    else:
        print(f"Active profile {active}: {said}")
