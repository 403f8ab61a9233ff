"""errors.reason_of: why a fetch failed, in the system's words, never Python's wrapping."""

from __future__ import annotations

import socket
import urllib.error

import pytest

from tests.helpers import START, make_creds
from vaultd.core.console import signin_token
from vaultd.errors import StsError, reason_of
from vaultd.http.relay import http_fetch


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (
            urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution")),
            "Temporary failure in name resolution",
        ),
        (urllib.error.URLError("unknown url type: ftp"), "unknown url type: ftp"),
        (ConnectionRefusedError(111, "Connection refused"), "Connection refused"),
        (TimeoutError("timed out"), "timed out"),
        (TimeoutError(), "TimeoutError"),
        (ValueError("unknown url type: 'x'"), "unknown url type: 'x'"),
        (urllib.error.URLError(TimeoutError()), "TimeoutError"),
    ],
)
def test_the_reason_is_unwrapped(exc: BaseException, reason: str) -> None:
    assert reason_of(exc) == reason


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_unreachable_federation_endpoint_is_named_with_the_plain_reason(
    closed_port: int,
) -> None:
    url = f"http://127.0.0.1:{closed_port}/federation"
    with pytest.raises(StsError) as info:
        signin_token(url, make_creds(START), None)
    assert info.value.message == f"cannot reach the federation endpoint {url}: Connection refused"


def test_an_unreachable_host_vaultd_is_named_with_the_plain_reason(closed_port: int) -> None:
    fetch = http_fetch(f"http://127.0.0.1:{closed_port}", "token")
    with pytest.raises(StsError) as info:
        fetch()
    url = f"http://127.0.0.1:{closed_port}/vaultd-relay/v1/credentials"
    assert info.value.message == f"cannot reach the host's vaultd at {url}: Connection refused"
