"""The daily commands that only talk to the running daemon: switch, mfa, refresh, status, env.

They stay light (standard library and the control client; import-linter checks it, and
tests/cli/test_startup.py lists what they must not load): a run of `vaultd status` takes
about 2.5 times `python -c pass` on a 2-core machine, `bench/cli.py` measures it.
"""

from __future__ import annotations

import json
import sys
import time
from functools import partial

from vaultd.cli.common import (
    CODE_REFUSED,
    MFA_HELP,
    SUPPRESS,
    Command,
    ask_code,
    client_for,
    code_argument,
    code_from_person,
    has_terminal,
    poll_interval,
    print_serving,
    profile_arg,
    settings_for,
    socket_arg,
    with_code,
    with_mfa,
)
from vaultd.cli.exits import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_MFA,
    EXIT_OK,
    EXIT_USAGE,
    Failure,
)
from vaultd.client import ControlClient, ControlError, DaemonNotRunning
from vaultd.documents import RUNNING, STATUS, MalformedDocument, checked
from vaultd.untrusted import printable

# Only the type checker needs argparse here: the control commands' words are read without it
# in their plain forms (`vaultd.cli.quick`).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any


def cmd_switch(args: argparse.Namespace) -> int:
    client = client_for(args)
    code = code_argument(args.mfa)
    try:
        print_serving(with_mfa(client, lambda given: client.switch(args.profile, given), code))
    except (ControlError, Failure, KeyboardInterrupt) as exc:
        stands = _switch_stands(client, args.profile, exc)
        if stands is None:
            raise
        raise stands from None
    return EXIT_OK


def _switch_stands(client: ControlClient, profile: str, exc: BaseException) -> Failure | None:
    """The one line for a switch that ended with `profile` waiting for a person: a refused
    code, no code and no terminal (EXIT_MFA), or Ctrl-C at the prompt. Such a switch stands
    (Broker.switch), so what was served before is not any more: the line says so when the
    daemon's status agrees. None for any other end, or when it does not."""
    if isinstance(exc, ControlError) and exc.code in CODE_REFUSED:
        said, code = printable(exc, None, ascii=False), EXIT_ERROR
        wait = " and waits for a code (`vaultd mfa CODE`)"
    elif isinstance(exc, Failure) and exc.exit_code == EXIT_MFA:
        # Its message already says `vaultd mfa CODE`.
        said, wait, code = str(exc), ", waiting for that code", EXIT_MFA
    elif isinstance(exc, KeyboardInterrupt):
        said, wait, code = "interrupted", " and waits for a code", EXIT_INTERRUPTED
    else:
        return None
    try:
        active = checked(client.status(), STATUS, "status document")["active"]
    except (DaemonNotRunning, ControlError, MalformedDocument):
        return None
    if active != profile:
        return None
    name = printable(profile, None, ascii=False)
    return Failure(f"{said}; the switch stands: {name} is the active profile{wait}", code)


def cmd_mfa(args: argparse.Namespace) -> int:
    client = client_for(args)
    if args.watch:
        return _watch_mfa(client, args.interval)
    code = code_argument(args.code)
    serial = None  # a code given outright answers whatever request is open
    prompt = "MFA code: "
    if code is None:
        serial = _code_wanted(client)
        if serial:  # the device the code goes back with: shown, never obeyed
            prompt = f"MFA code for {printable(serial, None, ascii=False)}: "
        code = code_from_person(
            prompt,
            "no MFA code given and no terminal to ask on: run `vaultd mfa CODE`, "
            "or `vaultd mfa -` with the code on stdin",
        )
    print_serving(with_code(partial(client.mfa, serial=serial), code, prompt))
    return EXIT_OK


def _code_wanted(client: ControlClient) -> str | None:
    """Before asking a person for a code: is the daemon waiting for one? Returns the MFA
    device (serial) the open request is for, sent back with the code (None: not known).
    Raises Failure (exit 1, the daemon's own words for a code sent unasked) when no request
    is open, and DaemonNotRunning (exit 4) when there is no daemon: a code typed then would
    be wasted. A daemon that answers status with an error leaves the question to the code's
    own path."""
    try:
        status = checked(client.status(), STATUS, "status document")
    except ControlError:
        return None
    request = status.get("mfa")
    if not request:
        raise Failure("no MFA code is being waited for", EXIT_ERROR)
    return request["serial"] or None  # STATUS makes it a string


