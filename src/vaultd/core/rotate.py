"""`vaultd rotate PROFILE`: replace the root profile's access key without ever losing one.

Order matters: create the new key, prove it works, store it, drop the sessions built on
the old one, and only then delete the old key. At every step the keyring holds a key that
works, and a failure says exactly which key exists where.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vaultd.core import config, resolve
from vaultd.core.credentials import AccessKeys, Source, mask_key_id
from vaultd.core.keystore import Keystore, no_keys
from vaultd.core.sts import Sts
from vaultd.errors import NoKeys, VaultdError
from vaultd.secret import Secret
from vaultd.untrusted import option_words

Clients = Callable[[str, Source, str], Any]
VERIFY_TIMEOUT = 30.0
VERIFY_PAUSE = 2.0


class RotateError(VaultdError):
    code = "rotate_failed"


@dataclass(frozen=True)
class Rotated:
    profile: str
    user: str
    old: str
    new: str
    dropped_sessions: list[str]


def _session(
    keys: AccessKeys,
    plan: resolve.Plan,
    code: str | None,
    clients: Clients,
    clock: Callable[[], float],
) -> Source:
    """A fresh MFA'd session for the IAM calls when the root has a device, else the keys."""
    if plan.mfa_serial is None:
        return keys
    if code is None:
        raise RotateError(f"rotating {plan.root!r} needs an MFA code: pass --mfa CODE")
    sts = Sts(lambda source, region: clients("sts", source, region), clock)
    return sts.credentials(
        "get_session_token",
        keys,
        plan.region,
        f"get an MFA session for {plan.root!r}",
        SerialNumber=plan.mfa_serial,
        TokenCode=code,
        DurationSeconds=900,
    )


def _works(new: AccessKeys, region: str, clients: Clients) -> bool:
    try:
        clients("sts", new, region).get_caller_identity()
    except Exception:  # IAM is eventually consistent: a fresh key may not work yet
        return False
    return True


def rotate(
    profile: str,
    *,
    keystore: Keystore,
    load_profiles: Callable[[], Mapping[str, config.Profile]],
    clients: Clients,
    mfa_code: str | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    verify_timeout: float = VERIFY_TIMEOUT,
) -> Rotated:
    """Replace the IAM access key stored for `profile`'s root with a new one, safely.

    Order (aws-vault's `rotate`, made failure-safe): create the new key through IAM, wait up
    to `verify_timeout` seconds (on `clock`) until STS accepts it, store it in the keyring,
    drop the cached MFA sessions built on the old key, and only then delete the old key.
    Returns what changed (key ids only, never secrets).

    Raises NoKeys when no key is stored for the root, and RotateError, saying which key the
    keyring holds afterwards, when any step fails.
    """
    profiles = load_profiles()
    plan = resolve.plan(profiles, profile)
    root = plan.root
    old = _stored_keys(plan, keystore)
    session = _session(old, plan, mfa_code, clients, clock)
    iam = clients("iam", session, plan.region)
    user, new = _create_key(iam, old, root)
    old_id, new_id = old.access_key_id, new.access_key_id

    if not _wait_until_works(
        new, plan.region, clients, clock=clock, sleep=sleep, timeout=verify_timeout
    ):
        _discard(iam, user, new_id)
        raise RotateError(
            f"the new key {mask_key_id(new_id)} did not work within {verify_timeout:.0f}s "
            f"and was deleted; the keyring still holds {mask_key_id(old_id)}, which works"
        )

    try:
        keystore.set_keys(root, new)
    except VaultdError as exc:
        _discard(iam, user, new_id)
        raise RotateError(
            f"could not store the new key ({exc.message}); it was deleted, and the keyring "
            f"still holds {mask_key_id(old_id)}, which works"
        ) from None

    built_on_root = resolve.built_on(profiles, root)
    dropped = [name for name in built_on_root if keystore.delete_session(name)]

    try:
        iam.delete_access_key(UserName=user, AccessKeyId=old_id)
    except Exception as exc:
        delete = f"aws iam delete-access-key {option_words('--user-name', user)}"
        raise RotateError(
            f"the new key {mask_key_id(new_id)} is stored and works, but the old key "
            f"{old_id} still exists for IAM user {user} ({type(exc).__name__}): delete it "
            f"with `{delete} --access-key-id {old_id}`"
        ) from None
    return Rotated(root, user, old_id, new_id, dropped)


def _stored_keys(plan: resolve.Plan, keystore: Keystore) -> AccessKeys:
    """The long-lived keys of the plan's root; NoKeys when it has none to rotate."""
    if plan.signin is not None:
        raise NoKeys(plan.signin.no_keys)
    old = keystore.get_keys(plan.root)
    if old is None:
        raise no_keys(plan.root)
    return old


def _create_key(iam: Any, old: AccessKeys, root: str) -> tuple[str, AccessKeys]:
    """The IAM user that owns `old`, and a new access key made for it."""
    try:
        user = str(iam.get_access_key_last_used(AccessKeyId=old.access_key_id)["UserName"])
        made = iam.create_access_key(UserName=user)["AccessKey"]
    except Exception as exc:
        raise RotateError(
            f"could not create a new key for {root!r}: {type(exc).__name__}; "
            f"nothing changed, the keyring still holds {mask_key_id(old.access_key_id)}"
        ) from None
    return user, AccessKeys(str(made["AccessKeyId"]), Secret(str(made["SecretAccessKey"])))


def _wait_until_works(
    keys: AccessKeys,
    region: str,
    clients: Clients,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    timeout: float,
) -> bool:
    # IAM keys are eventually consistent: a new key can be refused for a few seconds.
    deadline = clock() + timeout
    while not _works(keys, region, clients):
        if clock() >= deadline:
            return False
        sleep(VERIFY_PAUSE)
    return True


def _discard(iam: Any, user: str, key_id: str) -> None:
    try:
        iam.delete_access_key(UserName=user, AccessKeyId=key_id)
    except Exception:  # best effort: the message already names the key
        return
