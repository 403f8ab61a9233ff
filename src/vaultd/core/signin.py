"""What IAM Identity Center and `aws login` roots share: one refresh at a time per sign-in,
no network call while a person is needed, and botocore sessions that never ask IMDS.

The AWS CLI keeps each sign-in in a cache directory of JSON files (`~/.aws/sso/cache`,
`~/.aws/login/cache`) which botocore reads and rewrites in place. vaultd uses botocore's own
providers on those files, so the CLI and vaultd keep working together; this module only
decides *when* they run:

- per sign-in, one call at a time (a thread lock): when twenty IMDS clients or two profiles
  built on one sso-session ask while a token is refreshed, the first caller refreshes and
  writes the cache, the others then read the fresh token from it;
- after a sign-in failed because a person must sign in again, it is not retried against the
  network until a file in its cache directory changes (the person ran `aws sso login`);
  until then the same `LoginRequired` is raised at once, so polling for it is cheap;
- a refresh is sent only when the cache directory can take its answer (`write_refusal`).
"""

from __future__ import annotations

import fcntl
import os
import stat
import struct
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Final, TypeVar, Union

import botocore.config
import botocore.exceptions
from dateutil.parser import parse as parse_iso  # type: ignore[import-untyped]

from vaultd.core import endpoints
from vaultd.core.credentials import iso8601
from vaultd.core.resolve import SigninRoot
from vaultd.documents import NUMBER
from vaultd.errors import (
    ConfigError,
    LoginRequired,
    SigninCacheUnwritable,
    SsoLoginRequired,
    StsError,
)

T = TypeVar("T")
Fingerprint = tuple[tuple[str, int, int, int], ...]

# Bounded calls, as for STS: a refresh that hangs helps nobody, the broker retries.
CLIENT_CONFIG = botocore.config.Config(
    connect_timeout=3, read_timeout=10, retries={"total_max_attempts": 2}
)


def fingerprint(directory: Path) -> Fingerprint:
    """Name, mtime and ctime (ns) and size of each JSON file in `directory`; () when it is
    absent or unreadable.

    botocore's JSONFileCache replaces a file atomically on every write, so a new sign-in
    or a refresh by the CLI always changes this value; so does a chmod or chown of an entry
    (its ctime), the fix for an entry vaultd could not read.
    """
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return ()
    seen: list[tuple[str, int, int, int]] = []
    for entry in entries:
        if not entry.name.endswith(".json"):
            continue
        try:
            info = entry.stat()
        except OSError:
            continue  # replaced while we looked: the next look sees the new one
        seen.append((entry.name, info.st_mtime_ns, info.st_ctime_ns, info.st_size))
    return tuple(sorted(seen))


