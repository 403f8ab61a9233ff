"""The `vaultd` command.

Exit codes: 0 success; 1 error (one line on stderr); 2 usage; 3 MFA needed and no code and
no terminal to ask on; 4 the daemon is not running. Heavy modules (aiohttp, boto3, pydantic,
keyring) are imported inside the commands that need them, never by the control commands.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from vaultd import __version__, settings
from vaultd.client import ControlClient, ControlError, DaemonNotRunning
from vaultd.errors import VaultdError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_MFA, EXIT_NO_DAEMON = 0, 1, 2, 3, 4
KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")
MFA_CODE = re.compile(r"^\d{6}$")


class Failure(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _settings(args: argparse.Namespace) -> settings.Settings:
    return settings.load(
        listen=getattr(args, "listen", None),
        control_socket=getattr(args, "control_socket", None),
        profile=getattr(args, "profile", None),
        imds_tokens=getattr(args, "imds_tokens", None),
    )


def _client(args: argparse.Namespace) -> ControlClient:
    return ControlClient(_settings(args).control_socket)


def _tty() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def _ask_code(prompt: str) -> str:
    for _ in range(3):
        code = getpass.getpass(prompt).strip()
        if MFA_CODE.match(code):
            return code
        print("vaultd: an MFA code is six digits", file=sys.stderr)
    raise Failure("no valid MFA code entered")


# -- serve --------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    import ipaddress
    import logging

    from vaultd import daemon

    level = os.environ.get("VAULTD_LOG_LEVEL", "DEBUG" if args.verbose else "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s vaultd %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    # botocore narrates every request at DEBUG; its details are not ours to print.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    from vaultd.http.imds import ImdsOptions

    options = ImdsOptions()
    if args.no_uid_check:
        logging.getLogger("vaultd").warning(
            "--no-uid-check: every local user's processes can now read your credentials"
        )
    options = ImdsOptions(
        uid_check=options.uid_check and not args.no_uid_check,
        allow_uids=options.allow_uids | frozenset(args.allow_uid or ()),
        serve_extended=args.imds_extended,
        relay_token=_read_token(args.relay_token_file) if args.relay_token_file else None,
    )
    try:
        for cidr in args.allow_cidr or ():
            ipaddress.ip_network(cidr, strict=False)
    except ValueError as exc:
        raise Failure(f"--allow-cidr: {exc}", EXIT_USAGE) from None
    return daemon.serve(_settings(args), tuple(args.allow_cidr or ()), options)


# -- keys ---------------------------------------------------------------------------------
def _read_keys(args: argparse.Namespace) -> tuple[str, str]:
    if args.env:
        key_id = os.environ.get("AWS_ACCESS_KEY_ID", "")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        if not key_id or not secret:
            raise Failure("--env needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set")
    elif args.stdin or not sys.stdin.isatty():
        lines = sys.stdin.read().splitlines()
        if len(lines) < 2:
            raise Failure("--stdin expects the access key id and the secret, one per line")
        key_id, secret = lines[0], lines[1]
    else:
        key_id = input("Access key ID: ")
        secret = getpass.getpass("Secret access key: ")
    key_id, secret = key_id.strip(), secret.strip()
    if not KEY_ID.match(key_id):
        raise Failure("that does not look like an access key id (AKIA... in capitals and digits)")
    if not secret or any(c.isspace() for c in secret):
        raise Failure("the secret access key is empty or contains spaces")
    return key_id, secret


def cmd_add(args: argparse.Namespace) -> int:
    from vaultd.core import config
    from vaultd.core.credentials import AccessKeys, mask_key_id
    from vaultd.core.keystore import Keystore
    from vaultd.secret import Secret

    profiles = config.load_profiles()
    profile = profiles.get(args.profile)
    if profile is not None and profile.source_profile:
        raise Failure(
            f"profile {args.profile!r} takes its keys from {profile.source_profile!r}: "
            f"run `vaultd add {profile.source_profile}` instead"
        )
    key_id, secret = _read_keys(args)
    store = Keystore()
    store.set_keys(args.profile, AccessKeys(key_id, Secret(secret)))
    store.delete_session(args.profile)
    print(f"Stored key {mask_key_id(key_id)} for profile {args.profile!r} in the keyring.")
    if profile is None:
        print(
            f"Note: {config.config_path()} has no [profile {args.profile}] yet; "
            "add one to set mfa_serial or region.",
            file=sys.stderr,
        )
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    from vaultd.core.keystore import Keystore

    if not args.yes:
        if not _tty():
            raise Failure("refusing to delete keys without a terminal to confirm on: pass --yes")
        answer = input(f"Delete the stored keys for {args.profile!r}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing deleted.")
            return EXIT_OK
    store = Keystore()
    had_keys = store.delete_keys(args.profile)
    sessions = store.delete_session(args.profile)
    if not had_keys and not sessions:
        raise Failure(f"nothing stored for profile {args.profile!r}")
    print(f"Deleted the keys{' and cached session' if sessions else ''} of {args.profile!r}.")
    return EXIT_OK


def _left(seconds: float) -> str:
    if seconds <= 0:
        return "expired"
    hours, minutes = divmod(int(seconds) // 60, 60)
    return f"{hours}h{minutes:02d}m left" if hours else f"{minutes}m left"


def cmd_list(args: argparse.Namespace) -> int:
    from vaultd.core import config
    from vaultd.core.inventory import profile_rows
    from vaultd.core.keystore import Keystore

    profiles = config.load_profiles()
    status: dict[str, Any] = {}
    with contextlib.suppress(DaemonNotRunning, ControlError):
        status = _client(args).status()
    rows = profile_rows(
        profiles,
        Keystore(),
        active=status.get("active"),
        exec_tokens=status.get("exec_tokens") or {},
        now=time.time(),
    )
    if args.json:
        print(json.dumps({"profiles": rows, "daemon_running": bool(status)}, indent=2))
        return EXIT_OK
    if not rows:
        print(f"No profiles in {config.config_path()} and no stored keys.")
        return EXIT_OK
    width = max(len(r["name"]) for r in rows) + 2
    print(f"  {'PROFILE':<{width}}{'SOURCE':<20}{'MFA SESSION':<16}{'EXEC':<6}ROLE")
    for r in rows:
        mark = "*" if r["active"] else " "
        left_text = _left(r["session_left_seconds"]) if r["session_expires"] else "-"
        print(
            f"{mark} {r['name']:<{width}}{r['source']:<20}{left_text:<16}"
            f"{r['exec_tokens'] or '-'!s:<6}{r['role_arn'] or '-'}"
        )
    if not status:
        print("(vaultd is not running: no active profile or exec tokens to show)")
    return EXIT_OK


# -- control commands ---------------------------------------------------------------------
def _answer_mfa(client: ControlClient, error: ControlError) -> dict[str, Any]:
    """Satisfy an MFA request by asking on the terminal; a wrong code is asked again."""
    serial = error.payload.get("mfa_serial") or "your MFA device"
    if not _tty():
        raise Failure(f"{error}. No terminal to ask on: run `vaultd mfa CODE`", EXIT_MFA)
    for attempt in range(3):
        try:
            return client.mfa(_ask_code(f"MFA code for {serial}: "))
        except ControlError as exc:
            if exc.code not in ("mfa_rejected", "bad_mfa_code") or attempt == 2:
                raise
            print(f"vaultd: {exc}", file=sys.stderr)
    raise Failure("MFA failed")


def _with_mfa(client: ControlClient, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Make a control call; if it needs an MFA code, get one (terminal) and call again."""
    try:
        return call()
    except ControlError as exc:
        if exc.code != "mfa_required":
            raise
        _answer_mfa(client, exc)
    return call()


