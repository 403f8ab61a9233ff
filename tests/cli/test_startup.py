"""What the control commands load when they run: only their own command group, and none of the
heavy or slow modules. (How long they take is measured by `make bench`, not asserted here.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.harness import vaultd_env
from vaultd import cli

NEVER_FOR_CONTROL = (
    *("boto3", "botocore", "aiohttp", "pydantic", "keyring", "shtab", "importlib.metadata"),
    *("vaultd.cli.keys", "vaultd.cli.run", "vaultd.cli.host", "vaultd.cli.serve"),
    *("vaultd.cli.completion", "getpass", "logging", "tomllib"),
    # What `python -X importtime` showed on the way (issue 14): the settings with their
    # dataclasses (and inspect) and pathlib (with urllib.parse and ipaddress), where codes
    # come from (core.mfa: subprocess, datetime), and typing and contextlib.
    *("vaultd.settings", "dataclasses", "inspect", "pathlib", "urllib", "ipaddress"),
    *("vaultd.core", "subprocess", "datetime", "typing", "contextlib"),
    # argparse and what it loads while it builds a parser: their plain forms are read by
    # vaultd.cli.quick (tests/cli/test_quick.py checks that both read them alike).
    *("argparse", "vaultd.cli.parser", "gettext", "locale", "shutil"),
    # The socket module's enums (vaultd.client uses the C module _socket under it).
    *("socket", "selectors"),
)


# `vaultd ARGS`, then every module loaded, as the interpreter leaves (after main() returned).
PROBE = """\
import atexit, sys
atexit.register(lambda: sys.stderr.write("\\nloaded: " + " ".join(sorted(sys.modules))))
from vaultd.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _imported(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=vaultd_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 4, done.stderr  # not running: the whole way to the socket
    return set(done.stderr.rpartition("\nloaded: ")[2].split())


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["status", "--json"],
        ["switch", "master"],
        ["switch", "master", "--mfa", "123456"],
        ["mfa", "123456"],
    ],
)
def test_control_commands_load_only_their_group(args: list[str]) -> None:
    # No daemon runs: each command still parses, builds its client and tries the socket.
    imported = _imported(*args)
    assert {"vaultd.cli.session", "vaultd.client", "json"} <= imported  # the probe works
    assert sorted(imported & set(NEVER_FOR_CONTROL)) == []


def test_every_group_declares_exactly_the_commands_it_is_listed_for() -> None:
    declared = cli.commands()
    assert list(declared) != [] and set(declared) == set(cli.ORDER)
    for name, command in declared.items():
        assert command.handler.__module__ == f"vaultd.cli.{cli.GROUP_OF[name]}", name