def _watch_mfa(client: ControlClient, interval: float) -> int:
    """Wait for MFA requests and prompt for each as it comes (a terminal left open)."""
    if not has_terminal():
        raise Failure("--watch needs a terminal to ask on", EXIT_USAGE)
    print("Waiting for MFA requests (Ctrl-C to stop)...", file=sys.stderr)
    answered: tuple[object, ...] | None = None  # the request last answered
    trouble = ""  # what the last look at the daemon ran into, said once
    try:
        while True:
            try:
                status = checked(client.status(), STATUS, "status document")
            except (DaemonNotRunning, ControlError, MalformedDocument) as exc:
                if str(exc) != trouble:  # a restart or a bad answer: look again, say it once
                    said = printable(exc, None, ascii=False)
                    print(f"vaultd: {said} (still watching: Ctrl-C stops)", file=sys.stderr)
                trouble = str(exc)
                time.sleep(interval)
                continue
            trouble = ""
            request = status.get("mfa")
            # A request is who, which device and since when: `since` alone has one-second
            # steps and may be missing.
            key = (request["profile"], request["serial"], request.get("since")) if request else None
            if request and key != answered:
                why = "the session ends soon" if request.get("early") else "a code is needed"
                print(
                    f"{printable(request['profile'], None, ascii=False)}: {why}.", file=sys.stderr
                )
                prompt = f"MFA code for {printable(request['serial'], None, ascii=False)}: "
                # One round of CODES_ASKED codes per request, as for any command: STS locks
                # a device after repeated failures. After that, `vaultd mfa CODE` answers it.
                answered = key
                serial = request["serial"] or None
                try:
                    code = ask_code(prompt)
                    print_serving(with_code(partial(client.mfa, serial=serial), code, prompt))
                except (ControlError, Failure) as exc:
                    # Another request took the place of this one while the person typed:
                    # the next look at the daemon finds it and asks for it.
                    after = " (not asking again for this request: `vaultd mfa CODE` answers it)"
                    if isinstance(exc, ControlError) and exc.code == "mfa_request_changed":
                        after = ""
                    print(f"vaultd: {printable(exc, None, ascii=False)}{after}", file=sys.stderr)
            time.sleep(interval)
    except KeyboardInterrupt:
        print(file=sys.stderr)  # past a prompt left unanswered
        return EXIT_OK


def cmd_refresh(args: argparse.Namespace) -> int:
    client = client_for(args)
    body = {"profile": args.profile} if args.profile else {}
    # A code it needs is asked for on a terminal, as for switch (refresh takes no --mfa).
    status = with_mfa(client, lambda _given: client.call("POST", "/v1/refresh", body))
    if args.profile and args.profile != status.get("active"):
        # The line below is about the active profile: say first that this one was renewed.
        print(f"Refreshed {printable(args.profile, None, ascii=False)}.")
    print_serving(status)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    status = checked(client_for(args).status(), STATUS, "status document")
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return EXIT_OK
    creds = status.get("credentials")
    lines = [
        f"active:      {status.get('active') or '-'}",
        f"state:       {status.get('state')} - {status.get('message')}",
    ]
    if status.get("role_arn"):
        lines.append(f"role:        {status['role_arn']}")
    elif status.get("role") and status.get("role") != status.get("active"):
        # The profile's name is not a path segment SDKs can request back: say what IMDS lists.
        lines.append(f"imds role:   {status['role']} (profile {status.get('active')!r})")
    if creds:
        minutes = int(creds["expires_in"]) // 60
        lines.append(
            f"credentials: {creds['access_key_id']} expires {creds['expires']} "
            f"(in {minutes} min, refresh at {creds['refresh_at']})"
        )
        if creds.get("unrefreshed_signin"):
            lines.append(f"warning:     {creds['unrefreshed_signin']}")
    if status.get("mfa"):
        m = status["mfa"]
        lines.append(
            f"mfa:         waiting for a code for {m['serial']} ({m['profile']}): vaultd mfa CODE"
        )
    err = status.get("last_error")
    # An error that is the state itself (a wait for a code, a failed first fetch) was just
    # said on the state line, with why and what to do: said again as an error, a wait for a
    # person read as a fault, and behind another profile's request it named the wrong device.
    if err and err["error"] != status.get("state"):
        lines.append(f"last error:  {err['error']} at {err['at']}: {err['message']}")
    if status.get("next_retry"):
        lines.append(f"next retry:  {status['next_retry']}")
    lines += _daemon_lines(status)
    # Every field came from the daemon, and names from the config: no raw control characters.
    print("\n".join(printable(line, None, ascii=False) for line in lines))
    return EXIT_OK


