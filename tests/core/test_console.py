"""The console federation endpoint's answer: anything but a JSON object with a SigninToken is
one line naming what is missing, never a RecursionError or AttributeError."""

from __future__ import annotations

import pytest

from tests.helpers import START, answering, make_creds
from vaultd.core.console import signin_token
from vaultd.errors import StsError


@pytest.mark.parametrize("body", [b"[" * 200_000, b"[1, 2]", b"not json"])
def test_an_answer_without_a_token_is_a_one_line_error(body: bytes) -> None:
    with answering(body) as url, pytest.raises(StsError) as info:
        signin_token(url, make_creds(START), None)
    assert info.value.message == "the federation endpoint answered without a SigninToken"


def test_the_token_is_read_from_the_answer() -> None:
    with answering(b'{"SigninToken": "tok"}') as url:
        assert signin_token(url, make_creds(START), 3600) == "tok"
