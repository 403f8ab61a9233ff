"""The daemon's status in words and in JSON: rendered here, once, from the broker's typed
`Status` snapshot. The control API's `/v1/status` document, the message IMDS gives SDKs when
it has no credentials, and the status line systemd shows all come from these functions."""

from __future__ import annotations

from typing import Any

from vaultd.core.credentials import iso8601
from vaultd.core.state import Reason, Status
from vaultd.errors import MfaRequired, StaleCredentials

NO_PROFILE = "no profile is active: run `vaultd switch PROFILE`"


def message(status: Status) -> str:
    """One sentence for a person: what is served, or what stops it and what to do."""
    profile = status.active
    if status.reason is Reason.SERVING:
        return f"serving {profile}{_signin_note(status)}"
    if status.reason is Reason.FETCHING:
        return f"fetching credentials for {profile}"
    if status.reason is Reason.WAITING_FOR_MFA:
        wants = f"waiting for an MFA code for {profile} ({status.mfa_serial})"
        why = status.error.reason if isinstance(status.error, MfaRequired) else None
        if why:  # what failed before a person was asked: the state line is where it is said
            wants += f"; {why}"
        mfa = status.mfa
        if mfa is not None and mfa.profile != profile:
            # The daemon keeps one request, and `vaultd mfa CODE` answers the open one: a
            # code from this profile's device would go to another device, and be refused.
            device = mfa.serial or "its MFA device"
            return (
                f"{wants}, after the open request for {mfa.profile}: `vaultd mfa CODE` "
                f"answers that one first, with a code from {device}"
            )
        return f"{wants}: run `vaultd mfa CODE`"
    if isinstance(status.error, StaleCredentials) and status.next_retry is not None:
        wait = max(0, round(status.next_retry - status.now))
        return f"{status.error.message} — retrying in {wait}s"
    if status.error is not None:  # STARTUP_ERROR, FAILED: the error's own words
        return status.error.message
    return NO_PROFILE


def _signin_note(status: Status) -> str:
    """Where a root that signs in through the AWS CLI gets its credentials; `aws login`
    credentials served as they are last 15 minutes and are renewed at half-life."""
    plan, held = status.plan, status.held
    if plan is None or held is None or plan.signin is None:
        return ""
    if plan.signin.kind != "login" or plan.roles:
        return f" (from {plan.signin.label})"
    due = iso8601(held.refresh_at)
    return f" (aws login credentials last 15 minutes: renewed at half-life, next at {due})"


def document(status: Status) -> dict[str, Any]:
    """The `/v1/status` JSON (before the daemon's own facts are added), times in ISO 8601
    UTC. Keys and their order are the control API's contract."""
    plan, held, mfa, last = status.plan, status.held, status.mfa, status.last_error
    return {
        "active": status.active,
        "role": plan.role_name if plan else None,
        "role_arn": plan.role_arn if plan else None,
        "region": plan.region if plan else None,
        "state": status.state,
        "message": message(status),
        "credentials": None
        if held is None
        else {
            "access_key_id": held.key_hint,
            "arn": held.arn or None,
            "issued": iso8601(held.issued),
            "expires": iso8601(held.expires),
            "expires_in": int(held.expires - status.now),
            "refresh_at": iso8601(held.refresh_at),
            "unrefreshed_signin": held.unrefreshed,
        },
        "mfa": None
        if mfa is None
        else {
            "profile": mfa.profile,
            "serial": mfa.serial,
            "since": iso8601(mfa.opened),
            "early": mfa.early,
            "session_ends": iso8601(mfa.session_ends) if mfa.session_ends else None,
            "command": "vaultd mfa CODE",
        },
        "last_error": None
        if last is None
        else {**last.error.to_json(), "at": iso8601(last.at), "failures": last.failures},
        "next_retry": iso8601(status.next_retry) if status.next_retry is not None else None,
    }
