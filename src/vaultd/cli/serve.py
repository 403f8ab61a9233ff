"""The long-running commands: serve (the daemon) and relay (IMDS for containers)."""

from __future__ import annotations

import argparse
import os
import sys

from vaultd.cli.common import EXIT_OK, EXIT_USAGE, Command, Failure, settings_for, socket_arg


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
    return daemon.serve(settings_for(args), tuple(args.allow_cidr or ()), options)


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
        fetch = relay.socket_fetch(settings_for(args).control_socket)
    try:
        asyncio.run(
            relay.run_relay(fetch, listen.host, listen.port, tuple(args.allow_cidr), args.interval)
        )
    except OSError as exc:
        raise Failure(f"cannot listen on {listen}: {exc.strerror}") from None
    return EXIT_OK


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
