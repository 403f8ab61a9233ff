"""The address rules of `Guard` on their own (the HTTP tests run them through the server),
and the comparison of a header with a secret."""

from __future__ import annotations

import pytest

from vaultd.http.guards import Guard, same_secret


def test_a_gateway_is_refused_inside_an_allowed_network() -> None:
    # The relay's network gateway is the host: any of its users could come from there.
    guard = Guard.for_listener("169.254.169.254", 80, ["169.254.169.0/24"], ["169.254.169.1"])
    refusal = guard.peer_refusal("169.254.169.1")
    assert refusal is not None and "gateway" in refusal
    assert guard.peer_refusal("::ffff:169.254.169.1") == refusal  # v4-mapped is the same
    assert guard.peer_refusal("169.254.169.7") is None
    assert (
        Guard.for_listener("169.254.169.254", 80, ["169.254.169.0/24"]).peer_refusal(
            "169.254.169.1"
        )
        is None
    )  # no gateway given: only the network counts


@pytest.mark.parametrize(
    "given",
    [
        None,
        "",
        "wrong",
        b"a.\xe9".decode("utf-8", "surrogateescape"),  # how the parser decodes a byte 0xE9
        "s3cret-token-of-16\udce9",  # the secret, then a byte that is not UTF-8
        "\ud800",  # a lone surrogate no parser makes: still just text that is not the secret
        "s3cret-token-of-16\x00",
    ],
)
def test_header_text_that_is_not_the_secret_is_refused_never_raises(given: str | None) -> None:
    assert same_secret(given, "s3cret-token-of-16") is False


def test_the_secret_itself_matches() -> None:
    assert same_secret("s3cret-token-of-16", "s3cret-token-of-16")
    assert same_secret("sécret-ünicode-16", "sécret-ünicode-16")  # a token file's UTF-8 text