def cmd_switch(args: argparse.Namespace) -> int:
    client = _client(args)
    _print_serving(_with_mfa(client, lambda: client.switch(args.profile, args.mfa)))
    return EXIT_OK


def cmd_mfa(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.watch:
        return _watch_mfa(client, args.interval)
    code = args.code
    if code is None:
        if not _tty():
            raise Failure("no code given and no terminal to ask on", EXIT_USAGE)
        code = _ask_code("MFA code: ")
    if not MFA_CODE.match(code):
        raise Failure("an MFA code is six digits", EXIT_USAGE)
    _print_serving(client.mfa(code))
    return EXIT_OK


def _watch_mfa(client: ControlClient, interval: float) -> int:
    """Wait for MFA requests and prompt for each as it comes (a terminal left open)."""
    if not _tty():
        raise Failure("--watch needs a terminal to ask on", EXIT_USAGE)
    print("Waiting for MFA requests (Ctrl-C to stop)...", file=sys.stderr)
    asked_for: str | None = None
    try:
        while True:
            status = client.status()
            request = status.get("mfa")
            if request and request.get("since") != asked_for:
                why = "the session ends soon" if request.get("early") else "a code is needed"
                print(f"{request['profile']}: {why}.", file=sys.stderr)
                try:
                    code = _ask_code(f"MFA code for {request['serial']}: ")
                    _print_serving(client.mfa(code))
                except (ControlError, Failure) as exc:
                    print(f"vaultd: {exc}", file=sys.stderr)
                    continue  # ask again while the request stays open
                asked_for = request.get("since")
            time.sleep(interval)
    except KeyboardInterrupt:
        return EXIT_OK


CLEARED_FOR_CHILD = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
)
FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")


