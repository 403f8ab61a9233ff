"""What AWS accepts for each value vaultd reads from a profile and sends on: one table.

Every profile key whose value ends up in an STS or IAM call, an endpoint or an IMDS path is
checked here when the config is read, so a wrong value is named (profile, key, value, what
is expected) before anything is called, never reported later as an opaque STS error.

Sources: the STS API reference's parameter constraints (AssumeRole: RoleArn, RoleSessionName
`[\\w+=,.@-]*` 2-64, ExternalId `[\\w+=,.@:/-]*` 2-1224, SerialNumber `[\\w+=/:,.@-]*` 9-256,
DurationSeconds 900-43200), IAM's role name constraint (`[\\w+=,.@-]+`, 1-64), and
botocore's own region check (`botocore.utils.validate_region_name`). `\\w` in AWS's
patterns is ASCII: letters, digits and underscore. Every pattern here is therefore written
with explicit ASCII classes (`[0-9]`, never `\\d`, which also matches Arabic-Indic and
fullwidth digits) and checked whole with `fullmatch` (`$` lets a trailing newline through).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import botocore.exceptions
import botocore.utils

_W = "A-Za-z0-9_"
ROLE_ARN = re.compile(rf"arn:aws[a-z-]*:iam::[0-9]{{12}}:role/[{_W}+=,.@/-]{{1,512}}")
MFA_SERIAL = re.compile(
    rf"arn:aws[a-z-]*:iam::[0-9]{{12}}:(mfa|u2f)/[{_W}+=,.@/-]+|GA[A-Z0-9]{{10,}}"
)
SESSION_NAME = re.compile(rf"[{_W}+=,.@-]{{2,64}}")
EXTERNAL_ID = re.compile(rf"[{_W}+=,.@:/-]{{2,1224}}")
IAM_ROLE_NAME = re.compile(rf"[{_W}+=,.@-]{{1,64}}")
_NOT_ROLE_NAME = re.compile(rf"[^{_W}+=,.@-]")
TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@dataclass(frozen=True)
class Rule:
    """How one profile key's value must look. `check` returns the problem, or None."""

    check: Callable[[str], str | None]


def _pattern(regex: re.Pattern[str], expected: str) -> Rule:
    return Rule(lambda value: None if regex.fullmatch(value) else expected)


def _seconds(low: int, high: int) -> Rule:
    def check(value: str) -> str | None:
        if not re.fullmatch(r"[0-9]+", value):
            return "must be a whole number of seconds"
        return None if low <= int(value) <= high else f"must be between {low} and {high} seconds"

    return Rule(check)


def _region(value: str) -> str | None:
    try:
        botocore.utils.validate_region_name(value)
    except botocore.exceptions.InvalidRegionError:
        return "is not a region name like eu-west-1 (botocore refuses it)"
    return None


def _boolean(value: str) -> str | None:
    return None if value.lower() in TRUE + FALSE else "must be true or false"


def is_true(value: str) -> bool:
    """A boolean profile value that `_boolean` accepted, as a bool (case-insensitive)."""
    return value.lower() in TRUE


def _one_of(*allowed: str) -> Rule:
    expected = "must be " + " or ".join(repr(a) for a in allowed)
    return Rule(lambda value: None if value in allowed else expected)


RULES: dict[str, Rule] = {
    "role_arn": _pattern(ROLE_ARN, "is not a role ARN (arn:aws:iam::123456789012:role/Name)"),
    "mfa_serial": _pattern(
        MFA_SERIAL, "is not an MFA device ARN (arn:aws:iam::123456789012:mfa/name)"
    ),
    "role_session_name": _pattern(
        SESSION_NAME, "must be 2-64 characters of letters, digits and +=,.@_-"
    ),
    "external_id": _pattern(
        EXTERNAL_ID, "must be 2-1224 characters of letters, digits and +=,.@:/_-"
    ),
    # STS's own bounds for AssumeRole; the role's MaxSessionDuration may be lower.
    "duration_seconds": _seconds(900, 43200),
    "region": Rule(_region),
    "sts_regional_endpoints": _one_of("legacy", "regional"),
    "mfa_ykman": Rule(_boolean),
}


def problem(key: str, value: str) -> str | None:
    """What is wrong with `value` for profile key `key`, or None when AWS would accept it.
    Keys without a rule (commands, profile names) accept anything."""
    rule = RULES.get(key)
    if rule is None:
        return None
    return rule.check(value)


def name_chars(text: str) -> str:
    """`text` with every character an IAM/STS name refuses replaced by `-`."""
    return _NOT_ROLE_NAME.sub("-", text)


def imds_role_name(name: str) -> str:
    """The role name IMDS lists for a profile: one path segment every SDK requests back.

    SDKs append the listed name to `.../security-credentials/` without escaping it, so it
    must look like a real IAM role name (letters, digits and +=,.@_-, at most 64). Any other
    character becomes `-`, and names that URL clients would resolve away (`.`, `..`) or an
    empty result get a `-` added. Profile `team/dev` is served as `team-dev`.
    """
    mapped = name_chars(name)[:64]
    if mapped.strip(".") == "":
        mapped = (mapped + "-")[-64:]
    return mapped