class SigninGate:
    """Serialises the work on each sign-in and remembers which ones wait for a person."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._waiting: dict[str, tuple[Fingerprint, LoginRequired]] = {}

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def run(self, key: str, cache_dir: Path, work: Callable[[], T]) -> T:
        """`work()` under the lock for `key`; raises LoginRequired again without calling it
        while the sign-in waits for a person and `cache_dir` has not changed since."""
        with self._lock(key):
            seen = fingerprint(cache_dir)
            waiting = self._waiting.get(key)
            if waiting is not None and waiting[0] == seen:
                exc = waiting[1]
                raise type(exc)(exc.message, profile=exc.profile, command=exc.command)
            try:
                result = work()
            except LoginRequired as exc:
                self._waiting[key] = (seen, exc)
                raise
            self._waiting.pop(key, None)
            return result


# What botocore's cache loaders and providers raise on a cache file that is truncated, empty,
# `null`, of the wrong shape or with an unparsable date (JSONFileCache: KeyError; a field of
# the wrong type or a naive `expiresAt` compared with an aware clock: TypeError; dateutil's
# ParserError is a ValueError; a malformed DPoP key: RuntimeError from awscrt).
CACHE_FAULTS: tuple[type[Exception], ...] = (
    KeyError,
    TypeError,
    ValueError,
    AttributeError,
    RuntimeError,
)


# What a field of a cache entry or of a service's answer must hold: a type (or types), or
# the shape of an object. A name ending in "?" may be absent; when present, it is checked.
Shape = Mapping[str, Union[type, tuple[type, ...], "Shape"]]
_KINDS: Final[dict[Any, str]] = {str: "a string", NUMBER: "a number"}


def misfit(value: object, shape: Shape, path: str = "") -> str | None:
    """Where `value` departs from `shape`: the dotted path of the first field missing or of
    another type (a bool is no number, as JSON has it) and what it should be; None when it
    fits. Names only fields, never their values, which may be secrets."""
    if not isinstance(value, dict):
        return f"{path or 'the whole'} is not an object"
    for name, kind in shape.items():
        key = name.removesuffix("?")
        where = f"{path}.{key}" if path else key
        if key not in value:
            if name.endswith("?"):
                continue
            return f"{where} is missing"
        field = value[key]
        if isinstance(kind, Mapping):
            why = misfit(field, kind, where)
            if why is not None:
                return why
        elif isinstance(field, bool) or not isinstance(field, kind):
            return f"{where} is not {_KINDS.get(kind, 'of the right type')}"
    return None


class ServiceFault(Exception):
    """A call to a sign-in service (sso, sso-oidc, signin) that failed for a reason of the
    service's, not of the sign-in: unreachable, timed out, a 5xx, throttled, or an answer
    without the fields botocore reads. A later attempt may succeed, so `reading_cache` makes
    it an StsError, which the broker retries with backoff; the cache entry is not blamed, and
    no person is asked to sign in. The message names the service and call, no secret."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


# Error codes that mean "not now" rather than "no": botocore's throttling codes
# (botocore.retries.standard) and sso-oidc's SlowDownException. Any other 4xx is the
# service refusing the call, which a retry would not change.
THROTTLED: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "SlowDownException",
    }
)


