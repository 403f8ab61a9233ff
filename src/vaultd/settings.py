"""vaultd's own settings: flags > VAULTD_* environment > ~/.config/vaultd/config.toml > defaults.

Every option of `vaultd serve` is a field of `Settings`, and each has a flag, a VAULTD_*
variable and a TOML key (the README's "Settings" table lists them). Lists (allowed CIDRs and
uids) are a TOML array, or comma- or space-separated in the variable; booleans are
true/false, 1/0, yes/no or on/off.

Standard library only, and kept apart from the AWS config reader in `core`. Where each
value comes from (flag, variable, TOML key) and where the control socket is live in
`vaultd.sources`: the control commands read only that, never this module, so that
`vaultd status` pays for neither dataclasses nor pathlib (issue 14).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vaultd.errors import ConfigError
from vaultd.sources import Sources

DEFAULT_PORT = 9169
DEFAULT_HOST = "127.0.0.1"
TokenMode = Literal["optional", "required"]

# The event loops `serve` can run on (vaultd.host.event_loop): "auto" is uvloop when installed.
EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def event_loop_named(word: str) -> str:
    """`word` when it is one of `EVENT_LOOPS`, exactly; raises ConfigError otherwise."""
    if word not in EVENT_LOOPS:
        raise ConfigError(f"event_loop must be one of {', '.join(EVENT_LOOPS)}, not {word!r}")
    return word


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Listen:
        """`HOST:PORT`, `[V6]:PORT` or a bare `PORT`."""
        host, sep, port_text = text.strip().rpartition(":")
        if not sep:
            host, port_text = DEFAULT_HOST, text.strip()
        host = host.strip("[]") or DEFAULT_HOST
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigError(f"listen address {text!r} is not HOST:PORT") from None
        if not 0 <= port <= 65535:
            raise ConfigError(f"listen port {port} is out of range 0-65535")
        if not _is_host(host):
            raise ConfigError(
                f"listen host {host!r} is not an IP address or a host name (letters, digits, "
                "'-' and '.')"
            )
        return cls(host, port)


# A host name as RFC 1123 §2.1 allows it: labels of letters, digits and '-', neither first
# nor last, up to 63 characters, parted by '.'. Not '_': botocore refuses an IMDS endpoint
# that has one (`is_valid_endpoint_url`). IPv4 in every numeric form getaddrinfo takes
# (127.1, 0x7f000001) is such a name as well. An internationalised name is given in its
# ASCII form (xn--...).
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")
# An IPv6 zone: an interface name or index (RFC 6874 allows more; no interface has more).
_ZONE = re.compile(r"[A-Za-z0-9_.-]+")


def _is_host(host: str) -> bool:
    """Whether `host` is an IP address or a host name, and nothing else: it is put into the
    URL SDKs are given and into the shell line `vaultd env` prints, so a listen address
    from a variable or config.toml must not carry shell or URL syntax."""
    if ":" not in host:
        return len(host.removesuffix(".")) <= 253 and _HOST_NAME.fullmatch(host) is not None
    import ipaddress  # noqa: PLC0415 - kept off the control commands' start-up path

    address, percent, zone = host.partition("%")
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return not percent or _ZONE.fullmatch(zone) is not None


@dataclass(frozen=True)
class Settings:
    listen: Listen
    control_socket: Path
    profile: str | None
    imds_tokens: TokenMode
    # How long a cached MFA session (GetSessionToken) lasts.
    session_duration: int = 12 * 3600
    # Ask a YubiKey (ykman) for codes for every profile with an MFA device.
    mfa_ykman: bool = False
    # Desktop notifications when a code is needed.
    notify: bool = True
    # Also serve peers in these networks (containers, other hosts): no owner check for them.
    allow_cidrs: tuple[str, ...] = ()
    # Also serve loopback clients owned by these uids (the daemon's own uid always).
    allow_uids: tuple[int, ...] = ()
    # Linux: serve loopback clients only when their socket belongs to an allowed uid.
    uid_check: bool = True
    # Also serve iam/security-credentials-extended/ (the document with AccountId).
    imds_extended: bool = False
    # `vaultd relay --upstream` may fetch credentials with the token in this file.
    relay_token_file: Path | None = None
    # The daemon's log level (a `logging` level name).
    log_level: str = "INFO"
    # The daemon's event loop (`EVENT_LOOPS`): uvloop when installed, unless asked otherwise.
    event_loop: str = "auto"

    @property
    def endpoint(self) -> str:
        """The IMDS base URL handed out for this listen address (`sdk_url`)."""
        return sdk_url(self.listen)


def sdk_url(listen: Listen) -> str:
    """The IMDS base URL SDKs should use for a listener on `listen` (`vaultd env`, the
    daemon's status `endpoint`, exec's container URI): always a host the SDKs accept there.
    A numeric host is named as the socket binds it (`0` is 0.0.0.0, `127.1` is 127.0.0.1;
    getaddrinfo's numeric forms, which asyncio binds with), and an unspecified address
    (0.0.0.0, ::) is not one (boto3: "Unsupported host '::'"), so its own family's loopback
    is named instead: 127.0.0.1, or ::1 (asyncio binds :: as IPv6 only)."""
    # The trailing slash matters: Debian's AWS CLI v2 glues the path on without one.
    host = loopback_for(listen.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{listen.port}/"


def loopback_for(host: str) -> str:
    """`host` as the listener binds it, or the loopback address of its family when it is
    unspecified (any address). A name (localhost) stays as it is."""
    if host == "":
        return "127.0.0.1"
    import ipaddress  # noqa: PLC0415 - kept off the control commands' start-up path

    try:
        bound = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)[0][4][0]
        address = ipaddress.ip_address(bound)
    except (socket.gaierror, ValueError, IndexError):
        return host  # a name, e.g. localhost
    if not address.is_unspecified:
        return str(address)
    return "::1" if address.version == 6 else "127.0.0.1"


class FlagError(ConfigError):
    """A flag's value is wrong: the command line's usage error (exit status 2)."""

    code = "usage_error"


def read_token(path: Path) -> str:
    """The relay token in `path`: 16+ characters with no whitespace; ConfigError otherwise."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the relay token {path}: {exc.strerror}") from None
    if len(token) < 16 or any(c.isspace() for c in token):
        raise ConfigError(f"the relay token in {path} must be 16+ characters with no spaces")
    return token


