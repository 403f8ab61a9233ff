"""What an MFA code looks like: STS's TokenCode for a TOTP device is six ASCII digits.

The one rule, for the command line (a code is checked before the daemon is asked) and the
daemon (`vaultd.core.asks`); `CODE_IN_TEXT` finds one in a tool's output (`core.mfa`) and
masks one in an error line (`core.credentials.outside_detail`). A leaf importing only `re`:
`vaultd mfa CODE` checks its code at start, and `vaultd.core.mfa` (where codes come from)
loads subprocess and the credentials model, which the control commands never need (issue 14).
"""

from __future__ import annotations

import re

# What a person types: STS's TokenCode for a TOTP device is exactly six digits.
MFA_CODE = re.compile(r"[0-9]{6}")
# A code inside other text (a tool's output, an error line), not part of a longer number.
CODE_IN_TEXT = re.compile(r"(?<![0-9])[0-9]{6}(?![0-9])")


def is_mfa_code(text: str) -> bool:
    """Whether `text` is a code a person may send: six ASCII digits and nothing else (no
    `١٢٣٤٥٦`, no trailing newline), since STS's TokenCode is `[0-9]{6}`."""
    return MFA_CODE.fullmatch(text) is not None
