"""The long-running commands: serve (the daemon) and relay (IMDS for containers)."""

from __future__ import annotations

import argparse

from vaultd import settings
from vaultd.cli.common import Command, settings_for, socket_arg
from vaultd.cli.exits import EXIT_USAGE, Failure


def serve_settings(args: argparse.Namespace) -> settings.Settings:
    """Every `serve` flag that was given, over the VAULTD_* variables and the TOML file."""
    try:
        return settings.load(
            listen=args.listen,
            control_socket=args.control_socket,
            profile=args.profile,
            imds_tokens=args.imds_tokens,
            allow_cidrs=args.allow_cidr,
            allow_uids=args.allow_uid,
            uid_check=False if args.no_uid_check else None,
            imds_extended=True if args.imds_extended else None,
            relay_token_file=args.relay_token_file,
            log_level="DEBUG" if args.verbose else None,
            event_loop=args.event_loop,
        )
    except settings.FlagError as exc:
        raise Failure(exc.message, EXIT_USAGE) from None


def cmd_serve(args: argparse.Namespace) -> int:

    from vaultd import daemon

    conf = serve_settings(args)
    daemon.configure_logging(conf.log_level, "vaultd")
    return daemon.serve(conf)


def cmd_relay(args: argparse.Namespace) -> int:
    import ipaddress
    from pathlib import Path

    from vaultd import daemon

    daemon.configure_logging("INFO", "vaultd-relay")
    if not args.allow_cidr:
        raise Failure(
            "name the containers' network with --allow-cidr (e.g. 169.254.169.0/24)", EXIT_USAGE
        )
    try:
        for cidr in args.allow_cidr:
            ipaddress.ip_network(cidr, strict=False)
    except ValueError as exc:
        raise Failure(f"--allow-cidr: {exc}", EXIT_USAGE) from None
    listen = settings.Listen.parse(args.listen)
    if not args.upstream:
        socket = settings_for(args).control_socket
        return daemon.relay(listen, tuple(args.allow_cidr), args.interval, control_socket=socket)
    if not args.token_file:
        raise Failure("--upstream needs --token-file", EXIT_USAGE)
    return daemon.relay(
        listen,
        tuple(args.allow_cidr),
        args.interval,
        upstream=(args.upstream, Path(args.token_file)),
    )


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="IMDS listener (default 127.0.0.1:9169; env VAULTD_LISTEN)",
    )
    socket_arg(p)
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
    p.add_argument(
        "--event-loop",
        choices=settings.EVENT_LOOPS,
        help="the event loop to run on (default auto: uvloop when installed)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _relay_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--listen",
        default="169.254.169.254:80",
        metavar="HOST:PORT",
        help="default 169.254.169.254:80",
    )
    p.add_argument(
        "--allow-cidr", action="append", metavar="CIDR", help="the containers' network (repeatable)"
    )
    socket_arg(p)
    p.add_argument("--upstream", metavar="URL", help="the host's vaultd over HTTP (Docker Desktop)")
    p.add_argument("--token-file", metavar="FILE", help="the token for --upstream")
    p.add_argument(
        "--interval", type=float, default=10.0, help="seconds between checks with the host"
    )


COMMANDS = (
    Command("serve", "run the daemon (IMDS listener and control socket)", cmd_serve, _serve_args),
    Command(
        "relay",
        "serve IMDS to containers, with credentials from the host's vaultd",
        cmd_relay,
        _relay_args,
    ),
)