def _flag(value: str | None, name: str, *, default: bool) -> bool:
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}")


def _cidrs(items: list[str], source: str) -> tuple[str, ...]:
    import ipaddress  # noqa: PLC0415 - kept off the control commands' start-up path

    for cidr in items:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            if source == "flag":
                raise FlagError(f"--allow-cidr: {exc}") from None
            raise ConfigError(f"{source}: {exc}") from None
    return tuple(items)


# uid_t is 32 bits and (uid_t)-1 means "no change" to setuid(2) and chown(2).
MAX_UID = 2**32 - 2


def _uids(items: list[str], source: str) -> tuple[int, ...]:
    for item in items:
        text = item.strip()
        if text.startswith("-"):  # "-0" too: int() would make it root's 0
            raise ConfigError(f"{source}: a uid is not negative, not {item!r}")
        # int() would also take "1_000" and full-width digits: a uid is written in ASCII ones
        if not re.fullmatch(r"[0-9]+", text):
            raise ConfigError(f"{source}: a uid is a whole number, not {item!r}")
        if int(text) > MAX_UID:
            raise ConfigError(f"{source}: a uid is at most {MAX_UID}, not {item!r}")
    return tuple(int(uid) for uid in items)


def load(
    env: Mapping[str, str] | None = None,
    *,
    listen: str | None = None,
    control_socket: str | None = None,
    profile: str | None = None,
    imds_tokens: str | None = None,
    allow_cidrs: Sequence[str] | None = None,
    allow_uids: Sequence[int] | None = None,
    uid_check: bool | None = None,
    imds_extended: bool | None = None,
    relay_token_file: str | None = None,
    log_level: str | None = None,
    event_loop: str | None = None,
) -> Settings:
    """The settings, each from its flag (a keyword here, None when not given), else its
    VAULTD_* variable, else its key in the TOML file, else the default. Raises ConfigError
    naming the setting (FlagError when a flag's value is wrong)."""
    src = Sources.of(env)
    pick = src.text

    listen_text = pick(listen, "VAULTD_LISTEN", "listen")
    tokens = pick(imds_tokens, "VAULTD_IMDS_TOKENS", "imds_tokens") or "optional"
    if tokens not in ("optional", "required"):
        raise ConfigError(f"imds_tokens must be 'optional' or 'required', not {tokens!r}")
    hours = pick(None, "VAULTD_SESSION_HOURS", "session_hours")
    try:
        session_duration = int(float(hours) * 3600) if hours else 12 * 3600
    except ValueError:
        raise ConfigError(f"session_hours must be a number, not {hours!r}") from None
    if not 900 <= session_duration <= 129600:
        raise ConfigError("session_hours must be between 0.25 and 36 (STS's limits)")
    token_file = pick(relay_token_file, "VAULTD_RELAY_TOKEN_FILE", "relay_token_file")
    loop = event_loop_named(
        (pick(event_loop, "VAULTD_EVENT_LOOP", "event_loop") or "auto").strip().lower()
    )

    def flag(value: bool | None, var: str, key: str, *, default: bool) -> bool:
        text = pick(None if value is None else str(value).lower(), var, key)
        return _flag(text, key, default=default)

    return Settings(
        mfa_ykman=flag(None, "VAULTD_MFA_YKMAN", "mfa_ykman", default=False),
        notify=flag(None, "VAULTD_NOTIFY", "notify", default=True),
        listen=Listen.parse(listen_text) if listen_text else Listen(DEFAULT_HOST, DEFAULT_PORT),
        control_socket=Path(src.control_socket(control_socket)),
        profile=pick(profile, "VAULTD_PROFILE", "profile"),
        imds_tokens="required" if tokens == "required" else "optional",
        session_duration=session_duration,
        allow_cidrs=_cidrs(*src.items(allow_cidrs, "VAULTD_ALLOW_CIDR", "allow_cidr")),
        allow_uids=_uids(*src.items(allow_uids, "VAULTD_ALLOW_UID", "allow_uid")),
        uid_check=flag(uid_check, "VAULTD_UID_CHECK", "uid_check", default=True),
        imds_extended=flag(imds_extended, "VAULTD_IMDS_EXTENDED", "imds_extended", default=False),
        relay_token_file=Path(token_file).expanduser() if token_file else None,
        log_level=(pick(log_level, "VAULTD_LOG_LEVEL", "log_level") or "INFO").upper(),
        event_loop=loop,
    )