def _daemon_lines(status: dict[str, Any]) -> list[str]:
    """`vaultd status`'s lines about the daemon itself: exec grants, listeners, guards."""
    lines = []
    tokens = status.get("exec_tokens") or {}
    if tokens:
        held = ", ".join(f"{name} ({count})" for name, count in sorted(tokens.items()))
        lines.append(f"exec:        {held}")
    lines += [f"listening:   {listener}" for listener in status.get("listeners") or []]
    for key, label in (
        ("core_dumps", "core dumps:  "),
        ("owner_check", "owner check: "),
        ("event_loop", "event loop:  "),
    ):
        if status.get(key):
            lines.append(f"{label}{status[key]}")
    return lines


def cmd_env(args: argparse.Namespace) -> int:
    """The endpoint the running daemon reports (where it really serves); with --listen, or
    with no daemon, the listen address mapped the way the daemon maps it (`sdk_url`)."""
    # Imported here: contextlib, and settings with dataclasses and pathlib, are what status,
    # switch and mfa (this module's other commands) never load.
    import contextlib

    from vaultd.settings import sdk_url

    endpoint = None
    if args.listen is None:
        with contextlib.suppress(DaemonNotRunning):
            endpoint = checked(client_for(args).status(), RUNNING, "status document")["endpoint"]
    if endpoint is None:
        listen = settings_for(args).listen
        if listen.port == 0:
            raise Failure(
                f"listen address {listen} takes a free port when the daemon starts, so there "
                "is no endpoint to print yet: start `vaultd serve`, then run `vaultd env`"
            )
        endpoint = sdk_url(listen)
    print(f"export AWS_EC2_METADATA_SERVICE_ENDPOINT={printable(endpoint, None, ascii=False)}")
    return EXIT_OK


def _switch_args(p: argparse.ArgumentParser) -> None:
    profile_arg(p)
    p.add_argument("--mfa", metavar="CODE", help=MFA_HELP)
    socket_arg(p)


def _mfa_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "code",
        metavar="CODE",
        nargs="?",
        help="six-digit code (asked for when omitted; - reads it from stdin)",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="keep waiting and ask for each request (Ctrl-C ends it, exit 0)",
    )
    p.add_argument("--interval", type=poll_interval, default=1.0, help=SUPPRESS)
    socket_arg(p)


def _optional_profile_args(p: argparse.ArgumentParser) -> None:
    profile_arg(p, optional=True)
    socket_arg(p)


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")
    socket_arg(p)


def _env_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="print for this IMDS listener, not the running daemon's (default 127.0.0.1:9169)",
    )
    socket_arg(p)


COMMANDS = (
    Command("switch", "make PROFILE the one IMDS serves", cmd_switch, _switch_args),
    Command("mfa", "answer the daemon's pending MFA request", cmd_mfa, _mfa_args),
    Command(
        "refresh",
        "fetch new credentials now (the active profile, or PROFILE)",
        cmd_refresh,
        _optional_profile_args,
    ),
    Command(
        "status", "show the active profile, credentials and pending MFA", cmd_status, _status_args
    ),
    Command("env", "print the export line that points SDKs at vaultd", cmd_env, _env_args),
)