def _credentials_for(
    client: ControlClient, profile: str, mfa_code: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"profile": profile}
    if mfa_code is not None:
        body["mfa_code"] = mfa_code
    return _with_mfa(client, lambda: client.call("POST", "/v1/credentials", body))


def _run_child(command: list[str], env: dict[str, str]) -> int:
    """Run the child, pass our signals on to it, and return its exit status."""
    import signal

    try:
        child = subprocess.Popen(command, env=env)
    except FileNotFoundError:
        raise Failure(f"{command[0]}: command not found", 127) from None
    except PermissionError:
        raise Failure(f"{command[0]}: permission denied", 126) from None

    def forward(signum: int, frame: object) -> None:
        child.send_signal(signum)

    previous = {}
    for name in FORWARDED_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, forward)
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


def cmd_exec(args: argparse.Namespace) -> int:
    command = list(args.command)
    if not command:
        command = [os.environ.get("SHELL") or "/bin/sh"]
    if os.environ.get("VAULTD_PROFILE") and not args.allow_nested:
        raise Failure(
            f"already inside `vaultd exec {os.environ['VAULTD_PROFILE']}`: "
            "exit that shell first, or pass --allow-nested"
        )
    client = _client(args)
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_FOR_CHILD}
    env["VAULTD_PROFILE"] = args.profile
    if args.env:
        doc = _credentials_for(client, args.profile, args.mfa)
        env.update(
            AWS_ACCESS_KEY_ID=doc["AccessKeyId"],
            AWS_SECRET_ACCESS_KEY=doc["SecretAccessKey"],
            AWS_SESSION_TOKEN=doc["Token"],
            AWS_CREDENTIAL_EXPIRATION=doc["Expiration"],
        )
        if doc.get("Region"):
            env.update(AWS_REGION=doc["Region"], AWS_DEFAULT_REGION=doc["Region"])
        return _run_child(command, env)
    body: dict[str, Any] = {"profile": args.profile}
    if args.mfa:
        body["mfa_code"] = args.mfa
    grant = _with_mfa(client, lambda: client.call("POST", "/v1/exec-tokens", body))
    env.update(
        AWS_CONTAINER_CREDENTIALS_FULL_URI=grant["url"],
        AWS_CONTAINER_AUTHORIZATION_TOKEN=grant["token"],
    )
    if grant.get("region"):
        env.update(AWS_REGION=grant["region"], AWS_DEFAULT_REGION=grant["region"])
    try:
        return _run_child(command, env)
    finally:
        with contextlib.suppress(DaemonNotRunning, ControlError):
            client.call("DELETE", f"/v1/exec-tokens/{grant['id']}")


