"""`vaultd relay`'s fetch from the host daemon: whatever the host answers, a one-line
StsError, never a RecursionError or TypeError that would end the relay's follow loop."""

from __future__ import annotations

import pytest

from tests.helpers import answering
from vaultd.errors import StsError
from vaultd.http.imds import RELAY_PATH
from vaultd.http.relay import http_fetch


@pytest.mark.parametrize("body", [b"[" * 200_000, b"[1, 2]"])
def test_an_answer_that_is_no_json_object_is_a_one_line_error(body: bytes) -> None:
    with answering(body) as url, pytest.raises(StsError) as info:
        http_fetch(url, "t" * 32)()
    assert info.value.message == (
        f"the host's vaultd answered something not a JSON object at {url}{RELAY_PATH}"
    )
