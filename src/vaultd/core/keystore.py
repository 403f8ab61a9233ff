"""Long-lived keys and cached MFA sessions in the OS keyring.

`keyring` cannot list what it holds, so the keystore keeps its own index item naming the
profiles it has stored something for. Every value is JSON under the service name "vaultd";
nothing here ever reaches a file of ours, a log line or an exception message.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import keyring
import keyring.errors

from vaultd.core.credentials import AccessKeys, Credentials, epoch_time
from vaultd.errors import KeyringError, KeyringLocked, NoKeys
from vaultd.secret import Secret
from vaultd.untrusted import json_object, profile_words

SERVICE = "vaultd"
# How long any keyring call may take: nobody may be there to answer an unlock prompt (a
# daemon, an SSH session), and a command that hangs silently is worse than one that says so.
KEYRING_TIMEOUT = 10.0
T = TypeVar("T")


@dataclass(frozen=True)
class CachedSession:
    mfa_serial: str | None
    credentials: Credentials


def refuse_plaintext(env: Mapping[str, str] | None = None) -> None:
    """Refuse a keyring that keeps secrets in a plain file unless it was chosen on purpose.

    keyring picks the best backend it finds; on a headless machine with keyrings.alt
    installed (vaultd's demo and test extras bring it) that is a plaintext file, which
    would break vaultd's promise. Choosing it with PYTHON_KEYRING_BACKEND is deliberate.
    """
    env = os.environ if env is None else env
    name = backend_name()
    if "plaintext" in name.lower() and not env.get("PYTHON_KEYRING_BACKEND"):
        raise KeyringError(
            f"the only keyring found ({name}) keeps secrets in a plain file: start a Secret "
            "Service (gnome-keyring, KeePassXC) or set PYTHON_KEYRING_BACKEND to accept it"
        )


def backend_name() -> str:
    backend = keyring.get_keyring()
    return f"{type(backend).__module__}.{type(backend).__name__}"


class Deadline:
    """Runs keyring calls with a deadline, leaving at most one blocked call behind.

    A locked Secret Service may sit waiting for an unlock prompt that nobody sees (a
    headless login, an SSH session), and a call into it cannot be cancelled. The call runs
    in a daemon thread and the caller gives up after `timeout` seconds with a one-line
    KeyringLocked. While that abandoned call has still not returned, further calls fail at
    once instead of stacking another blocked thread behind it on every retry.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._stuck: tuple[str, threading.Event] | None = None

    def run(self, action: str, call: Callable[[], T]) -> T:
        with self._lock:
            if self._stuck is not None and not self._stuck[1].is_set():
                raise KeyringLocked(
                    f"the keyring has still not answered an earlier call ({self._stuck[0]}): "
                    "it may be locked and waiting for an unlock prompt; unlock it and try again"
                )
            self._stuck = None
        box: list[T] = []
        failure: list[BaseException] = []
        done = threading.Event()

        def run() -> None:
            try:
                box.append(call())
            except BaseException as exc:  # handed to the caller below
                failure.append(exc)
            finally:
                done.set()

        threading.Thread(target=run, name="vaultd-keyring", daemon=True).start()
        if not done.wait(self.timeout):
            with self._lock:
                self._stuck = (action, done)
            raise KeyringLocked(
                f"the keyring did not answer within {self.timeout:g}s ({action}): it may be "
                "locked and waiting for an unlock prompt; unlock it and try again"
            )
        if failure:
            raise failure[0]
        return box[0]


def _guard(action: str, call: Callable[[], T], deadline: Deadline) -> T:
    try:
        return deadline.run(action, call)
    except KeyringError:
        raise  # already ours (the deadline); not to be re-wrapped below
    except keyring.errors.KeyringLocked:
        raise KeyringLocked(
            f"the keyring is locked ({action}): unlock it (log in to the desktop session, "
            "or `gnome-keyring-daemon --unlock`) and try again"
        ) from None
    except keyring.errors.NoKeyringError:
        raise KeyringError(
            f"no usable keyring backend ({action}): install and start a Secret Service "
            "(gnome-keyring, KeePassXC) or set PYTHON_KEYRING_BACKEND"
        ) from None
    except keyring.errors.KeyringError as exc:
        raise KeyringError(f"the keyring refused to {action}: {type(exc).__name__}") from None
    except Exception as exc:  # backends raise anything (dbus, OSError, ...)
        raise KeyringError(f"the keyring failed to {action}: {type(exc).__name__}") from None


def no_keys(profile: str) -> NoKeys:
    """The error for a root profile with no long-lived keys in the keyring, with the command
    that stores them (pasteable whatever the name: `untrusted.profile_words`)."""
    return NoKeys(
        f"no keys stored for profile {profile!r}: run `vaultd add {profile_words(profile)}`"
    )


class Keystore:
    """The keyring items vaultd owns. Every call, from the daemon or the command line,
    gives up after `timeout` seconds (default KEYRING_TIMEOUT) with KeyringLocked."""

    def __init__(self, service: str = SERVICE, timeout: float | None = None) -> None:
        self.service = service
        self.deadline = Deadline(KEYRING_TIMEOUT if timeout is None else timeout)

    # -- raw items -----------------------------------------------------------------------
    def _get(self, item: str) -> dict[str, Any] | None:
        refuse_plaintext()
        raw = _guard(
            f"read {item}", lambda: keyring.get_password(self.service, item), self.deadline
        )
        if raw is None:
            return None
        return json_object(raw)  # None: someone else's item under our name; as if absent

    def _set(self, item: str, value: dict[str, Any]) -> None:
        refuse_plaintext()
        text = json.dumps(value, sort_keys=True)
        _guard(
            f"store {item}", lambda: keyring.set_password(self.service, item, text), self.deadline
        )

    def _delete(self, item: str) -> bool:
        def call() -> bool:
            try:
                keyring.delete_password(self.service, item)
            except keyring.errors.PasswordDeleteError:
                return False
            return True

        return _guard(f"delete {item}", call, self.deadline)

    def _index(self) -> dict[str, list[str]]:
        value = self._get("index") or {}
        return {
            kind: sorted({str(v) for v in value.get(kind, [])}) for kind in ("keys", "sessions")
        }

    def _index_update(self, kind: str, profile: str, present: bool) -> None:
        index = self._index()
        names = set(index[kind])
        (names.add if present else names.discard)(profile)
        index[kind] = sorted(names)
        self._set("index", dict(index))

    # -- long-lived keys -----------------------------------------------------------------
    def get_keys(self, profile: str) -> AccessKeys | None:
        value = self._get(f"keys:{profile}")
        if not value or "AccessKeyId" not in value or "SecretAccessKey" not in value:
            return None
        return AccessKeys(str(value["AccessKeyId"]), Secret(str(value["SecretAccessKey"])))

    def set_keys(self, profile: str, keys: AccessKeys) -> None:
        self._set(
            f"keys:{profile}",
            {"AccessKeyId": keys.access_key_id, "SecretAccessKey": keys.secret_access_key.reveal()},
        )
        self._index_update("keys", profile, present=True)

    def delete_keys(self, profile: str) -> bool:
        found = self._delete(f"keys:{profile}")
        self._index_update("keys", profile, present=False)
        return found

    def profiles_with_keys(self) -> list[str]:
        return self._index()["keys"]

    # -- cached MFA sessions -------------------------------------------------------------
    def get_session(self, profile: str) -> CachedSession | None:
        value = self._get(f"session:{profile}")
        if value is None:
            return None
        try:
            creds = Credentials(
                access_key_id=str(value["AccessKeyId"]),
                secret_access_key=Secret(str(value["SecretAccessKey"])),
                session_token=Secret(str(value["SessionToken"])),
                # An unreadable or absurd stored time (inf, NaN, text) means no session.
                expiration=epoch_time(value["Expiration"]),
                issued=epoch_time(value["Issued"]),
                arn=str(value.get("Arn", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None
        serial = value.get("MfaSerial")
        return CachedSession(str(serial) if serial else None, creds)

    def set_session(self, profile: str, session: CachedSession) -> None:
        creds = session.credentials
        self._set(
            f"session:{profile}",
            {
                "MfaSerial": session.mfa_serial,
                "AccessKeyId": creds.access_key_id,
                "SecretAccessKey": creds.secret_access_key.reveal(),
                "SessionToken": creds.session_token.reveal(),
                "Expiration": creds.expiration,
                "Issued": creds.issued,
                "Arn": creds.arn,
            },
        )
        self._index_update("sessions", profile, present=True)

    def delete_session(self, profile: str) -> bool:
        found = self._delete(f"session:{profile}")
        self._index_update("sessions", profile, present=False)
        return found

    def profiles_with_sessions(self) -> list[str]:
        return self._index()["sessions"]
