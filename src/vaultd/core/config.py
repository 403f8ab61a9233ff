"""Reading ~/.aws/config (or AWS_CONFIG_FILE) into typed profiles.

The file is read by botocore's own loader (`botocore.configloader.load_config`), which is
the definition of the format: section names are split the shell's way (`[profile 'Foo
Bar']` is the profile `Foo Bar`), a section or key given twice makes the file unreadable,
values are kept whole (`region = eu-west-1  # Ireland` is not `eu-west-1`), and `[DEFAULT]`
applies to every section. vaultd adds only aws-vault's extra keys and checks each value
against what AWS accepts (`core.rules`). `[default]` is a profile like any other: nothing is
silently inherited from it.
"""

from __future__ import annotations

import ast
import configparser
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.configloader
import botocore.exceptions

from vaultd.core import rules
from vaultd.errors import ConfigError, UnknownProfile
from vaultd.untrusted import printable

KNOWN_KEYS = (
    "source_profile",
    "role_arn",
    "mfa_serial",
    "external_id",
    "role_session_name",
    "duration_seconds",
    "region",
    "sts_regional_endpoints",
    "mfa_process",
    "mfa_ykman",
    "credential_process",
    # IAM Identity Center (the sso-session form and the legacy form) and `aws login`.
    "sso_session",
    "sso_start_url",
    "sso_region",
    "sso_account_id",
    "sso_role_name",
    "login_session",
)


# A plain frozen dataclass, not a validating model: every value is checked by `rules` before
# a Profile is made (`to_profile`), and a validation library here cost the daemon several
# MiB of resident memory (its compiled core and modules) for two conversions (`CONVERT`).
@dataclass(frozen=True, kw_only=True)
class Profile:
    """One profile's keys that vaultd gives meaning to, each already checked by `rules`."""

    name: str
    source_profile: str | None = None
    role_arn: str | None = None
    mfa_serial: str | None = None
    external_id: str | None = None
    role_session_name: str | None = None
    duration_seconds: int | None = None
    region: str | None = None
    sts_regional_endpoints: str | None = None
    mfa_process: str | None = None
    mfa_ykman: bool | None = None
    credential_process: str | None = None
    sso_session: str | None = None
    sso_start_url: str | None = None
    sso_region: str | None = None
    sso_account_id: str | None = None
    sso_role_name: str | None = None
    login_session: str | None = None

    @property
    def role_name(self) -> str:
        """What IMDS lists as the instance's role: the role's name, or a name made from the
        profile's that SDKs can request back (`rules.imds_role_name`)."""
        if self.role_arn:
            return self.role_arn.rsplit("/", 1)[-1]
        return rules.imds_role_name(self.name)


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("AWS_CONFIG_FILE"):
        return Path(env["AWS_CONFIG_FILE"]).expanduser()
    return Path(env.get("HOME", "~")).expanduser() / ".aws" / "config"


# How much of each offending line an INI error shows, and of how many lines.
SHOWN_CHARS = 60
SHOWN_LINES = 3


def _bad_lines(cause: configparser.ParsingError) -> list[tuple[int, str]]:
    """The (line number, line) pairs configparser refused, each line as it was read."""
    if isinstance(cause, configparser.MissingSectionHeaderError):
        return [(cause.lineno, cause.line)]
    if sys.version_info < (3, 13):
        # configparser keeps the repr of each line before 3.13, the line itself since.
        return [(lineno, str(ast.literal_eval(text))) for lineno, text in cause.errors]
    return list(cause.errors)


def _quoted(line: str) -> str:
    """A refused line as an error shows it: quoted, escaped, cut at SHOWN_CHARS."""
    return "'" + printable(line.rstrip("\r\n"), SHOWN_CHARS, ascii=False) + "'"


