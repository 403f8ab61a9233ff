"""Commands about stored keys and cached sessions: add, remove, list, rotate, clear.

The keyring, the AWS config and STS are imported inside each command, so the control
commands never pay for them.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import re
import sys
import time
from typing import Any

from vaultd.cli.common import (
    Command,
    client_for,
    code_argument,
    code_from_person,
    has_terminal,
    profile_arg,
    socket_arg,
)
from vaultd.cli.exits import EXIT_OK, Failure
from vaultd.client import ControlError, DaemonNotRunning
from vaultd.documents import STATUS, checked
from vaultd.untrusted import printable, profile_words

KEY_ID = re.compile(r"[A-Z0-9]{16,128}")


def _read_keys(args: argparse.Namespace) -> tuple[str, str]:
    if args.env:
        key_id = os.environ.get("AWS_ACCESS_KEY_ID", "")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        if not key_id or not secret:
            raise Failure("--env needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set")
    elif args.stdin or not sys.stdin.isatty():
        lines = sys.stdin.read().splitlines()
        if len(lines) < 2 and args.stdin:
            raise Failure("--stdin expects the access key id and the secret, one per line")
        if len(lines) < 2:
            # Not a terminal and no --stdin: say every way to give the keys, not just one.
            raise Failure(
                "no terminal to ask for the keys on, and stdin did not hold them: run "
                f"`vaultd add {profile_words(args.profile)}` in a terminal, pipe the access key "
                "id and the secret one per line, or set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY and pass --env"
            )
        key_id, secret = lines[0], lines[1]
    else:
        key_id = input("Access key ID: ")
        secret = getpass.getpass("Secret access key: ")
    key_id, secret = key_id.strip(), secret.strip()
    if not KEY_ID.fullmatch(key_id):
        raise Failure("that does not look like an access key id (AKIA... in capitals and digits)")
    if not secret or any(c.isspace() for c in secret):
        raise Failure("the secret access key is empty or contains spaces")
    return key_id, secret


def cmd_add(args: argparse.Namespace) -> int:
    from vaultd.core import config, resolve
    from vaultd.core.credentials import AccessKeys, mask_key_id
    from vaultd.core.keystore import Keystore
    from vaultd.secret import Secret

    profiles = config.load_profiles()
    profile = profiles.get(args.profile)
    if profile is not None and profile.source_profile:
        raise Failure(
            f"profile {args.profile!r} takes its keys from {profile.source_profile!r}: "
            f"run `vaultd add {profile_words(profile.source_profile)}` instead"
        )
    signin = resolve.signin_root(profile) if profile is not None else None
    if signin is not None:
        raise Failure(signin.no_keys)
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

    store = Keystore()
    # Say that nothing is stored before asking to confirm deleting it.
    stored = store.get_keys(args.profile) is not None
    if not stored and args.profile not in store.profiles_with_sessions():
        raise Failure(f"nothing stored for profile {args.profile!r}")
    if not args.yes:
        if not has_terminal():
            raise Failure("refusing to delete keys without a terminal to confirm on: pass --yes")
        answer = input(f"Delete the stored keys for {args.profile!r}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing deleted.")
            return EXIT_OK
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
        status = checked(client_for(args).status(), STATUS, "status document")
    elsewhere = config.another_file(status.get("config_file"))
    if elsewhere is not None:
        print(f"vaultd: note: {elsewhere}", file=sys.stderr)
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
    # Names and roles come from the config file: escaped, so the table cannot drive the terminal.
    names = {r["name"]: printable(r["name"], None, ascii=False) for r in rows}
    sources = {r["name"]: printable(r["source"], None, ascii=False) for r in rows}
    width = max(len("PROFILE"), *(len(shown) for shown in names.values())) + 2
    # "IAM Identity Center <sso-session>" can be longer than the usual sources.
    src = max(20, *(len(shown) + 2 for shown in sources.values()))
    print(f"  {'PROFILE':<{width}}{'SOURCE':<{src}}{'MFA SESSION':<16}{'EXEC':<6}ROLE")
    for r in rows:
        mark = "*" if r["active"] else " "
        left_text = _left(r["session_left_seconds"]) if r["session_expires"] else "-"
        print(
            f"{mark} {names[r['name']]:<{width}}{sources[r['name']]:<{src}}{left_text:<16}"
            f"{r['exec_tokens'] or '-'!s:<6}{printable(r['role_arn'] or '-', None, ascii=False)}"
        )
    for r in rows:
        if r["problem"]:
            print(printable(f"! {r['name']}: {r['problem']}", None, ascii=False))
    if not status:
        print("(vaultd is not running: no active profile or exec tokens to show)")
    return EXIT_OK


def cmd_rotate(args: argparse.Namespace) -> int:
    from vaultd.core import config, resolve, rotate
    from vaultd.core.credentials import mask_key_id
    from vaultd.core.keystore import Keystore
    from vaultd.core.sts import Boto3StsFactory

    plan = resolve.plan(config.load_profiles(), args.profile)
    code = code_argument(args.mfa)
    if code is None and plan.mfa_serial is not None:
        code = code_from_person(
            f"MFA code for {plan.mfa_serial}: ",
            f"rotating needs an MFA code for {plan.mfa_serial}: pass --mfa CODE (or --mfa -)",
        )
    print(f"Rotating the key of {plan.root!r} (takes a few seconds)...", file=sys.stderr)
    done = rotate.rotate(
        args.profile,
        keystore=Keystore(),
        load_profiles=config.load_profiles,
        clients=Boto3StsFactory().client,
        mfa_code=code,
    )
    with contextlib.suppress(DaemonNotRunning, ControlError):
        client_for(args).call("POST", "/v1/clear", {"profile": done.profile})
    print(
        f"Rotated {done.profile} (IAM user {done.user}): {mask_key_id(done.old)} -> "
        f"{mask_key_id(done.new)}; the old key is deleted."
    )
    return EXIT_OK


def cmd_clear(args: argparse.Namespace) -> int:
    body = {"profile": args.profile} if args.profile else {}
    try:
        result = checked(client_for(args).call("POST", "/v1/clear", body), STATUS, "answer")
        dropped = int(result.get("cleared_sessions", 0))
    except DaemonNotRunning:
        # No daemon holds anything in memory: clearing the keyring is all there is to do.
        from vaultd.core import config
        from vaultd.core.inventory import clear_sessions
        from vaultd.core.keystore import Keystore

        _, dropped = clear_sessions(Keystore(), config.load_profiles, args.profile)
    print(f"Cleared {dropped} cached session{'s' if dropped != 1 else ''}.")
    return EXIT_OK


def _add_args(p: argparse.ArgumentParser) -> None:
    profile_arg(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--env", action="store_true", help="read AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )
    src.add_argument(
        "--stdin", action="store_true", help="read the key id and the secret, one per line"
    )


def _remove_args(p: argparse.ArgumentParser) -> None:
    profile_arg(p)
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")


def _list_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")
    socket_arg(p)


def _rotate_args(p: argparse.ArgumentParser) -> None:
    profile_arg(p)
    p.add_argument(
        "--mfa",
        metavar="CODE",
        help="MFA code for the root profile's device (- reads it from stdin)",
    )
    socket_arg(p)


def _clear_args(p: argparse.ArgumentParser) -> None:
    profile_arg(p, optional=True)
    socket_arg(p)


COMMANDS = (
    Command("add", "store a profile's long-lived access keys in the keyring", cmd_add, _add_args),
    Command(
        "remove", "delete a profile's stored keys and cached session", cmd_remove, _remove_args
    ),
    Command("list", "list profiles, stored keys and cached sessions", cmd_list, _list_args),
    Command(
        "rotate",
        "replace PROFILE's root access key (create, verify, store, delete)",
        cmd_rotate,
        _rotate_args,
    ),
    Command("clear", "drop cached MFA sessions (all, or one profile's)", cmd_clear, _clear_args),
)
