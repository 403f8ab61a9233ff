"""The address rules of `Guard` on their own (the HTTP tests run them through the server)."""

from __future__ import annotations

from vaultd.http.guards import Guard


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