def cmd_export(args: argparse.Namespace) -> int:
    client = _client(args)
    doc = _credentials_for(client, args.profile)
    values = {
        "AWS_ACCESS_KEY_ID": doc["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": doc["SecretAccessKey"],
        "AWS_SESSION_TOKEN": doc["Token"],
        "AWS_CREDENTIAL_EXPIRATION": doc["Expiration"],
    }
    if doc.get("Region"):
        values.update(AWS_REGION=doc["Region"], AWS_DEFAULT_REGION=doc["Region"])
    if args.format == "json":
        # The credential_process format (Version 1), so SDKs can run `vaultd export` directly.
        print(
            json.dumps(
                {
                    "Version": 1,
                    "AccessKeyId": doc["AccessKeyId"],
                    "SecretAccessKey": doc["SecretAccessKey"],
                    "SessionToken": doc["Token"],
                    "Expiration": doc["Expiration"],
                }
            )
        )
    elif args.format == "ini":
        print(f"[{args.profile}]")
        print(f"aws_access_key_id = {doc['AccessKeyId']}")
        print(f"aws_secret_access_key = {doc['SecretAccessKey']}")
        print(f"aws_session_token = {doc['Token']}")
        print(f"aws_credential_expiration = {doc['Expiration']}")
        if doc.get("Region"):
            print(f"region = {doc['Region']}")
    else:
        prefix = "export " if args.format == "export" else ""
        for key, value in values.items():
            print(f"{prefix}{key}={shlex.quote(value)}")
    return EXIT_OK


def _duration(text: str) -> int:
    """`3600`, `90m`, `1h`, `1h30m` -> seconds."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?", text.strip())
    if not text.strip() or match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 3600, 90m or 1h")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if not 900 <= total <= 43200:
        raise argparse.ArgumentTypeError("the console session must last 15 minutes to 12 hours")
    return total


def cmd_login(args: argparse.Namespace) -> int:
    import webbrowser

    from vaultd.core import console

    client = _client(args)
    body: dict[str, Any] = {"duration": args.duration}
    if args.profile:
        body["profile"] = args.profile
    doc = _with_mfa(client, lambda: client.call("POST", "/v1/console-credentials", body))
    region = args.region or doc.get("Region")
    partition = console.partition_of(doc.get("RoleArn") or doc.get("Arn"), region)
    federation = (
        args.federation_url
        or os.environ.get("VAULTD_FEDERATION_URL")
        or console.HOSTS[partition][0]
    )
    # SessionDuration is accepted only for role credentials; federation sets keep their own.
    token = console.signin_token(federation, doc, args.duration if doc.get("IsRole") else None)
    url = console.login_url(federation, token, console.destination(partition, region))
    if args.print or not webbrowser.open(url):
        print(url)
    return EXIT_OK


def cmd_rotate(args: argparse.Namespace) -> int:
    from vaultd.core import config, resolve, rotate
    from vaultd.core.credentials import mask_key_id
    from vaultd.core.keystore import Keystore
    from vaultd.core.provider import Boto3StsFactory

    plan = resolve.plan(config.load_profiles(), args.profile)
    code = args.mfa
    if code is None and plan.mfa_serial is not None:
        if not _tty():
            raise Failure(
                f"rotating needs an MFA code for {plan.mfa_serial}: pass --mfa CODE", EXIT_MFA
            )
        code = _ask_code(f"MFA code for {plan.mfa_serial}: ")
    print(f"Rotating the key of {plan.root!r} (takes a few seconds)...", file=sys.stderr)
    done = rotate.rotate(
        args.profile,
        keystore=Keystore(),
        load_profiles=config.load_profiles,
        clients=Boto3StsFactory().client,
        mfa_code=code,
    )
    with contextlib.suppress(DaemonNotRunning, ControlError):
        _client(args).call("POST", "/v1/clear", {"profile": done.profile})
    print(
        f"Rotated {done.profile} (IAM user {done.user}): {mask_key_id(done.old)} -> "
        f"{mask_key_id(done.new)}; the old key is deleted."
    )
    return EXIT_OK


def cmd_refresh(args: argparse.Namespace) -> int:
    body = {"profile": args.profile} if args.profile else {}
    _print_serving(_client(args).call("POST", "/v1/refresh", body))
    return EXIT_OK


def cmd_clear(args: argparse.Namespace) -> int:
    body = {"profile": args.profile} if args.profile else {}
    try:
        result = _client(args).call("POST", "/v1/clear", body)
        dropped = int(result.get("cleared_sessions", 0))
    except DaemonNotRunning:
        # No daemon holds anything in memory: clearing the keyring is all there is to do.
        from vaultd.core import config
        from vaultd.core.keystore import Keystore
        from vaultd.http.control import sessions_to_clear

        store = Keystore()
        names = sessions_to_clear(store, config.load_profiles, args.profile)
        dropped = sum(store.delete_session(n) for n in names)
    print(f"Cleared {dropped} cached session{'s' if dropped != 1 else ''}.")
    return EXIT_OK


def _print_serving(status: dict[str, Any]) -> None:
    creds = status.get("credentials") or {}
    what = status.get("role_arn") or status.get("active")
    if creds:
        print(f"Serving {status.get('active')} ({what}) until {creds.get('expires')}.")
    else:
        print(f"Active profile {status.get('active')}: {status.get('message')}")


def cmd_status(args: argparse.Namespace) -> int:
    status = _client(args).status()
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
    if creds:
        minutes = int(creds["expires_in"]) // 60
        lines.append(
            f"credentials: {creds['access_key_id']} expires {creds['expires']} "
            f"(in {minutes} min, refresh at {creds['refresh_at']})"
        )
    if status.get("mfa"):
        m = status["mfa"]
        lines.append(
            f"mfa:         waiting for a code for {m['serial']} ({m['profile']}): vaultd mfa CODE"
        )
    if status.get("last_error"):
        err = status["last_error"]
        lines.append(f"last error:  {err['error']} at {err['at']}: {err['message']}")
    if status.get("next_retry"):
        lines.append(f"next retry:  {status['next_retry']}")
    tokens = status.get("exec_tokens") or {}
    if tokens:
        held = ", ".join(f"{name} ({count})" for name, count in sorted(tokens.items()))
        lines.append(f"exec:        {held}")
    for listener in status.get("listeners", []):
        lines.append(f"listening:   {listener}")
    print("\n".join(lines))
    return EXIT_OK


def cmd_env(args: argparse.Namespace) -> int:
    print(f"export AWS_EC2_METADATA_SERVICE_ENDPOINT={_settings(args).endpoint}")
    return EXIT_OK


def _read_token(path: str) -> str:
    try:
        token = open(path, encoding="utf-8").read().strip()  # noqa: SIM115
    except OSError as exc:
        raise Failure(f"cannot read the relay token {path}: {exc.strerror}") from None
    if len(token) < 16 or any(c.isspace() for c in token):
        raise Failure(f"the relay token in {path} must be 16+ characters with no spaces")
    return token


def cmd_relay(args: argparse.Namespace) -> int:
    import asyncio
    import ipaddress
    import logging

    from vaultd.http import relay
    from vaultd.settings import Listen

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s vaultd-relay %(levelname)s %(message)s"
    )
    if not args.allow_cidr:
        raise Failure(
            "name the containers' network with --allow-cidr (e.g. 169.254.169.0/24)", EXIT_USAGE
        )
    try:
        for cidr in args.allow_cidr:
            ipaddress.ip_network(cidr, strict=False)
    except ValueError as exc:
        raise Failure(f"--allow-cidr: {exc}", EXIT_USAGE) from None
    listen = Listen.parse(args.listen)
    if args.upstream:
        if not args.token_file:
            raise Failure("--upstream needs --token-file", EXIT_USAGE)
        fetch = relay.http_fetch(args.upstream, _read_token(args.token_file))
    else:
        fetch = relay.socket_fetch(_settings(args).control_socket)
    try:
        asyncio.run(
            relay.run_relay(fetch, listen.host, listen.port, tuple(args.allow_cidr), args.interval)
        )
    except OSError as exc:
        raise Failure(f"cannot listen on {listen}: {exc.strerror}") from None
    return EXIT_OK


def cmd_service(args: argparse.Namespace) -> int:
    from vaultd.host import service

    plan = service.plan(args.action, socket_activation=args.socket)
    if args.print:
        print(plan.describe())
        return EXIT_OK
    if os.geteuid() == 0 and args.action != "status":
        print("vaultd: note: installing a per-user service as root", file=sys.stderr)
    for directory in plan.mkdir:
        directory.mkdir(parents=True, exist_ok=True)
    for path, text in plan.write.items():
        path.write_text(text)
        print(f"Wrote {path}")
    failed = 0
    for cmd in plan.run:
        try:
            done = subprocess.run(cmd, check=False, timeout=60)
        except FileNotFoundError:
            raise Failure(f"{cmd[0]} not found: is this a systemd or launchd system?") from None
        except subprocess.TimeoutExpired:
            raise Failure(f"{' '.join(cmd)} did not finish within 60 s") from None
        if done.returncode != 0 and args.action != "status":
            failed += 1
            print(
                f"vaultd: `{' '.join(cmd)}` exited with status {done.returncode}", file=sys.stderr
            )
        elif done.returncode != 0:
            return EXIT_ERROR
    for path in plan.remove:
        if path.exists():
            path.unlink()
            print(f"Removed {path}")
    if failed:
        raise Failure(f"service {args.action} did not complete")
    return EXIT_OK


def cmd_network(args: argparse.Namespace) -> int:
    from vaultd.host import network

    port = args.port or _settings(args).listen.port
    change = network.install(port) if args.action == "install" else network.uninstall()
    if args.print:
        print(change.describe())
        return EXIT_OK
    if os.geteuid() != 0:
        raise Failure(
            f"`vaultd network {args.action}` changes the system's network setup and needs root: "
            f"run it with sudo, or see what it does with --print"
        )
    problems = network.apply(change)
    for problem in problems:
        print(f"vaultd: {problem}", file=sys.stderr)
    if problems:
        raise Failure(f"network {args.action} did not complete ({len(problems)} problem(s) above)")
    if args.action == "install":
        print(f"169.254.169.254:80 now reaches 127.0.0.1:{port}. Any process of yours can ask it")
        print("for credentials; vaultd's guards (Host, owner uid) decide who gets them.")
    else:
        print("Removed the 169.254.169.254 alias and redirect.")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from vaultd import doctor

    return doctor.run()


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from vaultd import demo
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise Failure(
            f"the demo needs extras: pip install 'vaultd[demo]' ({exc.name} missing)"
        ) from None
    return demo.run(listen=args.listen)


# -- parser -------------------------------------------------------------------------------
def _socket_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--control-socket",
        metavar="PATH",
        help="control socket (default $XDG_RUNTIME_DIR/vaultd/control.sock; "
        "env VAULTD_CONTROL_SOCKET)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaultd",
        description="Serve AWS role credentials to every SDK on this machine through IMDS.",
    )
    parser.add_argument("--version", action="version", version=f"vaultd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, func: Callable[[argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = command("serve", cmd_serve, "run the daemon (IMDS listener and control socket)")
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="IMDS listener (default 127.0.0.1:9169; env VAULTD_LISTEN)",
    )
    _socket_arg(p)
    p.add_argument(
        "--profile", metavar="NAME", help="profile to serve at start (env VAULTD_PROFILE)"
    )
    p.add_argument(
        "--imds-tokens",
        choices=("optional", "required"),
        help="require IMDSv2 tokens (default optional)",
    )
    p.add_argument(
        "--allow-cidr",
        action="append",
        metavar="CIDR",
        help="also serve peers in CIDR (repeatable)",
    )
    p.add_argument(
        "--allow-uid",
        action="append",
        type=int,
        metavar="UID",
        help="also serve loopback clients owned by UID (repeatable; Linux owner check)",
    )
    p.add_argument(
        "--no-uid-check",
        action="store_true",
        help="DANGEROUS: serve loopback clients of any user (turns off the Linux owner check)",
    )
    p.add_argument(
        "--imds-extended",
        action="store_true",
        help="also serve iam/security-credentials-extended/ (with AccountId)",
    )
    p.add_argument(
        "--relay-token-file",
        metavar="FILE",
        help="let `vaultd relay --upstream` fetch credentials with the token in FILE",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    p = command("add", cmd_add, "store a profile's long-lived access keys in the keyring")
    p.add_argument("profile", metavar="PROFILE")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--env", action="store_true", help="read AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )
    src.add_argument(
        "--stdin", action="store_true", help="read the key id and the secret, one per line"
    )

    p = command("remove", cmd_remove, "delete a profile's stored keys and cached session")
    p.add_argument("profile", metavar="PROFILE")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    p = command("list", cmd_list, "list profiles, stored keys and cached sessions")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _socket_arg(p)

    p = command("switch", cmd_switch, "make PROFILE the one IMDS serves")
    p.add_argument("profile", metavar="PROFILE")
    p.add_argument("--mfa", metavar="CODE", help="MFA code, if the profile needs one")
    _socket_arg(p)

    p = command("mfa", cmd_mfa, "answer the daemon's pending MFA request")
    p.add_argument(
        "code", metavar="CODE", nargs="?", help="six-digit code (asked for when omitted)"
    )
    p.add_argument("--watch", action="store_true", help="keep waiting and ask for each request")
    p.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    _socket_arg(p)

    p = command(
        "exec", cmd_exec, "run a command with PROFILE's credentials, kept fresh by the daemon"
    )
    p.add_argument("profile", metavar="PROFILE")
    p.add_argument("--mfa", metavar="CODE", help="MFA code, if the profile needs one")
    p.add_argument("--env", action="store_true", help="put plain credentials in the environment")
    p.add_argument("--allow-nested", action="store_true", help="allow running inside another exec")
    p.add_argument("command", nargs="*", metavar="-- CMD [ARGS...]", help="default: $SHELL")
    _socket_arg(p)

    p = command("export", cmd_export, "print PROFILE's temporary credentials")
    p.add_argument("profile", metavar="PROFILE")
    p.add_argument("--format", choices=("env", "export", "json", "ini"), default="env")
    _socket_arg(p)

    p = command(
        "rotate", cmd_rotate, "replace PROFILE's root access key (create, verify, store, delete)"
    )
    p.add_argument("profile", metavar="PROFILE")
    p.add_argument("--mfa", metavar="CODE", help="MFA code for the root profile's device")
    _socket_arg(p)

    p = command("login", cmd_login, "open the AWS console as PROFILE (default: the active one)")
    p.add_argument("profile", metavar="PROFILE", nargs="?")
    p.add_argument(
        "--print", action="store_true", help="print the sign-in URL instead of opening it"
    )
    p.add_argument("--duration", type=_duration, default=3600, help="console session, e.g. 1h, 90m")
    p.add_argument("--region", help="open the console in this region")
    p.add_argument("--federation-url", help=argparse.SUPPRESS)
    _socket_arg(p)

    p = command(
        "refresh", cmd_refresh, "fetch new credentials now (the active profile, or PROFILE)"
    )
    p.add_argument("profile", metavar="PROFILE", nargs="?")
    _socket_arg(p)

    p = command("clear", cmd_clear, "drop cached MFA sessions (all, or one profile's)")
    p.add_argument("profile", metavar="PROFILE", nargs="?")
    _socket_arg(p)

    p = command("status", cmd_status, "show the active profile, credentials and pending MFA")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _socket_arg(p)

    p = command("env", cmd_env, "print the export line that points SDKs at vaultd")
    p.add_argument("--listen", metavar="HOST:PORT", help="IMDS listener (default 127.0.0.1:9169)")

    p = command(
        "relay", cmd_relay, "serve IMDS to containers, with credentials from the host's vaultd"
    )
    p.add_argument(
        "--listen",
        default="169.254.169.254:80",
        metavar="HOST:PORT",
        help="default 169.254.169.254:80",
    )
    p.add_argument(
        "--allow-cidr", action="append", metavar="CIDR", help="the containers' network (repeatable)"
    )
    _socket_arg(p)
    p.add_argument("--upstream", metavar="URL", help="the host's vaultd over HTTP (Docker Desktop)")
    p.add_argument("--token-file", metavar="FILE", help="the token for --upstream")
    p.add_argument(
        "--interval", type=float, default=10.0, help="seconds between checks with the host"
    )

    p = command("service", cmd_service, "run vaultd at login (systemd user unit / LaunchAgent)")
    p.add_argument("action", choices=("install", "uninstall", "status"))
    p.add_argument(
        "--print", action="store_true", help="show the files and commands, change nothing"
    )
    p.add_argument("--socket", action="store_true", help="use systemd socket activation")

    p = command(
        "network", cmd_network, "the one root step: answer on 169.254.169.254:80 (see --print)"
    )
    p.add_argument("action", choices=("install", "uninstall"))
    p.add_argument(
        "--print", action="store_true", help="show the files and commands, change nothing"
    )
    p.add_argument("--port", type=int, help="the listener's port (default from --listen settings)")

    command("doctor", cmd_doctor, "check config, keyring, daemon, network and a real fetch")

    p = command("demo", cmd_demo, "run vaultd against an embedded fake AWS (needs vaultd[demo])")
    p.add_argument("--listen", metavar="HOST:PORT", default="127.0.0.1:9169", help="IMDS listener")
    return parser


def _fail(message: str, code: int) -> NoReturn:
    print(f"vaultd: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
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
        if args.func is not cmd_exec:
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
