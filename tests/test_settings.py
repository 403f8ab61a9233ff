"""Every `serve` option has a flag, a VAULTD_* variable and a TOML key, read in that order
of precedence, and the README's one Settings table lists them all."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vaultd import daemon, settings, sources
from vaultd.errors import ConfigError
from vaultd.settings import Listen

README = Path(__file__).resolve().parents[1] / "README.md"

# (field, flag keyword and value, variable and text, TOML line, value from each source)
CASES: list[tuple[str, str, Any, str, str, str, tuple[Any, Any, Any]]] = [
    (
        "allow_cidrs",
        "allow_cidrs",
        ["10.9.0.0/16"],
        "VAULTD_ALLOW_CIDR",
        "172.17.0.0/16, 172.18.0.0/16",
        'allow_cidr = ["192.168.5.0/24"]',
        (("10.9.0.0/16",), ("172.17.0.0/16", "172.18.0.0/16"), ("192.168.5.0/24",)),
    ),
    (
        "allow_uids",
        "allow_uids",
        [2001],
        "VAULTD_ALLOW_UID",
        "1001 1002",
        "allow_uid = [3001]",
        ((2001,), (1001, 1002), (3001,)),
    ),
    (
        "uid_check",
        "uid_check",
        False,
        "VAULTD_UID_CHECK",
        "yes",
        "uid_check = false",
        (False, True, False),
    ),
    (
        "imds_extended",
        "imds_extended",
        True,
        "VAULTD_IMDS_EXTENDED",
        "0",
        "imds_extended = true",
        (True, False, True),
    ),
    (
        "relay_token_file",
        "relay_token_file",
        "/flag/token",
        "VAULTD_RELAY_TOKEN_FILE",
        "/env/token",
        'relay_token_file = "/toml/token"',
        (Path("/flag/token"), Path("/env/token"), Path("/toml/token")),
    ),
    (
        "log_level",
        "log_level",
        "DEBUG",
        "VAULTD_LOG_LEVEL",
        "warning",
        'log_level = "error"',
        ("DEBUG", "WARNING", "ERROR"),
    ),
]


def write_toml(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "cfg" / "vaultd" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_RUNTIME_DIR": "/run/user/1"}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_flag_over_variable_over_toml(
    tmp_path: Path, case: tuple[str, str, Any, str, str, str, tuple[Any, Any, Any]]
) -> None:
    field, keyword, flag_value, var, var_text, toml_line, (from_flag, from_var, from_toml) = case
    env = write_toml(tmp_path, toml_line)
    assert getattr(settings.load(env), field) == from_toml
    assert getattr(settings.load({**env, var: var_text}), field) == from_var
    given = settings.load({**env, var: var_text}, **{keyword: flag_value})
    assert getattr(given, field) == from_flag


def test_defaults_when_nothing_is_set(tmp_path: Path) -> None:
    s = settings.load({"HOME": str(tmp_path)})
    assert (s.allow_cidrs, s.allow_uids, s.uid_check, s.imds_extended) == ((), (), True, False)
    assert (s.relay_token_file, s.log_level) == (None, "INFO")


def test_a_bad_value_names_where_it_came_from(tmp_path: Path) -> None:
    env = write_toml(tmp_path, 'allow_cidr = ["10.0.0.0/8"]\nallow_uid = "x"')
    with pytest.raises(settings.FlagError, match=r"^--allow-cidr: "):
        settings.load(env, allow_cidrs=["not-a-network"])
    with pytest.raises(ConfigError, match=r"^VAULTD_ALLOW_CIDR: ") as raised:
        settings.load({**env, "VAULTD_ALLOW_CIDR": "10.0.0.0/33"})
    assert not isinstance(raised.value, settings.FlagError)  # not a usage error: exit 1
    with pytest.raises(ConfigError, match=r"config\.toml: allow_uid: a uid is a whole number"):
        settings.load(env)
    # The bad item itself, as written: not the list it came in, nor a traceback from int().
    for given, named in (("abc", "'abc'"), ("5,abc", "'abc'"), ("1_000", "'1_000'"), ("²", "'²'")):
        with pytest.raises(ConfigError) as bad:
            settings.load({**env, "VAULTD_ALLOW_UID": given})
        assert str(bad.value) == f"VAULTD_ALLOW_UID: a uid is a whole number, not {named}"
    # "-0" would be root's 0; uid_t is 32 bits, and its last value means "no uid".
    for given, problem in (
        ("-0", "a uid is not negative, not '-0'"),
        ("-5", "a uid is not negative, not '-5'"),
        ("4294967295", "a uid is at most 4294967294, not '4294967295'"),
        ("99999999999999999999999", "a uid is at most 4294967294, not '99999999999999999999999'"),
    ):
        with pytest.raises(ConfigError) as bad:
            settings.load({**env, "VAULTD_ALLOW_UID": given})
        assert str(bad.value) == f"VAULTD_ALLOW_UID: {problem}"
    listed = write_toml(tmp_path, "allow_uid = [1000, true]")
    with pytest.raises(ConfigError, match=r"a uid is a whole number, not 'true'$"):
        settings.load(listed)
    with pytest.raises(ConfigError, match="uid_check must be true or false"):
        settings.load({**env, "VAULTD_ALLOW_UID": "5", "VAULTD_UID_CHECK": "perhaps"})
    with pytest.raises(ConfigError, match="event_loop must be one of auto, uvloop, asyncio"):
        settings.load({**env, "VAULTD_ALLOW_UID": "5", "VAULTD_EVENT_LOOP": "trio"})
    assert settings.load({**env, "VAULTD_ALLOW_UID": "5"}).event_loop == "auto"
    chosen = settings.load({**env, "VAULTD_ALLOW_UID": "5", "VAULTD_EVENT_LOOP": "AsyncIO"})
    assert chosen.event_loop == "asyncio"


def test_bad_allow_cidr_flag_is_a_usage_error() -> None:
    # A subprocess with a deadline: were the flag not checked, the daemon would start.
    argv = ["serve", "--listen", "127.0.0.1:0", "--allow-cidr", "10.0.0.0/33"]
    done = subprocess.run(
        [sys.executable, "-m", "vaultd", *argv],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "vaultd: --allow-cidr: '10.0.0.0/33' does not appear to be an IPv4 or IPv6 network\n"
    )


def test_relay_token_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    with pytest.raises(
        ConfigError, match=f"^cannot read the relay token {re.escape(str(token))}: "
    ):
        settings.read_token(token)
    token.write_text("short\n")
    with pytest.raises(ConfigError, match="must be 16\\+ characters with no spaces"):
        settings.read_token(token)
    token.write_text("a-token-long-enough\n")
    assert settings.read_token(token) == "a-token-long-enough"


def test_imds_options_are_built_from_the_settings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = tmp_path / "token"
    token.write_text("a-token-long-enough")
    env = {
        "HOME": str(tmp_path),
        "VAULTD_ALLOW_UID": "4242",
        "VAULTD_UID_CHECK": "false",
        "VAULTD_IMDS_EXTENDED": "true",
        "VAULTD_RELAY_TOKEN_FILE": str(token),
        "VAULTD_IMDS_TOKENS": "required",
    }
    options = daemon.imds_options(settings.load(env))
    # Turned off by the variable, not the flag: the warning names every way to turn it off.
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith("the owner-uid check is off (--no-uid-check, VAULTD_UID_CHECK")
    assert options.allow_uids == {os.getuid(), 4242}
    assert (options.uid_check, options.serve_extended, options.tokens_required) == (
        False,
        True,
        True,
    )
    assert options.relay_token == "a-token-long-enough"
    defaults = daemon.imds_options(settings.load({"HOME": str(tmp_path)}))
    assert (defaults.relay_token, defaults.serve_extended, defaults.tokens_required) == (
        None,
        False,
        False,
    )


def settings_table() -> list[list[str]]:
    text = README.read_text()
    section = text[text.index("\n## Settings") :]
    section = section[: section.find("\n## ", 1)] if "\n## " in section[1:] else section
    rows = [line for line in section.splitlines() if line.startswith("|")]
    # Cells are split on unescaped bars (`optional\|required` is one cell).
    return [[c.strip() for c in re.split(r"(?<!\\)\|", row.strip("|"))] for row in rows[2:]]


def test_the_readme_documents_every_setting_once() -> None:
    # Every setting is read in settings.py, the control socket in sources.py.
    source = Path(settings.__file__).read_text() + Path(sources.__file__).read_text()
    variables = set(re.findall(r'"(VAULTD_[A-Z_]+)"', source))
    keys = set(re.findall(r'"VAULTD_[A-Z_]+", "([a-z_]+)"', source))
    rows = settings_table()
    documented_vars = [v for row in rows for v in re.findall(r"VAULTD_[A-Z_]+", row[1])]
    documented_keys = [k for row in rows for k in re.findall(r"`([a-z_]+)(?: = \w+)?`", row[2])]
    assert sorted(documented_vars) == sorted(variables)  # each once, none missing
    assert sorted(documented_keys) == sorted(keys)
    parser_flags = {"--listen", "--control-socket", "--profile", "--imds-tokens", "--allow-cidr"}
    parser_flags |= {"--allow-uid", "--no-uid-check", "--imds-extended", "--relay-token-file"}
    parser_flags |= {"--event-loop"}
    documented_flags = {f for row in rows for f in re.findall(r"--[a-z-]+", row[0])}
    assert parser_flags <= documented_flags


def test_the_control_socket_is_a_string_and_a_relative_runtime_dir_is_ignored(
    tmp_path: Path,
) -> None:
    for value in ("7", "true"):
        env = write_toml(tmp_path, f"control_socket = {value}")
        with pytest.raises(ConfigError, match=r"config\.toml: control_socket must be a string"):
            sources.control_socket(None, env)
    for value in ('""', '"run/vaultd.sock"'):  # each command would find its own socket
        env = write_toml(tmp_path, f"control_socket = {value}")
        with pytest.raises(ConfigError, match=r"control_socket must be an absolute path"):
            sources.control_socket(None, env)
    env = {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": "run/relative"}
    assert sources.control_socket(None, env) == str(
        tmp_path / ".local" / "state" / "vaultd" / "control.sock"
    )


@pytest.mark.parametrize(
    "text",
    [
        *("$(id):1", "`id`:1", "(id):1", "a b:1", "it's:1", "h/e:1", "u@h:1", "-a:1"),
        *("[::1%$(id)]:1", "[::1%]:1", "bücher.example:1", "a" * 64 + ".example:1"),
        "my_host:1",  # botocore refuses the endpoint it would make (is_valid_endpoint_url)
    ],
)
def test_a_listen_host_is_an_ip_address_or_a_host_name(text: str) -> None:
    with pytest.raises(ConfigError, match="is not an IP address or a host name"):
        Listen.parse(text)


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("localhost:9169", "localhost"),
        ("my-host.local.:80", "my-host.local."),
        ("127.1:1", "127.1"),
        ("0x7f000001:1", "0x7f000001"),
        ("[::1]:9169", "::1"),
        ("[fe80::1%eth0]:1", "fe80::1%eth0"),
        ("xn--bcher-kva.example:1", "xn--bcher-kva.example"),
        (("a" * 63 + ".") * 3 + "a" * 61 + ".:1", ("a" * 63 + ".") * 3 + "a" * 61 + "."),
        ("9169", "127.0.0.1"),
    ],
)
def test_listen_hosts_that_bind(text: str, host: str) -> None:
    assert Listen.parse(text).host == host
