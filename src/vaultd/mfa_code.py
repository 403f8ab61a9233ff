"""What an MFA code looks like: STS's TokenCode for a TOTP device is six ASCII digits.

The one rule, for the command line (a code is checked before the daemon is asked) and the
daemon (`vaultd.core.asks`). A leaf importing only `re`: `vaultd mfa CODE` checks its code at
start, and `vaultd.core.mfa` (where codes come from) loads subprocess and the credentials
model, which the control commands never need (issue 14).
"""

from __future__ import annotations

import re

# What a person types: STS's TokenCode for a TOTP device is exactly six digits.
MFA_CODE = re.compile(r"[0-9]{6}")


def is_mfa_code(text: str) -> bool:
    """Whether `text` is a code a person may send: six ASCII digits and nothing else (no
    `١٢٣٤٥٦`, no trailing newline), since STS's TokenCode is `[0-9]{6}`."""
    return MFA_CODE.fullmatch(text) is not None