def passing(exc: Exception, service: str, operation: str) -> ServiceFault | None:
    """`exc`, raised by a call of `service`'s `operation`, as a ServiceFault when it is a
    failure a later attempt may not meet: a ServiceFault already (`check_answers`), no
    connection or no answer in time (botocore's ConnectionError and HTTPClientError:
    timeouts, resets, proxies, TLS), an HTTP 5xx or 429 or a throttling code (THROTTLED).
    None for anything else: a refusal (another 4xx, e.g. sso-oidc's InvalidGrantException,
    InvalidClientException, UnauthorizedClientException), or a fault before anything was
    sent (ParamValidationError). Only the error code and status are kept, never the text."""
    if isinstance(exc, ServiceFault):
        return exc
    if isinstance(exc, (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)):
        return ServiceFault(f"cannot reach {service} {operation}: {type(exc).__name__}")
    if isinstance(exc, botocore.exceptions.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if (isinstance(status, int) and (status >= 500 or status == 429)) or code in THROTTLED:
            return ServiceFault(f"{service} {operation} failed ({code or status})", code or None)
    return None


def check_answers(session: Any, answers: Mapping[tuple[str, str], Shape]) -> None:
    """Have every (service, operation) call in `answers` made by clients of the botocore
    `session` checked against its shape as soon as it is parsed, before botocore reads or
    caches it: a successful answer that does not fit (an HTML page from a proxy, a body
    that is not JSON, fields missing or of another type) raises ServiceFault, and so does
    one botocore's parser fails on (a ValueError for "x" as a number: anything but
    botocore's own errors, which are connection faults and timeouts, `passing`). Unchecked,
    botocore's providers fail on it with the KeyError, TypeError or ValueError that a broken
    cache entry raises too, and `reading_cache` would blame the cache and ask for a sign-in.

    Registered on the session, so clients made later from it (by vaultd, or by botocore's
    providers with `create_nested_client`) carry the check."""

    def unparsed(exception: Exception, event_name: str, **_: Any) -> None:
        if not isinstance(exception, botocore.exceptions.BotoCoreError):
            service, operation = event_name.split(".", 2)[1:]
            raise ServiceFault(
                f"malformed answer from {service} {operation} ({type(exception).__name__})"
            ) from exception

    for (service, operation), shape in answers.items():
        session.register(f"after-call-error.{service}.{operation}", unparsed)

        def check(
            http_response: Any,
            parsed: Any,
            _service: str = service,
            _operation: str = operation,
            _shape: Shape = shape,
            **_: Any,
        ) -> None:
            if http_response.status_code >= 300:
                return  # botocore raises its ClientError next
            why = misfit(parsed, _shape)
            if why is not None:
                raise ServiceFault(f"malformed answer from {_service} {_operation} ({why})")

        session.register(f"after-call.{service}.{operation}", check)


# The AWS CLI's entries are 1-3 KiB; a directory that takes this much takes the entry.
PROBE_BYTES: Final = 16 * 1024


def zoned(text: object) -> datetime:
    """A date from the AWS CLI's caches, read as botocore's token and `aws login` readers read
    it (dateutil). Raises ValueError when it names no zone: botocore compares it with an aware
    clock and fails, so such an entry is unreadable here too (`reading_cache`), not a
    failure there."""
    moment: datetime = parse_iso(text)
    if moment.tzinfo is None:
        raise ValueError("a time without a zone")
    return moment


# chattr's immutable and append-only flags (ioctl_iflags(2)): either one on the directory or
# the entry makes rename(2) fail with EPERM, for root too. FS_IOC_GETFLAGS is _IOR('f', 1, long).
_LOCKED_FLAGS: Final = 0x10 | 0x20
_GETFLAGS: Final = 0x80006601 | (struct.calcsize("l") << 16)


def _locked(path: Path, *, follow: bool) -> bool:
    """Whether `path` (followed if a symlink only with `follow`) is immutable or append-only;
    False where that cannot be read (another system, a file system without the flags, no
    permission to open it: the probe's own removal then tells, `write_refusal`)."""
    if not sys.platform.startswith("linux"):
        return False
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError:
        return False
    try:
        raw = fcntl.ioctl(fd, _GETFLAGS, bytes(8))
    except OSError:
        return False
    finally:
        os.close(fd)
    return bool(int.from_bytes(raw[:4], sys.byteorder) & _LOCKED_FLAGS)


def _mount_point(path: Path) -> bool:
    """Whether `path` is a mount point, a file bind-mounted from the same file system too
    (os.path.ismount compares devices, and sees that only across file systems): Linux lists
    every mount point of this namespace in /proc/self/mountinfo (proc(5)), octal-escaped."""
    if os.path.ismount(path):
        return True
    try:
        with open("/proc/self/mountinfo", "rb") as table:
            lines = table.read().split(b"\n")  # not splitlines: a path may hold a raw CR
    except OSError:
        return False
    # The entry itself is not followed: rename(2) replaces a symlink, not what it names.
    here = os.fsencode(os.path.join(os.path.realpath(path.parent), path.name))
    for line in lines:
        fields = line.split(b" ")
        if len(fields) > 4 and _unescaped(fields[4]) == here:
            return True
    return False


def _unescaped(field: bytes) -> bytes:
    """A mountinfo path: space, tab, newline and backslash are written as octal escapes."""
    for code in (b"\\040", b"\\011", b"\\012", b"\\134"):
        field = field.replace(code, bytes([int(code[1:], 8)]))
    return field


def _may_override_owners(owner: int) -> bool:
    """Whether this process may rename over an entry of uid `owner` in a sticky directory it
    does not own: CAP_FOWNER, which root without it lacks (capabilities(7)), and which counts
    in a user namespace only for an owner mapped into it (an unmapped one shows as the
    overflow uid: user_namespaces(7)). Read from /proc/self; elsewhere, whether it is root."""
    try:
        with open("/proc/self/status") as status:
            caps = next(line for line in status if line.startswith("CapEff:"))
        if not int(caps.split()[1], 16) & (1 << 3):
            return False
        with open("/proc/self/uid_map") as uid_map:
            every_uid = uid_map.read().split() == ["0", "0", "4294967295"]
        with open("/proc/sys/kernel/overflowuid") as overflow:
            return every_uid or owner != int(overflow.read())
    except (OSError, ValueError, StopIteration):
        return os.geteuid() == 0


def write_refusal(cache_dir: Path, entry: Path) -> str | None:
    """Why a refreshed `entry` could not be written into `cache_dir` now; None when it could.

    botocore sends a refresh first and writes its answer after (JSONFileCache: mkstemp in
    the directory, write, fsync, os.replace onto the entry). The answer carries a new refresh
    token and the old one is spent, so a write that fails then loses the sign-in, for the
    AWS CLI as well. This goes through the same steps before anything is sent: a temp file
    is created in `cache_dir`, PROBE_BYTES written and fsynced, then removed (permissions, a
    read-only file system, a full disk, inodes or quota; a directory that lets files be made
    but not removed, as append-only does, refuses the replace as well); and what rename(2)
    refuses for the entry itself is checked without touching it: immutable or append-only
    flags on the directory or the entry (EPERM), a sticky directory (EPERM unless the caller
    owns the entry or the directory, or has CAP_FOWNER) and an entry that is a mount point
    (EBUSY). The reason names the directory and the fault, nothing from the entry's contents.
    """
    if _locked(cache_dir, follow=True):  # checked first: no probe could be removed from it
        return f"{cache_dir} is immutable or append-only (chattr)"
    try:
        fd, probe = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
    except OSError as exc:
        return f"{cache_dir} cannot be written ({exc.strerror or type(exc).__name__})"
    unwritten: OSError | None = None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(bytes(PROBE_BYTES))
            file.flush()
            os.fsync(file.fileno())
    except OSError as exc:
        unwritten = exc
    try:
        os.unlink(probe)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        return f"{cache_dir} lets no file be removed or replaced ({why})"
    if unwritten is not None:
        why = unwritten.strerror or type(unwritten).__name__
        return f"{cache_dir} cannot be written ({why})"
    try:
        directory, current = os.stat(cache_dir), os.lstat(entry)  # rename(2) sees the link
    except OSError:
        return None  # no entry to replace: creating one is what the probe did
    sticky = directory.st_mode & stat.S_ISVTX
    others = os.geteuid() not in (directory.st_uid, current.st_uid)
    if sticky and others and not _may_override_owners(current.st_uid):
        return f"{cache_dir} is sticky and this sign-in's entry belongs to uid {current.st_uid}"
    if _locked(entry, follow=False):
        return f"this sign-in's entry in {cache_dir} is immutable or append-only (chattr)"
    if _mount_point(entry):
        return f"this sign-in's entry in {cache_dir} is a mount point"
    return None


def not_refreshed(root: SigninRoot, refusal: str) -> SigninCacheUnwritable:
    """The error for a sign-in that must be refreshed and will not be, because `refusal`."""
    return SigninCacheUnwritable(
        f"{root.label}: not refreshing the sign-in of {root.profile!r}, since {refusal} and the "
        "rotated refresh token would be lost: fix that, and vaultd refreshes it"
    )


def unrefreshed(root: SigninRoot, refusal: str, until: float) -> str:
    """What status says while `root`'s sign-in is served without the refresh that is due,
    because `refusal` (`write_refusal`), until `until` (epoch seconds, UTC), after which it
    is `not_refreshed`'s error."""
    return (
        f"{root.label}: not refreshing the sign-in of {root.profile!r}, since {refusal}; it "
        f"lasts until {iso8601(until)}: fix that, and vaultd refreshes it"
    )


def unreadable(root: SigninRoot) -> LoginRequired:
    """The named state for `root` (`sso_login_required` or `login_required`) when its entry
    in the AWS CLI's cache cannot be used: one line, naming the command that rewrites it."""
    kind = SsoLoginRequired if root.kind == "sso" else LoginRequired
    name = root.session if root.kind == "sso" and root.session else root.profile
    return kind(
        f"the AWS CLI's cache for {name} is unreadable: run `{root.command}`",
        profile=root.profile,
        command=root.command,
    )


def unsaved(root: SigninRoot, exc: OSError) -> LoginRequired:
    """The named state for `root` when botocore refreshed its sign-in and could not write the
    answer back (the disk filled after `write_refusal` looked): the old refresh token is
    spent, so a person must sign in again once the directory is fixed."""
    kind = SsoLoginRequired if root.kind == "sso" else LoginRequired
    return kind(
        f"{root.label}: the refreshed sign-in of {root.profile!r} could not be saved in the AWS "
        f"CLI's cache ({exc.strerror or type(exc).__name__}): fix the directory, "
        f"then run `{root.command}`",
        profile=root.profile,
        command=root.command,
    )


@contextmanager
def reading_cache(root: SigninRoot) -> Iterator[None]:
    """Around every botocore call on the AWS CLI's cache for `root`: an unreadable or
    ill-formed entry (CACHE_FAULTS) becomes `unreadable(root)`, and a write that failed
    `unsaved(root, ...)` (botocore's JSONFileCache turns read faults into KeyError, so an
    OSError out of it is a write's), never a traceback. The daemon and `vaultd doctor` both
    read through here, so they reach the same verdict.

    A ServiceFault (the service failed, or answered what botocore cannot read:
    `check_answers`) is an StsError naming `root`, retried with backoff: the fault is not the
    entry's, which is left as it was."""
    try:
        yield
    except ServiceFault as exc:
        raise StsError(f"{root.label}: {exc}", exc.code) from None
    except CACHE_FAULTS:
        raise unreadable(root) from None
    except OSError as exc:
        raise unsaved(root, exc) from None


def botocore_session(profile: str) -> Any:
    """A new botocore session on `profile`, reading the config files as they are now.

    Only unsigned clients are made from it (sso, sso-oidc, signin), for which botocore
    resolves no credentials at all, so nothing here can ask IMDS (vaultd itself).
    Endpoints follow botocore's own settings (AWS_ENDPOINT_URL_SSO, ..._SSO_OIDC, ..._SIGNIN).
    """
    session = endpoints.new_session(profile)  # not the whole endpoints.json in memory
    session.set_default_client_config(CLIENT_CONFIG)
    return session


def utc_clock(clock: Callable[[], float]) -> Callable[[], datetime]:
    """The injected clock (epoch seconds) as the aware datetimes botocore's providers take."""
    return lambda: datetime.fromtimestamp(clock(), UTC)


class CachedSignin:
    """What the IAM Identity Center and `aws login` roots share: the clock (epoch seconds,
    UTC), one SigninGate, the AWS CLI's cache directory for that kind of sign-in (subclasses
    name it in `default_cache_dir`) and `new_session(profile)`, a botocore session that reads
    the config files as they are now. The answers of the calls in `answers` are checked
    before botocore reads them (`check_answers`)."""

    answers: ClassVar[Mapping[tuple[str, str], Shape]] = {}

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        gate: SigninGate | None = None,
        cache_dir: Path | None = None,
        new_session: Callable[[str], Any] = botocore_session,
    ) -> None:
        self.clock = clock
        self.gate = gate or SigninGate()
        self.cache_dir = cache_dir or self.default_cache_dir()
        self.new_session = new_session

    @staticmethod
    def default_cache_dir() -> Path:
        """Where the AWS CLI keeps this kind of sign-in (the user's home)."""
        raise NotImplementedError

    def session(self, root: SigninRoot) -> Any:
        """`new_session(root.profile)` with its config read and its answers checked
        (`answers`); ConfigError when botocore cannot find the profile now (the file changed
        since, or could not be opened at all)."""
        try:
            session = self.new_session(root.profile)
            session.full_config  # noqa: B018 - read here, where its faults are caught
        except botocore.exceptions.BotoCoreError as exc:
            raise ConfigError(f"profile {root.profile!r}: {exc}") from None
        check_answers(session, self.answers)
        return session
