"""The command line: exit codes, one-line errors, and a control client that starts light."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keyring
import pytest

from tests.conftest import shared_config
from tests.e2e.harness import run_vaultd
from vaultd.cli import main, split_command
from vaultd.cli.parser import build_parser, parse
from vaultd.core.keystore import Keystore


def test_control_commands_import_no_heavy_modules() -> None:
    code = (
        "import sys, vaultd.cli, vaultd.client\n"
        "heavy = ('boto3', 'botocore', 'aiohttp', 'pydantic', 'keyring')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_no_daemon_is_exit_4_for_every_control_command() -> None:
    for args in (["status"], ["switch", "master"], ["mfa", "123456"], ["status", "--json"]):
        done = run_vaultd(*args)
        assert done.returncode == 4, args
        assert done.stderr.startswith("vaultd: vaultd is not running")
        assert len(done.stderr.strip().splitlines()) == 1


def test_usage_errors_are_exit_2() -> None:
    assert run_vaultd().returncode == 2
    assert run_vaultd("frobnicate").returncode == 2
    assert run_vaultd("serve", "--imds-tokens", "sometimes").returncode == 2
    # `vaultd mfa` with no code and no terminal is exit 3 now, as the README always said:
    # test_messages.test_mfa_without_a_code_or_a_terminal_is_exit_3.


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for name in ("serve", "add", "remove", "list", "switch", "mfa", "status", "env", "demo"):
        assert name in out


def test_env_prints_the_export_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["env"]) == 0
    assert (
        capsys.readouterr().out
        == "export AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9169/\n"
    )
    monkeypatch.setenv("VAULTD_LISTEN", "127.0.0.1:9300")
    assert main(["env"]) == 0
    assert capsys.readouterr().out.strip().endswith("http://127.0.0.1:9300/")


def test_add_list_remove(aws_config: Path) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    done = run_vaultd("add", "identity", "--stdin", stdin=f"AKIAIOSFODNN7EXAMPLE\n{secret}\n")
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout + done.stderr
    keys = Keystore().get_keys("identity")
    assert keys is not None and keys.secret_access_key.reveal() == secret

    listing = json.loads(run_vaultd("list", "--json").stdout)["profiles"]
    rows = {r["name"]: r for r in listing}
    assert rows["identity"]["source"] == "stored keys"
    assert rows["master"]["source"] == "via identity"
    assert rows["master"]["exec_tokens"] == 0
    table = run_vaultd("list").stdout
    assert "identity" in table and secret not in table

    done = run_vaultd("add", "master", "--stdin", stdin=f"AKIAIOSFODNN7EXAMPLE\n{secret}\n")
    assert done.returncode == 1 and "vaultd add identity" in done.stderr

    done = run_vaultd("remove", "identity")  # no terminal, no --yes
    assert done.returncode == 1 and "--yes" in done.stderr
    done = run_vaultd("remove", "identity", "--yes")
    assert done.returncode == 0
    assert keyring.get_password("vaultd", "keys:identity") is None
    done = run_vaultd("remove", "identity", "--yes")
    assert done.returncode == 1 and "nothing stored" in done.stderr


@pytest.mark.parametrize(
    ("stdin", "fragment"),
    [
        ("", "one per line"),
        ("AKIAIOSFODNN7EXAMPLE\n", "one per line"),
        ("not a key\nsecret\n", "access key id"),
        ("AKIAIOSFODNN7EXAMPLE\nhas space\n", "spaces"),
    ],
)
def test_add_rejects_bad_keys(aws_config: Path, stdin: str, fragment: str) -> None:
    done = run_vaultd("add", "identity", "--stdin", stdin=stdin)
    assert done.returncode == 1
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr


def test_add_from_env(aws_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s" * 40)
    assert main(["add", "identity", "--env"]) == 0
    keys = Keystore().get_keys("identity")
    assert keys is not None and keys.access_key_id == "AKIAIOSFODNN7EXAMPLE"


def test_malformed_config_is_one_line(isolated: Path) -> None:
    (isolated / "home" / ".aws" / "config").write_text("[profile x\n")
    done = run_vaultd("list")
    assert done.returncode == 1
    assert "not valid INI" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_network_print_shows_every_file_and_command() -> None:
    done = run_vaultd("network", "install", "--print", "--port", "9300")
    assert done.returncode == 0
    out = done.stdout
    assert "/etc/vaultd/imds-redirect.nft" in out
    assert "redirect to :9300" in out
    assert "ip addr replace 169.254.169.254/32 dev lo" in out
    assert "systemctl enable --now vaultd-network.service" in out
    done = run_vaultd("network", "uninstall", "--print")
    assert "nft delete table ip vaultd" not in done.stdout  # the unit's ExecStop does that
    assert "systemctl disable --now vaultd-network.service" in done.stdout


def test_network_macos_plan() -> None:
    from vaultd.host import network

    change = network.install(9169, platform="darwin")
    text = change.describe()
    assert "rdr pass on lo0 inet proto tcp from any to 169.254.169.254 port 80" in text
    assert "pfctl -a com.apple/vaultd" in text
    assert "ifconfig lo0 alias 169.254.169.254" in text
    undo = network.uninstall(platform="darwin").describe()
    assert "ifconfig lo0 -alias 169.254.169.254" in undo


PROFILE_COMMANDS = ["switch", "refresh", "export", "add", "remove"]


@pytest.mark.parametrize("command", PROFILE_COMMANDS)
def test_a_profile_starting_with_a_dash_follows_a_double_dash(command: str) -> None:
    """A section `[profile -dev]` is a profile like any other: POSIX's `--` ends the options."""
    words, trailing = split_command([command, "--", "-dev"])
    assert parse(words, trailing).profile == "-dev"


@pytest.mark.parametrize(
    ("words", "profile", "command"),
    [
        (["exec", "dev", "--", "git", "log", "--", "f"], "dev", ["git", "log", "--", "f"]),
        (["exec", "--", "-dev", "--", "git", "log", "--", "f"], "-dev", ["git", "log", "--", "f"]),
        (["exec", "--env", "--", "-dev", "--", "true"], "-dev", ["true"]),
        (["exec", "--", "-dev", "--"], "-dev", []),
        (["exec", "--", "-dev"], "-dev", []),
    ],
)
def test_exec_takes_such_a_profile_between_two_double_dashes(
    words: list[str], profile: str, command: list[str]
) -> None:
    args = parse(*split_command(words))
    assert (args.profile, args.command) == (profile, command)


def test_a_double_dash_where_a_command_takes_none_is_a_usage_error() -> None:
    done = run_vaultd("status", "--", "x")
    assert done.returncode == 2
    assert "unrecognized arguments: -- x" in done.stderr


def test_list_columns_stay_apart_with_one_letter_names(isolated: Path) -> None:
    # Before, the PROFILE column was as wide as the longest name plus two, so with names of
    # one letter its header ran into the next: "PROFILESOURCE".
    shared_config(isolated, "[profile a]\nsource_profile = b\n[profile b]\n")
    header = run_vaultd("list").stdout.splitlines()[0].split()
    assert header[:2] == ["PROFILE", "SOURCE"]
