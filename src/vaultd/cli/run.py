"""Commands that hand a profile's credentials to something else: exec (a child process),
export (a shell or an SDK's credential_process) and login (the AWS console in a browser)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from vaultd.cli.common import (
    MFA_HELP,
    RUN_AGAIN,
    Command,
    client_for,
    code_argument,
    has_terminal,
    profile_arg,
    socket_arg,
    with_mfa,
)
from vaultd.cli.exits import EXIT_ERROR, EXIT_OK, EXIT_USAGE, Failure
from vaultd.client import ControlClient, ControlError, DaemonNotRunning, with_mfa_code
from vaultd.core import credentials
from vaultd.core.credentials import Credentials
from vaultd.documents import EXEC_GRANT, checked
from vaultd.untrusted import profile_words

FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")


def _credentials_for(
    client: ControlClient, profile: str, mfa_code: str | None = None
) -> tuple[Credentials, str | None]:
    """One profile's credentials from the daemon, and its region if it has one."""
    doc = with_mfa(
        client,
        lambda code: client.call(
            "POST", "/v1/credentials", with_mfa_code({"profile": profile}, code)
        ),
        mfa_code,
        RUN_AGAIN,
    )
    return _read_document(doc), doc.get("Region") or None


def _read_document(doc: dict[str, Any]) -> Credentials:
    try:
        return credentials.from_document(doc)
    except (KeyError, ValueError):
        raise Failure("vaultd answered an incomplete credentials document") from None


def _run_child(
    command: list[str],
    env: dict[str, str],
    renew: Callable[[], None] | None = None,
    every: float = 300.0,
) -> int:
    """Run the child, pass our signals on to it, and return its exit status; while it runs,
    call `renew` every `every` seconds (the exec token's lifetime is bounded)."""
    import signal

    try:
        child = subprocess.Popen(command, env=env)
    except FileNotFoundError:
        raise Failure(f"{command[0]}: command not found", 127) from None
    except PermissionError:
        raise Failure(f"{command[0]}: permission denied", 126) from None
    except OSError as exc:
        # Found but not runnable (not a program, a bad interpreter line): 126, as a shell says.
        raise Failure(f"{command[0]}: cannot run it ({exc.strerror})", 126) from None

    def forward(signum: int, frame: object) -> None:
        child.send_signal(signum)

    previous = {}
    for name in FORWARDED_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, forward)
    try:
        while True:
            try:
                code = child.wait(timeout=every if renew else None)
                break
            except subprocess.TimeoutExpired:
                if renew is not None:
                    renew()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


def cmd_exec(args: argparse.Namespace) -> int:
    from vaultd.core import chain, childenv

    command = list(args.command)
    if not command:
        # The default command is an interactive shell: without a terminal it would read an
        # empty stdin and exit 0, so that is a usage error rather than a silent success.
        if not has_terminal():
            raise Failure(
                f"no command given: `vaultd exec {profile_words(args.profile)} -- CMD [ARGS...]` "
                "(a shell is started only on a terminal)",
                EXIT_USAGE,
            )
        command = [os.environ.get("SHELL") or "/bin/sh"]
    if os.environ.get("VAULTD_PROFILE") and not args.allow_nested:
        raise Failure(
            f"already inside `vaultd exec {profile_words(os.environ['VAULTD_PROFILE'])}`: "
            "exit that shell first, or pass --allow-nested"
        )
    client = client_for(args)
    code = code_argument(args.mfa)
    grant: dict[str, Any] | None = None
    if args.env:
        creds, region = _credentials_for(client, args.profile, code)
        handed = credentials.environment(creds)
    else:
        body = {"profile": args.profile}
        grant = with_mfa(
            client,
            lambda given: client.call("POST", "/v1/exec-tokens", with_mfa_code(body, given)),
            code,
            RUN_AGAIN,
        )
        checked(grant, EXEC_GRANT, "exec token")
        handed = {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": grant["url"],
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": grant["token"],
        }
        region = grant.get("region") or None
    files = chain.read_shared_files(os.environ)
    child = childenv.child_environment(os.environ, args.profile, handed, region, files)
    for warning in child.warnings:
        print(f"vaultd: warning: {warning}", file=sys.stderr)
    renew = None
    if grant is not None:
        gid = grant["id"]

        def renew() -> None:
            with contextlib.suppress(DaemonNotRunning, ControlError):
                client.call("POST", f"/v1/exec-tokens/{gid}/renew")

    lifetime = grant.get("expires_in") if grant else None
    every = lifetime / 3 if isinstance(lifetime, int) and lifetime > 0 else 300.0
    try:
        return _run_child(command, child.env, renew, every)
    finally:
        if grant is not None:
            with contextlib.suppress(DaemonNotRunning, ControlError):
                client.call("DELETE", f"/v1/exec-tokens/{grant['id']}")