def _not_ini(source: str, cause: configparser.ParsingError) -> ConfigError:
    """`SOURCE line N is not valid INI: 'LINE'`, showing at most SHOWN_LINES lines."""
    found = _bad_lines(cause)
    numbers = ", ".join(str(lineno) for lineno, _ in found[:SHOWN_LINES])
    if len(found) > SHOWN_LINES:
        numbers += f" and {len(found) - SHOWN_LINES} more"
    where = f"line {numbers} is" if len(found) == 1 else f"lines {numbers} are"
    shown = ", ".join(_quoted(line) for _, line in found[:SHOWN_LINES])
    if isinstance(cause, configparser.MissingSectionHeaderError):
        shown += " (before any [section])"
    return ConfigError(f"{source} {where} not valid INI: {shown}")


def unreadable(source: str, exc: botocore.exceptions.ConfigParseError) -> ConfigError:
    """Why botocore could not read the INI file `source`, in one line naming the file and,
    where configparser says, the section and the line(s). The daemon, the command line and
    `vaultd doctor` (`chain.read_shared_files`) all say it this way."""
    cause = exc.kwargs.get("error")
    path = exc.kwargs.get("path")
    if isinstance(cause, configparser.DuplicateSectionError | configparser.DuplicateOptionError):
        # configparser stops at the first duplicate, before it reports the lines it could
        # not read; an unclosed `[profile x` is such a line, and it makes the keys after it
        # duplicates of the section before. The unreadable line is the one to fix.
        hidden = _unread_lines(str(path)) if path else None
        if hidden is not None:
            return _not_ini(source, hidden)
    if isinstance(cause, configparser.DuplicateSectionError):
        return ConfigError(
            f"{source}: section [{cause.section}] appears twice (line {cause.lineno}); "
            "botocore and the AWS CLI refuse the file: merge or delete one of them"
        )
    if isinstance(cause, configparser.DuplicateOptionError):
        return ConfigError(
            f"{source}: key {cause.option!r} appears twice in section [{cause.section}] "
            f"(line {cause.lineno}); botocore and the AWS CLI refuse the file"
        )
    if isinstance(cause, configparser.ParsingError):
        return _not_ini(source, cause)
    where = _where(str(path), cause) if path and isinstance(cause, ValueError) else None
    if where is not None:
        return ConfigError(f"{source} {where}")
    detail = str(cause).splitlines()[0] if cause is not None else "unreadable"
    return ConfigError(f"{source} is not valid INI: {detail}")


def _unread_lines(path: str) -> configparser.ParsingError | None:
    """The lines of the file at `path` that configparser cannot read, found by reading it
    past duplicates (strict=False), or None when there are none (or it cannot be read)."""
    try:
        configparser.RawConfigParser(strict=False).read_string(
            Path(path).read_text(encoding="utf-8")
        )
    except configparser.ParsingError as exc:
        return exc
    except (OSError, ValueError, configparser.Error):
        return None
    return None


