"""Reading a request from a client within bounds: its framing, and its body's size, nesting
depth and time.

Malformed HTTP is the client's fault: `ClientFaultLog` logs it as one debug line, where
aiohttp's own server logger writes a traceback at ERROR.

The control API's bodies are flat objects of a few short strings. What arrives may be
anything, so it is read under three bounds, each answered with a 4xx, never a traceback:
its size (aiohttp's `client_max_size`, 413), a deadline for the whole body (408: a client
trickling bytes must not hold a handler open for ever), and the depth of nesting (400:
CPython's json parser recurses, and 60,000 brackets fit in 64 KiB). A client that goes away
halfway has nobody to answer: that is `ClientGone`, not an error of ours.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from vaultd.errors import BadRequest
from vaultd.untrusted import json_value

# Deeper than any body the API takes, far shallower than the parser's recursion limit.
MAX_DEPTH: Final = 32
# Seconds for the whole body to arrive once the headers have; a local client needs far less.
BODY_DEADLINE: Final = 10.0

_TOKENS = re.compile(rb'[\[\]{}"\\]')
_OPEN, _CLOSE, _QUOTE, _BACKSLASH = b"[{", b"]}", ord('"'), ord("\\")


class RequestTimeout(BadRequest):
    code = "request_timeout"
    http_status = 408


class ClientGone(BadRequest):
    """The client closed its connection before the body was complete: nobody reads the
    answer, so callers drop the request quietly."""

    code = "client_gone"


def deeper_than(raw: bytes, limit: int) -> bool:
    """Whether JSON text `raw` nests arrays/objects more than `limit` deep.

    Brackets inside strings do not count. Linear in len(raw), and it stops at the first
    level past the limit. Not a validator: `untrusted.json_value` still judges the text.
    """
    depth = 0
    in_string = False
    escaped_at = -1
    for match in _TOKENS.finditer(raw):
        at = match.start()
        if at == escaped_at:
            continue
        char = raw[at]
        if in_string:
            if char == _BACKSLASH:
                escaped_at = at + 1
            elif char == _QUOTE:
                in_string = False
        elif char == _QUOTE:
            in_string = True
        elif char in _OPEN:
            depth += 1
            if depth > limit:
                return True
        elif char in _CLOSE:
            depth = max(depth - 1, 0)  # stray closers must not buy room for openers
    return False


async def read_json_object(
    request: web.BaseRequest, *, deadline: float = BODY_DEADLINE, max_depth: int = MAX_DEPTH
) -> dict[str, Any]:
    """The request's body as a JSON object; `{}` when there is none.

    Raises BadRequest (400) for text that is not a JSON object or nests deeper than
    `max_depth`, RequestTimeout (408) when the body takes longer than `deadline` seconds,
    ClientGone when the peer closes first, BadRequest for a body whose framing or
    encoding is broken, and lets aiohttp's HTTPRequestEntityTooLarge
    (413) through.
    """
    if not request.can_read_body:
        return {}
    try:
        async with asyncio.timeout(deadline):
            raw = await request.read()
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {deadline:g}s") from None
    except (ConnectionError, asyncio.IncompleteReadError):
        raise ClientGone("the client closed the connection mid-request") from None
    except RequestPayloadError:  # its chunked framing or Content-Encoding is broken
        raise BadRequest("the request body could not be decoded") from None
    if deeper_than(raw, max_depth):
        raise BadRequest(f"the request body nests deeper than {max_depth} levels")
    try:
        value = json_value(raw)
    except ValueError:
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequest("the request body must be a JSON object")
    return value


class ClientFaultLog(logging.Logger):
    """The logger for aiohttp's server protocol (its `logger=` option) on our listeners.

    aiohttp logs every malformed request with `logger.exception`; for HttpProcessingError
    (bad framing, header or chunk: the client's fault, answered 400 by aiohttp) this writes
    one escaped debug line instead. Anything else stays an ERROR with its traceback.
    Records go to `parent`'s handlers.
    """

    def __init__(self, parent: logging.Logger) -> None:
        super().__init__(f"{parent.name}.http")
        self.parent = parent

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        given = kwargs.get("exc_info", True)
        exc = given if isinstance(given, BaseException) else sys.exc_info()[1]
        if isinstance(exc, HttpProcessingError):
            first = (exc.message or type(exc).__name__).strip().splitlines()[0][:200]
            self.debug("bad HTTP from a client (%d): %r", exc.code, first)
            return
        super().exception(msg, *args, **kwargs)
