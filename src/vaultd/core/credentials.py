"""The credential value types passed between layers, every wire shape they travel in, and
the one reader of the times that arrive from outside.

Each shape is written here once and nowhere else: the IMDS credentials document, the
container-credentials (ECS) document, the document the control API and `vaultd relay` pass
around, `credential_process` output, the environment variables and the shared-credentials
file section. Every expiry time vaultd reads (STS, credential_process, the relay's upstream,
the control API) goes through `parse_time`.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from vaultd.mfa_code import CODE_IN_TEXT
from vaultd.secret import Secret


def iso8601(epoch: float) -> str:
    """The only timestamp shape every SDK accepts: UTC, whole seconds, capital Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


# The latest instant an ISO 8601 expiry (and so every SDK) can write: 9999-12-31T23:59:59Z.
LATEST = 253402300799.0


def epoch_time(value: object) -> float:
    """`value` as an instant in seconds since the epoch (UTC), if it is a sane one: an int
    or float (not a bool or text), finite, from 1970 to the end of year 9999.

    Raises TypeError (not a number) or ValueError (not a sane instant), saying what is
    wrong but never the value: `inf` or `NaN` would crash `iso8601` and make every expiry
    comparison lie.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("a time must be a number of seconds")
    try:
        seconds = float(value)
    except OverflowError:
        raise ValueError("a time must lie between 1970 and 9999") from None
    if not math.isfinite(seconds):
        raise ValueError("a time must be finite, not infinity or NaN")
    if not 0 <= seconds <= LATEST:
        raise ValueError("a time must lie between 1970 and 9999")
    return seconds


def parse_time(value: object) -> float:
    """An ISO 8601 time (or a `datetime`, as botocore returns) as seconds since the epoch.

    AWS documents every time it hands out (STS `Expiration`, credential_process
    `Expiration`, the container-credentials document) as ISO 8601 in UTC. A time written
    without a zone is therefore read as UTC, never as the machine's local time: a daemon
    started with `TZ=Asia/Tokyo` must read the same instant as one started in London.

    Raises ValueError (its message names the value's shape, not the value) when the text is
    not ISO 8601 or not a sane instant (`epoch_time`).
    """
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise ValueError("not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return epoch_time(moment.timestamp())


def mask_key_id(access_key_id: str) -> str:
    """Key ids are not secret, but showing only the tail is enough to tell keys apart."""
    return "****" + access_key_id[-4:]


# IAM's unique-id prefixes (AKIA user keys, ASIA temporary keys, ...), per the IAM
# identifiers reference.
_KEY_ID = re.compile(
    r"(?<![A-Z0-9])(?:AKIA|ASIA|AIDA|AROA|AGPA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{8,}"
)
# A run of the characters secrets and tokens are written in: base64 (`+/`), its URL-safe
# form (`-_`), hex. Each run is shown or masked whole (`_hides`). Not `=`: it only pads the
# end of base64, and elsewhere it parts a name from its value (`KEY=****`).
_RUN = re.compile(r"[A-Za-z0-9+/_-]+")
# A run this long is a secret or token whatever its case and wherever `-` or `_` split it
# (`abcdefghijklmnopqrstuvwxyzabcdefghijklmn`, `a1b2-c3d4e5f6-g7h8i9j0k1-l2m3n4_o5p6q7r8s`)...
TOKEN_MIN = 20
# ...and so is a shorter piece between `-` and `_` with a lower->upper turn or digits and
# letters (`wJalrSECRET`, `g7h8i9j0k1`), while words of prose (`Credentials`, `expired`)
# stay readable.
MIXED_MIN = 10
# Except names: words (one case or Capitalised, at most 15 letters, perhaps a digit: EC2)
# joined by `-` or `_`, however long: AWS_SECRET_ACCESS_KEY, shared-credentials-file.
_WORD = r"(?:[A-Z]?[a-z]{1,15}|[A-Z]{1,15})[0-9]?"
_NAME = re.compile(rf"{_WORD}(?:[-_]{_WORD})+")
# And paths: each part between `/` a name of lower-case letters and digits (or Capitalised,
# or capitals) joined by `-` or `_`: `usr`, `python3`, `site-packages`, `Users`.
_PATH_WORD = r"(?:[A-Z]?[a-z0-9]+|[A-Z0-9]+)"
_PATH_PART = re.compile(rf"{_PATH_WORD}(?:[-_]{_PATH_WORD})*")
DETAIL_MAX = 200


def _mixed(piece: str) -> bool:
    turns = any(a.islower() and b.isupper() for a, b in itertools.pairwise(piece))
    mixed = any(c.isdigit() for c in piece) and any(c.isalpha() for c in piece)
    return turns or mixed


def _hides(run: str) -> bool:
    """Whether a run of `_RUN` is shaped like a secret or token (see TOKEN_MIN)."""
    if _NAME.fullmatch(run):
        return False
    if len(run) >= TOKEN_MIN:
        return True
    return any(len(piece) >= MIXED_MIN and _mixed(piece) for piece in re.split("[-_]", run))


def _shown(match: re.Match[str]) -> str:
    """A run as `outside_detail` shows it: as it is, or `****`. A path (from `/`, as in
    `/usr/bin/aws` or `~/.aws`, or on from a `.`, as in `python3.11/site-packages`) whose
    parts are all names (`_PATH_PART`) is judged part by part, so a long one stays readable
    and only a token inside it is masked (`cache/****.json`); a base64 secret, whose parts
    mix case, digits and `+`, never passes for one."""
    run = match.group(0)
    before = match.string[match.start() - 1 : match.start()]
    if "/" in run and (run.startswith("/") or before == "."):
        parts = run.split("/")
        if all(_PATH_PART.fullmatch(part) for part in parts if part):
            return "/".join("****" if part and _hides(part) else part for part in parts)
    return "****" if _hides(run) else run


def outside_detail(text: str) -> str:
    """What a tool or service said (stderr, an error body), fit for a log line or status:
    its last non-empty line, at most DETAIL_MAX characters, every access key id shown as
    `mask_key_id` does, and anything shaped like a secret or token (`_hides`) or an MFA
    code (six digits standing alone) replaced by `****`. Prose, paths and shorter numbers
    (an exit status, a line number) stay as they are."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    last = _KEY_ID.sub(lambda m: mask_key_id(m.group(0)), last)
    last = _RUN.sub(_shown, last)
    last = CODE_IN_TEXT.sub("****", last)
    return last if len(last) <= DETAIL_MAX else last[: DETAIL_MAX - 3] + "..."


@dataclass(frozen=True)
class AccessKeys:
    """Long-lived IAM user keys, as stored in the keyring."""

    access_key_id: str
    secret_access_key: Secret = field(repr=False)


@dataclass(frozen=True)
class Credentials:
    """Temporary STS credentials with the time they were minted and the time they lapse."""

    access_key_id: str
    secret_access_key: Secret = field(repr=False)
    session_token: Secret = field(repr=False)
    expiration: float
    issued: float
    # What these credentials are, for status and the IMDS identity document.
    arn: str = ""
    # When the MFA'd credentials these were minted from lapse: after that, renewing them
    # needs a new code. None when no MFA session is involved.
    source_expiration: float | None = None
    # Why the AWS CLI sign-in these came from was left unrefreshed, and until when it lasts
    # (`signin.unrefreshed`), as the fetch decided it: shown in status. None otherwise.
    unrefreshed: str | None = None

    @property
    def lifetime(self) -> float:
        return self.expiration - self.issued

    def remaining(self, now: float) -> float:
        return self.expiration - now


Source = AccessKeys | Credentials


class PlanLike(Protocol):
    """What the documents below need to know about a profile's plan."""

    @property
    def target(self) -> str: ...
    @property
    def role_name(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def role_arn(self) -> str | None: ...


# -- reading ---------------------------------------------------------------------------------
def from_sts(raw: Mapping[str, Any], issued: float, arn: str = "") -> Credentials:
    """The `Credentials` member of an STS answer (GetSessionToken, AssumeRole,
    GetFederationToken): AccessKeyId, SecretAccessKey, SessionToken, Expiration."""
    return Credentials(
        access_key_id=str(raw["AccessKeyId"]),
        secret_access_key=Secret(str(raw["SecretAccessKey"])),
        session_token=Secret(str(raw["SessionToken"])),
        expiration=parse_time(raw["Expiration"]),
        issued=issued,
        arn=arn,
    )


def from_document(doc: Mapping[str, Any]) -> Credentials:
    """The inverse of `document`: what the control API and `vaultd relay` hand over.

    Raises KeyError for a missing field and ValueError for a time that is not ISO 8601.
    """
    return Credentials(
        access_key_id=str(doc["AccessKeyId"]),
        secret_access_key=Secret(str(doc["SecretAccessKey"])),
        session_token=Secret(str(doc["Token"])),
        expiration=parse_time(doc["Expiration"]),
        issued=parse_time(doc["LastUpdated"]),
        arn=str(doc.get("Arn") or ""),
    )


# -- writing ---------------------------------------------------------------------------------
def imds_fields(creds: Credentials, account_id: str | None = None) -> dict[str, object]:
    """IMDS's `iam/security-credentials/ROLE` document, in IMDS's field order; with
    `account_id`, the "extended" form that adds AccountId."""
    fields: dict[str, object] = {
        "Code": "Success",
        "LastUpdated": iso8601(creds.issued),
        "Type": "AWS-HMAC",
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key.reveal(),
        "Token": creds.session_token.reveal(),
        "Expiration": iso8601(creds.expiration),
    }
    if account_id is not None:
        fields["AccountId"] = account_id
    return fields


def container_fields(creds: Credentials, role_arn: str | None) -> dict[str, str]:
    """The container-credentials document (AWS_CONTAINER_CREDENTIALS_FULL_URI) as the SDKs
    read it: AccessKeyId, SecretAccessKey, Token, Expiration, and RoleArn when known."""
    body = {
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key.reveal(),
        "Token": creds.session_token.reveal(),
        "Expiration": iso8601(creds.expiration),
    }
    if role_arn:
        body["RoleArn"] = role_arn
    return body


def document(plan: PlanLike, creds: Credentials) -> dict[str, object]:
    """What the daemon hands its own command line and `vaultd relay`: the profile, its
    role and region, and one credential set (read back with `from_document`)."""
    return {
        "Profile": plan.target,
        "RoleName": plan.role_name,
        "RoleArn": plan.role_arn,
        "Region": plan.region,
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key.reveal(),
        "Token": creds.session_token.reveal(),
        "Expiration": iso8601(creds.expiration),
        "LastUpdated": iso8601(creds.issued),
        "Arn": creds.arn,
    }


def process_fields(creds: Credentials) -> dict[str, object]:
    """`credential_process` output, Version 1 (the AWS CLI's "sourcing credentials with an
    external process" document), so SDKs can run `vaultd export --format json` directly."""
    return {
        "Version": 1,
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key.reveal(),
        "SessionToken": creds.session_token.reveal(),
        "Expiration": iso8601(creds.expiration),
    }


def environment(creds: Credentials, region: str | None = None) -> dict[str, str]:
    """The environment variables every SDK reads first, in that order; the region, when
    given, in both AWS_REGION and AWS_DEFAULT_REGION."""
    values = {
        "AWS_ACCESS_KEY_ID": creds.access_key_id,
        "AWS_SECRET_ACCESS_KEY": creds.secret_access_key.reveal(),
        "AWS_SESSION_TOKEN": creds.session_token.reveal(),
        "AWS_CREDENTIAL_EXPIRATION": iso8601(creds.expiration),
    }
    if region:
        values.update(AWS_REGION=region, AWS_DEFAULT_REGION=region)
    return values


def shared_file_section(profile: str, creds: Credentials, region: str | None = None) -> str:
    """A section of the shared credentials file (`~/.aws/credentials`), newline-terminated."""
    lines = [
        f"[{profile}]",
        f"aws_access_key_id = {creds.access_key_id}",
        f"aws_secret_access_key = {creds.secret_access_key.reveal()}",
        f"aws_session_token = {creds.session_token.reveal()}",
        f"aws_credential_expiration = {iso8601(creds.expiration)}",
    ]
    if region:
        lines.append(f"region = {region}")
    return "\n".join(lines) + "\n"


def signin_session(creds: Credentials) -> dict[str, str]:
    """The `Session` parameter of the console federation endpoint's getSigninToken."""
    return {
        "sessionId": creds.access_key_id,
        "sessionKey": creds.secret_access_key.reveal(),
        "sessionToken": creds.session_token.reveal(),
    }