def _where(path: str, cause: ValueError) -> str | None:
    """Where in the file at `path` botocore's ValueError `cause` comes from, said as the
    rest of a sentence about the file, or None when it cannot be found (the file changed
    since). Only read when botocore has already refused the file: configparser says
    neither the line of a byte that is not UTF-8 (a decode error counts within a buffer)
    nor the key of a nested block botocore cannot split (`_parse_nested`)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if isinstance(cause, UnicodeDecodeError):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            return f"line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x})"
        return None
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(data.decode("utf-8"))
    except (configparser.Error, UnicodeDecodeError):
        return None
    for section in parser.sections():
        for key, value in parser.items(section):
            lines = [line for line in value.splitlines() if line.strip()]
            stray = [line for line in lines if "=" not in line]
            if not value.startswith("\n") or not stray:
                continue
            where = (
                f"[{printable(section, SHOWN_CHARS, ascii=False)}] "
                f"{printable(key, SHOWN_CHARS, ascii=False)}"
            )
            if len(stray) < len(lines):  # a block of `name = value` lines, one astray
                return f"{where}: {_quoted(stray[0])} in its block is not `name = value`"
            return (
                f"{where}: the value is on the lines after `key =`, which botocore reads as "
                "a block of `name = value` lines: put it on the key's own line"
            )
    return None


# What a path that is not a regular file is, as `present` names it (os.stat's mode).
KINDS: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_a_file(source: str, mode: int) -> ConfigError:
    kind = next((name for test, name in KINDS if test(mode)), "not a regular file")
    if kind == "a directory":
        return ConfigError(f"cannot read {source}: is a directory")
    return ConfigError(f"cannot read {source}: is {kind}, not a regular file")


def _dangling(path: Path) -> str:
    """Why a symlink that names nothing cannot be read, with what it names."""
    try:
        return f"is a symlink to a missing file ({os.readlink(path)})"
    except OSError:
        return "is a symlink to a missing file"


def present(path: Path, source: str | None = None) -> bool:
    """Whether the shared file at `path` is there to read: False when the path has no
    directory entry at all (botocore's ConfigNotFound: no profiles), True when it is a
    regular file this process can open.

    Raises ConfigError `cannot read SOURCE: REASON` (one line) for anything else at the
    path: a file it may not open (Permission denied), a directory, a symlink to a missing
    file, a symlink loop (Too many levels of symbolic links), a FIFO, a device or a socket.
    botocore (`configloader.raw_config_parse`) reads each of these as no file at all
    (`os.path.isfile`) or, for a file it cannot open, as an empty one (configparser's
    `read` skips it silently), so a mistake in the path looked like a config with no
    profiles. This is the one rule for every reader of the shared files: the daemon and
    the command line (`read_profile_map`) and `vaultd doctor` (`chain.read_shared_files`).
    """
    source = source or str(path)
    try:
        entry = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:  # a path component that is a file, or one not searchable
        raise ConfigError(f"cannot read {source}: {exc.strerror}") from None
    try:
        # stat before open: opening a device can act on it, and a FIFO blocks until a writer.
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise _not_a_file(source, mode)
        # O_NONBLOCK: should a FIFO replace the file since the stat, open() does not wait.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        if not stat.S_ISLNK(entry.st_mode):
            return False  # removed since the lstat: now absent
        raise ConfigError(f"cannot read {source}: {_dangling(path)}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
    finally:
        os.close(fd)
    if not stat.S_ISREG(mode):
        raise _not_a_file(source, mode)
    return True


def another_file(daemon_file: str | None, path: Path | None = None) -> str | None:
    """What to tell a person when the running daemon reads another shared config file
    (`daemon_file`, the `config_file` of its status) than this process does (`path`, by
    default `config_path()`): `list` and `doctor` read this one, while `switch` and `exec`
    go by the daemon's, so a profile listed here may be unknown there (a daemon started by
    the service manager, a shell with its own AWS_CONFIG_FILE). None when both are the one
    file (the same path, or links to one file) or the daemon did not say."""
    if not daemon_file:
        return None
    path = config_path() if path is None else path
    theirs = Path(daemon_file)
    try:
        if os.path.samefile(path, theirs):
            return None
    except OSError:  # one of them is missing: the same only if named the same
        if os.path.abspath(path) == os.path.abspath(theirs):
            return None
    return (
        f"the daemon reads {printable(daemon_file, None, ascii=False)}, this shell "
        f"{printable(str(path), None, ascii=False)}: "
        "switch and exec go by the daemon's (set AWS_CONFIG_FILE alike for both)"
    )


def read_profile_map(path: Path, source: str | None = None) -> dict[str, dict[str, Any]]:
    """botocore's view of the file: profile name -> its keys, exactly as botocore reads it.

    Raises ConfigError (one line) when botocore cannot read the file, or when there is
    something at the path that is not a file this process can read (`present`). Only a
    path with no directory entry at all has no profiles, as for botocore.
    """
    source = source or str(path)
    return _profile_map(path, source) if present(path, source) else {}


def _profile_map(path: Path, source: str) -> dict[str, dict[str, Any]]:
    """`read_profile_map` once `present` has found a file to read. (configparser skips a
    file it cannot open rather than raise: `present` has said why already.)"""
    try:
        loaded = botocore.configloader.load_config(str(path))
    except botocore.exceptions.ConfigNotFound:
        return {}  # removed since `present` looked
    except botocore.exceptions.ConfigParseError as exc:
        raise unreadable(source, exc) from None
    return dict(loaded.get("profiles", {}))


# The keys whose values are not text, converted once `rules` has accepted the text.
CONVERT: dict[str, Callable[[str], Any]] = {
    "duration_seconds": int,
    "mfa_ykman": rules.is_true,
}


def to_profile(name: str, keys: Mapping[str, Any], source: str = "config") -> Profile:
    """The keys vaultd reads from one profile, each checked against `rules`; the first bad
    value raises ConfigError naming the profile, the key and the value."""
    values: dict[str, Any] = {}
    for key in KNOWN_KEYS:
        raw = keys.get(key)
        if isinstance(raw, dict):
            raise ConfigError(f"{source}: profile {name!r}: {key} must be one value, not a block")
        if raw is None or not str(raw).strip():
            continue
        value = str(raw).strip()
        wrong = rules.problem(key, value)
        if wrong is not None:
            raise ConfigError(f"{source}: profile {name!r}: {key} {wrong} (got {value!r})")
        values[key] = CONVERT.get(key, str)(value)
    return Profile(name=name, **values)


class Profiles(Mapping[str, Profile]):
    """The config's profiles by name, each checked against `rules` only when looked up.

    A wrong value in one profile makes only that profile unusable: looking it up (directly,
    or as a link of another profile's source_profile chain) raises its one-line
    ConfigError, while every other profile works. This is how botocore and the AWS CLI
    behave: `AWS_PROFILE=master aws ...` never reads the keys of an unrelated profile.
    Listing names (`iter`, `len`, `in`) checks nothing; `problems()` checks every profile.
    `source` names the file they came from, and `absent` says there was none (`present`).
    """

    def __init__(
        self, raw: Mapping[str, Mapping[str, Any]], source: str, *, absent: bool = False
    ) -> None:
        self._raw = dict(raw)
        self.source = source
        self._checked: dict[str, Profile] = {}
        self.absent = absent

    def __getitem__(self, name: str) -> Profile:
        if name not in self._checked:
            self._checked[name] = to_profile(name, self._raw[name], self.source)
        return self._checked[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def problems(self) -> dict[str, str]:
        """Profile name -> the one-line ConfigError message, for every unusable profile."""
        found: dict[str, str] = {}
        for name in self._raw:
            try:
                self[name]
            except ConfigError as exc:
                found[name] = exc.message
        return found

    def usable(self) -> dict[str, Profile]:
        """Every profile whose values are all accepted, keyed by name."""
        bad = self.problems()
        return {name: self[name] for name in self._raw if name not in bad}


def load_profiles(path: Path | None = None, source: str | None = None) -> Profiles:
    """The profiles in the config file (default: `config_path()`), keyed by name.

    Raises ConfigError (one line) only when the file cannot be read at all (`present`,
    `read_profile_map`); a wrong value is raised when its profile is looked up (`Profiles`).
    """
    path = config_path() if path is None else path
    source = source or str(path)
    if not present(path, source):
        return Profiles({}, source, absent=True)
    return Profiles(_profile_map(path, source), source)


def parse_profiles(text: str, source: str = "config") -> Profiles:
    """`load_profiles` for a config given as text (botocore's loader reads only files)."""
    with tempfile.TemporaryDirectory(prefix="vaultd-config-") as tmp:
        path = Path(tmp) / "config"
        path.write_text(text, encoding="utf-8")
        return load_profiles(path, source)


def get_profile(profiles: Mapping[str, Profile], name: str, path: Path | None = None) -> Profile:
    """`profiles[name]`. Raises UnknownProfile naming the file and the profiles it has, or
    saying the file does not exist: "profiles: none" alone hid a mistyped AWS_CONFIG_FILE.
    """
    try:
        return profiles[name]
    except KeyError:
        loaded = profiles if isinstance(profiles, Profiles) else None
        where = path or (loaded.source if loaded is not None else config_path())
        if loaded is not None and loaded.absent:
            raise UnknownProfile(f"no profile {name!r}: {where} does not exist") from None
        known = ", ".join(sorted(profiles)) or "none"
        raise UnknownProfile(f"no profile {name!r} in {where} (profiles: {known})") from None
