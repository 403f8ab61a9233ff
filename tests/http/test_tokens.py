"""IMDSv2 token math."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import FakeClock
from vaultd.http.tokens import MEMO_SIZE, Tokens, parse_ttl


def test_ttl_parsing() -> None:
    assert parse_ttl("1") == 1 and parse_ttl("21600") == 21600
    for bad in (None, "", "0", "21601", "-1", "+5", "1.5", "abc", "1e3", "0x10", "9999999"):
        assert parse_ttl(bad) is None, bad


def test_tokens_expire_and_do_not_cross_processes(clock: FakeClock) -> None:
    tokens = Tokens(clock)
    token = tokens.issue(10)
    assert tokens.remaining(token) == 10
    clock.advance(9)
    assert tokens.remaining(token) == 1
    clock.advance(1)
    assert tokens.remaining(token) is None
    assert Tokens(clock).remaining(tokens.issue(10)) is None  # a restarted daemon
    assert Tokens(clock, key=b"other").remaining(tokens.issue(10)) is None


def test_tampered_tokens_are_refused(clock: FakeClock) -> None:
    tokens = Tokens(clock)
    token = tokens.issue(100)
    # 43 characters carry 258 bits for 256: the last one has two spare bits. Only the
    # spelling issued is accepted (else one token would take four places in the memo).
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    group = alphabet.index(token[-1]) // 4 * 4
    for other in alphabet[group : group + 4]:
        if other != token[-1]:
            assert tokens.remaining(token[:-1] + other) is None
    flipped = token[:3] + ("A" if token[3] != "A" else "B") + token[4:]
    assert tokens.remaining(flipped) is None
    assert tokens.remaining(token + "AAAA") is None
    assert tokens.remaining("x" * 500) is None


@given(st.text(max_size=120))
def test_arbitrary_strings_are_never_valid(text: str) -> None:
    tokens = Tokens(FakeClock(), key=b"k" * 32)
    assert tokens.remaining(text) is None


def test_a_checked_token_is_remembered_not_recomputed(clock: FakeClock) -> None:
    tokens = Tokens(clock)
    token = tokens.issue(100)
    macs = 0
    real_mac = tokens._mac

    def counting(expiry: bytes) -> bytes:
        nonlocal macs
        macs += 1
        return real_mac(expiry)

    tokens._mac = counting  # type: ignore[method-assign]
    for _ in range(50):
        assert tokens.remaining(token) == 100
    assert macs == 1
    clock.advance(100)
    assert tokens.remaining(token) is None  # remembered, yet expired on time


def test_the_memo_of_checked_tokens_is_bounded(clock: FakeClock) -> None:
    tokens = Tokens(clock)
    for ttl in range(1, 3 * MEMO_SIZE):
        assert tokens.remaining(tokens.issue(ttl)) == ttl
        assert tokens.remembered <= MEMO_SIZE
    assert tokens.remembered > 0


def test_a_token_lives_its_whole_ttl_whatever_the_fraction_of_the_second() -> None:
    # Real IMDS keeps a token for the seconds asked for. Counting from the whole second
    # would give a TTL=1 token issued at x.9 a tenth of a second.
    clock = FakeClock(1_700_000_000.9)
    tokens = Tokens(clock)
    token = tokens.issue(1)
    clock.advance(0.95)
    assert tokens.remaining(token) is not None
    clock.advance(0.1)
    assert tokens.remaining(token) is None
