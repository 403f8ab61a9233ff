"""Commands about this machine: service (run at login), network (the 169.254.169.254 step),
doctor (check everything) and demo (an embedded fake AWS)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

from vaultd.cli.common import Command, settings_for
from vaultd.cli.exits import EXIT_ERROR, EXIT_OK, Failure


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
        returncode = _run_step(cmd, args.action)
        if returncode != 0 and args.action != "status":
            failed += 1
            print(f"vaultd: `{' '.join(cmd)}` exited with status {returncode}", file=sys.stderr)
        elif returncode != 0:
            return EXIT_ERROR
    for path in plan.remove:
        if path.exists():
            path.unlink()
            print(f"Removed {path}")
    if failed:
        raise Failure(f"service {args.action} did not complete")
    return EXIT_OK


# systemd's words when `systemctl --user` finds no user manager to talk to ("Failed to connect
# to bus: No medium found", "Failed to connect to user scope bus via local transport: ...").
NO_USER_BUS = re.compile(r"Failed to connect to (user scope )?bus")
DONE_WORDS = {"install": "installed", "uninstall": "removed", "status": "checked"}


def _run_step(cmd: list[str], action: str) -> int:
    """Run one systemctl/launchctl step of a service plan, its output passed through, and
    return its exit status. A step that cannot reach the user's service manager fails with
    what that means for vaultd and what to do instead of systemd's bare error."""
    try:
        done = subprocess.run(cmd, check=False, timeout=60, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise Failure(f"{cmd[0]} not found: is this a systemd or launchd system?") from None
    except subprocess.TimeoutExpired:
        raise Failure(f"{' '.join(cmd)} did not finish within 60 s") from None
    sys.stderr.write(done.stderr)
    if done.returncode != 0 and NO_USER_BUS.search(done.stderr):
        raise Failure(
            f"`{' '.join(cmd)}` found no systemd user session to talk to (as under su or sudo, "
            f"in a container, or over SSH without a login session), so vaultd's login service "
            f"cannot be {DONE_WORDS.get(action, action)} here: run this from your own login "
            f"session (or keep one with `loginctl enable-linger $USER`), or start the daemon "
            f"with `vaultd serve`"
        )
    return done.returncode


def cmd_network(args: argparse.Namespace) -> int:
    from vaultd.host import network

    port = args.port or settings_for(args).listen.port
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


def _service_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("install", "uninstall", "status"))
    p.add_argument(
        "--print", action="store_true", help="show the files and commands, change nothing"
    )
    p.add_argument("--socket", action="store_true", help="use systemd socket activation")


def _network_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("install", "uninstall"))
    p.add_argument(
        "--print", action="store_true", help="show the files and commands, change nothing"
    )
    p.add_argument("--port", type=int, help="the listener's port (default from --listen settings)")


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="IMDS listener (default 127.0.0.1:9169, or a free port when that is taken)",
    )


COMMANDS = (
    Command(
        "service",
        "run vaultd at login (systemd user unit / LaunchAgent)",
        cmd_service,
        _service_args,
    ),
    Command(
        "network",
        "the one root step: answer on 169.254.169.254:80 (see --print)",
        cmd_network,
        _network_args,
    ),
    Command("doctor", "check config, keyring, daemon, network and a real fetch", cmd_doctor),
    Command(
        "demo",
        "run vaultd against an embedded fake AWS (needs vaultd[demo])",
        cmd_demo,
        _demo_args,
    ),
)
