"""What the command line expects in the documents it reads from the control socket, and the one
check that turns a malformed document into a one-line error instead of a KeyError traceback.
Every reader of a control-API document (the command line, `vaultd doctor`) checks it here,
which is why this is a leaf module below both.

A shape maps each key to a type, a tuple of types, or a nested shape; a key written `name?`
may be missing or null. Keys a shape does not name are allowed (newer daemons add fields).
Standard library only: `vaultd status` checks its document through this module. (Credentials
documents are read by core.credentials.from_document, where their wire format lives.)
"""

from __future__ import annotations

from collections.abc import Mapping

from vaultd.errors import VaultdError

# typing costs milliseconds to import and only the type checker needs it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    Shape: TypeAlias = Mapping[str, Any]
NUMBER = (int, float)

# GET /v1/status, as `vaultd status` and `vaultd list` read it (and the answer of clear).
STATUS: Shape = {
    "active?": str,
    "state": str,
    "message": str,
    "role_arn?": str,
    "credentials?": {
        "access_key_id": str,
        "expires": str,
        "expires_in": NUMBER,
        "refresh_at": str,
        "unrefreshed_signin?": str,
    },
    "mfa?": {"profile": str, "serial": str, "since?": str, "early?": bool},
    "last_error?": {"error": str, "at": str, "message": str},
    "next_retry?": str,
    "exec_tokens?": dict,
    "listeners?": list,
    "cleared_sessions?": int,
    "config_file?": str,
}

# What `Serving PROFILE (ROLE) until EXPIRES.` reads from the answer of switch, mfa, refresh:
# those answers name the profile now active (none, after a code for an exec's request) and
# its state, and mfa's the profile whose request the code answered; for a profile without a
# role, the ARN the credentials belong to stands for the role, when it is known.
SERVING: Shape = {
    "active?": str,
    "answered?": str,
    "state": str,
    "role_arn?": str,
    "message?": str,
    "credentials?": {"expires": str, "arn?": str},
}

# GET /v1/status from a running daemon, as `vaultd doctor` and `vaultd env` read it: where
# the daemon serves IMDS (the URL SDKs should use) and its process.
RUNNING: Shape = {**STATUS, "endpoint": str, "pid": int}

# POST /v1/exec-tokens: where `vaultd exec`'s child fetches its credentials.
EXEC_GRANT: Shape = {"id": str, "url": str, "token": str, "region?": str}


class MalformedDocument(VaultdError):
    """The daemon answered a document without the shape its reader needs (the command line
    prints the message as its one line and exits 1)."""


def checked(doc: dict[str, Any], shape: Shape, what: str) -> dict[str, Any]:
    """Return `doc` if it has the `shape`; otherwise raise MalformedDocument naming the first
    field that is missing or of the wrong type, e.g. `vaultd answered a malformed status
    document: credentials.expires_in is missing`."""
    problem = _problem(doc, shape, "")
    if problem is not None:
        raise MalformedDocument(f"vaultd answered a malformed {what}: {problem}")
    return doc


def _problem(doc: Mapping[str, Any], shape: Shape, prefix: str) -> str | None:
    for key, expected in shape.items():
        name = key.rstrip("?")
        value = doc.get(name)
        where = f"{prefix}{name}"
        if value is None:
            if key.endswith("?"):
                continue
            return f"{where} is missing"
        if isinstance(expected, Mapping):
            if not isinstance(value, dict):
                return f"{where} is not an object"
            problem = _problem(value, expected, f"{where}.")
            if problem is not None:
                return problem
        elif not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            return f"{where} is {type(value).__name__}, not {_names(expected)}"
    return None


def _names(expected: type | tuple[type, ...]) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    words = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true/false"}
    words |= {"dict": "an object", "list": "a list"}
    return " or ".join(words.get(t.__name__, t.__name__) for t in types)
