"""What the keyring holds per profile, and dropping it: one row per profile (where its
credentials come from, its cached MFA session, whether it is active, how many exec children
hold it) for `vaultd list` and `GET /v1/profiles`, and clearing cached sessions for
`vaultd clear` (through the daemon, or directly when none runs)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vaultd.core.config import Profile
from vaultd.core.credentials import iso8601
from vaultd.core.keystore import Keystore
from vaultd.core.resolve import chain_of, plan, signin_root
from vaultd.errors import ConfigError


def profile_rows(
    profiles: Mapping[str, Profile],
    keystore: Keystore,
    *,
    active: str | None,
    exec_tokens: Mapping[str, int],
    now: float,
) -> list[dict[str, Any]]:
    keys = set(keystore.profiles_with_keys())
    # Sessions are cached under roots and under roles assumed with MFA directly.
    sessions = set(keystore.profiles_with_sessions())
    rows: list[dict[str, Any]] = []
    for name in sorted(set(profiles) | keys):
        # A profile with a wrong value is listed with its problem, not a failed listing.
        problem: str | None = None
        try:
            profile = profiles.get(name)
        except ConfigError as exc:
            profile, problem = None, exc.message
        if profile is not None:
            try:
                # Its chain too (a source_profile loop or a missing source, a role that
                # cannot last as asked), as `switch` would find it, not "via loopb".
                plan(profiles, name)
            except ConfigError as exc:
                problem = exc.message
        cached = keystore.get_session(name) if name in sessions else None
        signin = signin_root(profile) if profile and not profile.source_profile else None
        if problem is not None:
            source = "config error"
        elif signin is not None:
            source = signin.label
        elif name in keys:
            source = "stored keys"
        elif profile and profile.credential_process:
            source = "credential_process"
        elif profile and profile.source_profile:
            source = f"via {profile.source_profile}"
        else:
            source = "-"
        expires = cached.credentials.expiration if cached else None
        rows.append(
            {
                "name": name,
                "in_config": name in profiles,
                "source": source,
                "has_keys": name in keys,
                "source_profile": profile.source_profile if profile else None,
                "role_arn": profile.role_arn if profile else None,
                "mfa_serial": profile.mfa_serial if profile else None,
                "session_expires": iso8601(expires) if expires is not None else None,
                "session_left_seconds": int(expires - now) if expires is not None else None,
                "active": name == active,
                "exec_tokens": int(exec_tokens.get(name, 0)),
                "problem": problem,
            }
        )
    return rows


def sessions_to_clear(
    keystore: Keystore, load_profiles: Callable[[], Mapping[str, Profile]], profile: str | None
) -> list[str]:
    """Every cached session, or those one profile's credentials are built on (its chain
    down to the root). The config is read only for one profile, so clearing everything
    works even while the config file is broken."""
    if profile is None:
        return keystore.profiles_with_sessions()
    return sorted({p.name for p in chain_of(load_profiles(), profile)})


def clear_sessions(
    keystore: Keystore, load_profiles: Callable[[], Mapping[str, Profile]], profile: str | None
) -> tuple[list[str], int]:
    """Delete the cached sessions `sessions_to_clear` names from the keyring; return those
    names and how many were actually there."""
    names = sessions_to_clear(keystore, load_profiles, profile)
    return names, sum(keystore.delete_session(name) for name in names)
