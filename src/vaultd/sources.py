"""Where vaultd's settings come from, and where its control socket is.

Each setting is taken from the first place that has it: its flag, its VAULTD_* variable, its
key in `~/.config/vaultd/config.toml` (`Sources`); `vaultd.settings` builds every setting on
this rule. The control socket's path (`control_socket`) is resolved here on its own, because
the control commands (`vaultd status`, `switch`, `mfa`) need no other setting and must start
fast (issue 14): this module and everything it imports stay off pathlib, typing, dataclasses
and tomllib (the last one only loads when a config.toml exists). Paths are `str` here;
`settings` makes them `pathlib.Path`.
"""

from __future__ import annotations

import os

from vaultd.errors import ConfigError

# typing costs milliseconds to import and only the type checker needs it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

# The longest Unix socket path in bytes: sun_path is 104 bytes on macOS (108 on Linux),
# with the terminating NUL.
MAX_SOCKET_PATH = 103

# How `default_socket_path` is described to people: the README and every `--control-socket`
# help say it in these words (tests/test_docs.py checks both).
DEFAULT_SOCKET_TEXT = (
    "$XDG_RUNTIME_DIR/vaultd/control.sock, else ~/.local/state/vaultd/control.sock"
)


def default_socket_path(env: Mapping[str, str]) -> str:
    """Where the control socket is when nothing names it: the one rule, for the daemon and
    every client alike.

    1. `$XDG_RUNTIME_DIR/vaultd/control.sock`: the per-user 0700 runtime directory (systemd);
       a relative value is ignored, as the XDG Base Directory specification says.
    2. Else `$XDG_STATE_HOME/vaultd/control.sock` (default `~/.local/state`): inside the
       home directory, where another user cannot create the directory first (macOS,
       containers, cron, some SSH sessions). Not `$TMPDIR`: launchd agents and login
       shells see different values of it on macOS.
    3. Else, when HOME is unset or relative or the path would pass the AF_UNIX limit,
       `/tmp/vaultd-UID/control.sock`. Anyone can create that name first: the daemon then
       refuses to start, and clients refuse to talk to it (`vaultd.client.verify_socket`).
    """
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and runtime.startswith("/"):  # the XDG spec: a relative path is ignored
        return os.path.join(runtime, "vaultd", "control.sock")
    home = env.get("HOME", "")
    state = env.get("XDG_STATE_HOME") or (f"{home}/.local/state" if home else "")
    if state.startswith("/"):
        path = os.path.join(state, "vaultd", "control.sock")
        if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
            return path
    return f"/tmp/vaultd-{os.getuid()}/control.sock"  # noqa: S108


def config_file(env: Mapping[str, str]) -> str:
    """vaultd's own settings file: `$XDG_CONFIG_HOME/vaultd/config.toml` (default
    `~/.config`). It need not exist."""
    base = env.get("XDG_CONFIG_HOME") or os.path.join(
        os.path.expanduser(env.get("HOME", "~")), ".config"
    )
    return os.path.join(base, "vaultd", "config.toml")


def read_toml(path: str) -> dict[str, Any]:
    """The TOML table in `path`, {} when there is no such file; ConfigError naming the file
    when it cannot be read or parsed."""
    try:
        with open(path, "rb") as fh:
            # Imported only when a settings file exists: most users have none, and every
            # control command (status, switch, mfa) reads the settings at start.
            import tomllib  # noqa: PLC0415

            try:
                return tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: {exc}") from None
            except UnicodeDecodeError as exc:  # tomllib decodes the bytes before it parses
                raise ConfigError(
                    f"{path}: not UTF-8 text (byte {exc.start}), which TOML must be"
                ) from None
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


class Sources:
    """One setting's value from the first place that has it: flag, variable, TOML key.
    `path` is the settings file (`config_file`), read once here."""

    def __init__(self, env: Mapping[str, str], path: str) -> None:
        self.env = env
        self.path = path
        self.toml = read_toml(path)

    @classmethod
    def of(cls, env: Mapping[str, str] | None = None) -> Sources:
        """The sources for `env` (default: this process's environment) and its config file."""
        env = os.environ if env is None else env
        return cls(env, config_file(env))

    def raw(self, flag: object, var: str, key: str) -> tuple[object, str] | None:
        """The value and a name for where it came from (for error messages), or None."""
        if flag is not None:
            return flag, "flag"
        if self.env.get(var):
            return self.env[var], var
        if self.toml.get(key) is not None:
            return self.toml[key], f"{self.path}: {key}"
        return None

    def text(self, flag: str | None, var: str, key: str) -> str | None:
        """A setting as text (a TOML boolean as true/false, a number as digits), or None."""
        found = self.raw(flag, var, key)
        if found is None:
            return None
        value = found[0]
        if isinstance(value, bool):
            return "true" if value else "false"
        if not isinstance(value, str | int):
            raise ConfigError(f"{self.path}: {key} must be a string")
        return str(value)

    def items(self, flag: Sequence[object] | None, var: str, key: str) -> tuple[list[str], str]:
        """A list setting's items; a string is split on commas and spaces."""
        found = self.raw(flag, var, key)
        if found is None:
            return [], ""
        value, source = found
        if isinstance(value, str):
            return value.replace(",", " ").split(), source
        if isinstance(value, int) and not isinstance(value, bool):
            return [str(value)], source
        if isinstance(value, list | tuple):  # a TOML true is written true, as in the file
            return [str(v).lower() if isinstance(v, bool) else str(v) for v in value], source
        raise ConfigError(f"{source} must be a list")

    def control_socket(self, flag: str | None = None) -> str:
        """The control socket's path: --control-socket, VAULTD_CONTROL_SOCKET, the
        `control_socket` key, else `default_socket_path`. `~` is expanded, and the path is
        normalised (`os.path.normpath`) so that the daemon and every client name it alike."""
        found = self.raw(flag, "VAULTD_CONTROL_SOCKET", "control_socket")
        text = None
        if found is not None:
            if not isinstance(found[0], str):  # 7 or true is no path
                raise ConfigError(f"{found[1]} must be a string (a path)")
            text = found[0]
            # Relative, each command would find another socket from another directory.
            if not os.path.isabs(os.path.expanduser(text)):
                raise ConfigError(f"{found[1]} must be an absolute path, not {text!r}")
        path = os.path.expanduser(text) if text else default_socket_path(self.env)
        return os.path.normpath(path)


def control_socket(flag: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The control socket's path for a command given `flag` (--control-socket, or None),
    with no other setting read or checked: what `vaultd status`, `switch` and `mfa` use.
    Raises ConfigError when the config file cannot be read or its key is no string."""
    return Sources.of(env).control_socket(flag)