def cmd_export(args: argparse.Namespace) -> int:
    from vaultd.core import chain
    from vaultd.core.childenv import region_variables

    client = client_for(args)
    creds, region = _credentials_for(client, args.profile)
    if args.format in ("env", "export"):
        # The shell that evaluates these keeps its own environment: what stops its SDKs
        # outright there (a profile that does not exist, an unreadable config) is the check
        # `vaultd exec --env` makes on its child's environment.
        for ahead in chain.ahead_of("env", os.environ, chain.read_shared_files(os.environ)):
            print(
                f"vaultd: warning: {ahead.found}, even with these keys: {ahead.fix}",
                file=sys.stderr,
            )
    if args.format == "json":
        # The credential_process format (Version 1), so SDKs can run `vaultd export` directly.
        print(json.dumps(credentials.process_fields(creds)))
    elif args.format == "ini":
        print(credentials.shared_file_section(args.profile, creds, region), end="")
    else:
        prefix = "export " if args.format == "export" else ""
        # The shell that evaluates these keeps a region it already has (environment over
        # config); only the profile's configured region is added, never an invented one.
        values = {**credentials.environment(creds), **region_variables(os.environ, region)}
        for key, value in values.items():
            print(f"{prefix}{key}={shlex.quote(value)}")
    return EXIT_OK


def _duration(text: str) -> int:
    """`3600`, `90m`, `1h`, `1h30m` -> seconds."""
    match = re.fullmatch(r"(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s?)?", text.strip())
    if not text.strip() or match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 3600, 90m or 1h")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if not 900 <= total <= 43200:
        raise argparse.ArgumentTypeError("the console session must last 15 minutes to 12 hours")
    return total


def cmd_login(args: argparse.Namespace) -> int:
    from vaultd.core import console

    client = client_for(args)
    body: dict[str, Any] = {"duration": args.duration}
    if args.profile:
        body["profile"] = args.profile
    doc = with_mfa(
        client,
        lambda code: client.call("POST", "/v1/console-credentials", with_mfa_code(body, code)),
    )
    region = args.region or doc.get("Region")
    partition = console.partition_of(doc.get("RoleArn") or doc.get("Arn"), region)
    federation = (
        args.federation_url
        or os.environ.get("VAULTD_FEDERATION_URL")
        or console.HOSTS[partition][0]
    )
    # SessionDuration is accepted only for role credentials; federation sets keep their own.
    duration = args.duration if doc.get("IsRole") else None
    token = console.signin_token(federation, _read_document(doc), duration)
    url = console.login_url(federation, token, console.destination(partition, region))
    if args.print or not _open_in_browser(url):
        print(url)
    return EXIT_OK


# Seconds the browser has to ask for the sign-in page once it has been started.
BROWSER_WAIT = 120.0


def _open_in_browser(url: str) -> bool:
    """Open `url`, which holds a sign-in token, in the browser without putting it in any
    process's argv (`host.handoff`). False when no browser could be started. Raises
    Failure when one was started and never asked for the page."""
    import threading
    import webbrowser

    if not sys.platform.startswith("linux"):
        return webbrowser.open(url)  # macOS hands it to osascript on stdin, not in argv

    from vaultd.host.handoff import Handoff
    from vaultd.host.peer_owner import owner_lookup

    with Handoff(url, owner_lookup(), os.geteuid()) as handoff:
        started: list[bool] = []
        # In a thread: a terminal browser (BROWSER=lynx) runs until it is closed, and it
        # must find the hand-off answering meanwhile.
        launcher = threading.Thread(
            target=lambda: started.append(webbrowser.open(handoff.url)), daemon=True
        )
        launcher.start()
        if handoff.wait(BROWSER_WAIT, given_up=lambda: started == [False]):
            return True
        if started == [False]:
            return False
    # Its address is free for anyone now: a browser that asks later could meet another
    # user's page there, made to look like AWS's sign-in.
    raise Failure(
        f"the browser did not ask for the sign-in page within {BROWSER_WAIT:.0f}s: run "
        "`vaultd login --print` and open the URL it prints yourself; if a browser opens "
        f"{handoff.url.rsplit('/', 1)[0]}/... later, close it: that address is no longer "
        "vaultd's",
        EXIT_ERROR,
    )


def _exec_args(p: argparse.ArgumentParser) -> None:
    profile_arg(p)
    p.add_argument("--mfa", metavar="CODE", help=MFA_HELP)
    p.add_argument("--env", action="store_true", help="put plain credentials in the environment")
    p.add_argument("--allow-nested", action="store_true", help="allow running inside another exec")
    # A default makes argparse leave it out of "the following arguments are required".
    p.add_argument(
        "command", nargs="*", default=[], metavar="-- CMD [ARGS...]", help="default: $SHELL"
    )
    socket_arg(p)


def _export_args(p: argparse.ArgumentParser) -> None:
    profile_arg(p)
    p.add_argument(
        "--format",
        choices=("env", "export", "json", "ini"),
        default="env",
        help="env (default): KEY=value lines; export: the same with 'export '; json: the "
        "credential_process format; ini: a credentials-file section",
    )
    socket_arg(p)


def _login_args(p: argparse.ArgumentParser) -> None:
    profile_arg(p, optional=True)
    p.add_argument(
        "--print", action="store_true", help="print the sign-in URL instead of opening it"
    )
    p.add_argument("--duration", type=_duration, default=3600, help="console session, e.g. 1h, 90m")
    p.add_argument("--region", help="open the console in this region")
    p.add_argument("--federation-url", help=argparse.SUPPRESS)
    socket_arg(p)


COMMANDS = (
    Command(
        "exec",
        "run a command with PROFILE's credentials, kept fresh by the daemon",
        cmd_exec,
        _exec_args,
    ),
    Command("export", "print PROFILE's temporary credentials", cmd_export, _export_args),
    Command(
        "login",
        "open the AWS console as PROFILE (default: the active one)",
        cmd_login,
        _login_args,
    ),
)
