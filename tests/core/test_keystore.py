"""The keystore against a real file keyring in the test's temp dir, and a broken one."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import keyring
import keyring.backend
import keyring.errors
import pytest

from tests.helpers import FakeClock, make_creds
from vaultd.cli import main
from vaultd.core import config, keystore
from vaultd.core.broker import Broker
from vaultd.core.credentials import AccessKeys
from vaultd.core.keystore import CachedSession, Keystore, no_keys
from vaultd.core.provider import Provider
from vaultd.errors import KeyringError, KeyringLocked
from vaultd.http.status import message
from vaultd.secret import Secret


def test_keys_and_sessions_round_trip_with_an_index() -> None:
    store = Keystore()
    store.set_keys("identity", AccessKeys("AKIAEXAMPLE000000001", Secret("secret")))
    store.set_keys("other", AccessKeys("AKIAEXAMPLE000000002", Secret("secret2")))
    assert store.profiles_with_keys() == ["identity", "other"]
    keys = store.get_keys("identity")
    assert keys is not None and keys.secret_access_key.reveal() == "secret"
    creds = make_creds(1_000.0)
    store.set_session("identity", CachedSession("arn:aws:iam::1:mfa/x", creds))
    cached = store.get_session("identity")
    assert cached is not None and cached.credentials == creds
    assert store.profiles_with_sessions() == ["identity"]
    assert store.delete_keys("identity") and not store.delete_keys("identity")
    assert store.profiles_with_keys() == ["other"]
    assert store.delete_session("identity")
    assert store.get_session("identity") is None


def test_foreign_values_are_ignored() -> None:
    keyring.set_password("vaultd", "keys:x", "not json")
    keyring.set_password("vaultd", "session:x", '{"AccessKeyId": 1}')
    assert Keystore().get_keys("x") is None
    assert Keystore().get_session("x") is None


def test_a_foreign_value_nested_past_the_json_decoder_is_ignored() -> None:
    keyring.set_password("vaultd", "keys:x", "[" * 200_000)
    assert Keystore().get_keys("x") is None


class LockedKeyring(keyring.backend.KeyringBackend):
    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def get_password(self, service: str, username: str) -> str | None:
        raise keyring.errors.KeyringLocked("locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.KeyringLocked("locked")

    def delete_password(self, service: str, username: str) -> None:
        raise keyring.errors.KeyringLocked("locked")


class BrokenKeyring(LockedKeyring):
    def get_password(self, service: str, username: str) -> str | None:
        raise RuntimeError("dbus exploded with secret=hunter2")


@pytest.fixture
def swap_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    yield
    keyring.set_keyring(previous)


@pytest.mark.usefixtures("swap_keyring")
def test_locked_and_broken_keyrings_are_named_errors() -> None:
    keyring.set_keyring(LockedKeyring())
    with pytest.raises(KeyringLocked, match="unlock"):
        Keystore().get_keys("identity")
    keyring.set_keyring(BrokenKeyring())
    with pytest.raises(KeyringError) as info:
        Keystore().get_keys("identity")
    assert "hunter2" not in info.value.message


class HangingKeyring(LockedKeyring):
    """A Secret Service waiting for an unlock prompt nobody will answer."""

    release = threading.Event()

    def get_password(self, service: str, username: str) -> str | None:
        self.release.wait(30)
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        self.release.wait(30)


@pytest.mark.usefixtures("swap_keyring")
def test_a_hanging_keyring_is_reported_not_waited_on() -> None:
    keyring.set_keyring(HangingKeyring())
    try:
        with pytest.raises(KeyringLocked, match="did not answer within"):
            Keystore(timeout=0.2).get_keys("identity")
    finally:
        HangingKeyring.release.set()


@pytest.mark.usefixtures("swap_keyring")
def test_a_retry_does_not_leave_another_blocked_thread_behind() -> None:
    keyring.set_keyring(HangingKeyring())
    HangingKeyring.release.clear()
    store = Keystore(timeout=0.1)
    try:
        with pytest.raises(KeyringLocked, match="did not answer within"):
            store.get_keys("identity")
        for _ in range(5):  # the daemon's retries while the first call is still blocked
            with pytest.raises(KeyringLocked, match="still not answered an earlier call"):
                store.get_keys("identity")
        blocked = [t for t in threading.enumerate() if t.name == "vaultd-keyring"]
        assert len(blocked) == 1
    finally:
        HangingKeyring.release.set()
    for thread in threading.enumerate():
        if thread.name == "vaultd-keyring":
            thread.join(5)
    # Once the keyring answers, calls go through again.
    assert store.get_keys("identity") is None


@pytest.mark.usefixtures("swap_keyring")
def test_the_command_line_gives_up_on_a_hanging_keyring_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(keystore, "KEYRING_TIMEOUT", 0.2)
    keyring.set_keyring(HangingKeyring())
    HangingKeyring.release.clear()
    try:
        with pytest.raises(SystemExit) as info:
            main(["list"])
    finally:
        HangingKeyring.release.set()
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("vaultd: the keyring did not answer within 0.2s")
    assert err.count("\n") == 1


@pytest.mark.usefixtures("swap_keyring")
async def test_daemon_state_names_a_locked_keyring(clock: FakeClock) -> None:
    keyring.set_keyring(LockedKeyring())
    provider = Provider(
        load_profiles=lambda: config.parse_profiles("[profile identity]\n"),
        keystore=Keystore(timeout=1),
        sts_factory=lambda source, region: None,
        clock=clock,
        env={},
    )
    broker = Broker(provider, clock)
    with pytest.raises(KeyringLocked):
        await broker.switch("identity")
    status = broker.status()
    assert status.state == "keyring_locked"
    assert "unlock" in message(status)
    assert status.next_retry is not None


@pytest.mark.usefixtures("swap_keyring")
def test_no_backend_says_what_to_install() -> None:
    from keyring.backends import fail

    keyring.set_keyring(fail.Keyring())  # type: ignore[no-untyped-call]
    with pytest.raises(KeyringError, match="Secret Service") as info:
        Keystore().get_keys("identity")
    assert info.value.code == "keyring_error"


def test_an_accidental_plaintext_keyring_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND")
    with pytest.raises(KeyringError, match="plain file"):
        Keystore().set_keys("identity", AccessKeys("AKIAEXAMPLE000000001", Secret("s")))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    Keystore().set_keys("identity", AccessKeys("AKIAEXAMPLE000000001", Secret("s")))


@pytest.mark.parametrize(
    ("profile", "command"),
    [
        ("master", "vaultd add master"),
        ("-dev", "vaultd add -- -dev"),
        ("my dev", "vaultd add 'my dev'"),
    ],
)
def test_the_missing_keys_error_names_a_command_that_pastes(profile: str, command: str) -> None:
    """One message for switch, serve and rotate alike (`keystore.no_keys`)."""
    assert no_keys(profile).message == f"no keys stored for profile {profile!r}: run `{command}`"
