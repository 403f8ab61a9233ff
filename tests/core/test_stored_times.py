"""An absurd time in a cached session means no session (the tester's finding: a
`session:identity` record with Expiration `inf` or `NaN` crashed switch, IMDS and list,
and `switch master` used it as a source). The keystore reads a cached session in one
place, and every time goes through `credentials.epoch_time`."""

from __future__ import annotations

import json
import math

import keyring
import pytest

from tests.helpers import make_creds
from vaultd.core import config, inventory
from vaultd.core.credentials import epoch_time, parse_time
from vaultd.core.keystore import SERVICE, CachedSession, Keystore

ABSURD = [math.inf, -math.inf, math.nan, 1e300, -5.0, "2027-01-15T08:00:00Z", True, None, [1]]


@pytest.mark.parametrize("field", ["Expiration", "Issued"])
@pytest.mark.parametrize("value", ABSURD, ids=repr)
def test_a_stored_session_with_an_absurd_time_is_no_session(field: str, value: object) -> None:
    store = Keystore()
    store.set_session("identity", CachedSession(None, make_creds(2_000_000_000.0)))
    record = json.loads(keyring.get_password(SERVICE, "session:identity") or "{}")
    record[field] = value
    keyring.set_password(SERVICE, "session:identity", json.dumps(record))
    assert store.get_session("identity") is None
    rows = inventory.profile_rows(
        config.parse_profiles("[profile identity]\n"), store, active=None, exec_tokens={}, now=0
    )
    assert rows[0]["session_expires"] is None


def test_a_sane_stored_session_is_read_back() -> None:
    store = Keystore()
    creds = make_creds(2_000_000_000.0)
    store.set_session("identity", CachedSession(None, creds))
    cached = store.get_session("identity")
    assert cached is not None and cached.credentials == creds


@pytest.mark.parametrize("value", ABSURD, ids=repr)
def test_epoch_time_refuses_absurd_values_in_one_line(value: object) -> None:
    with pytest.raises((ValueError, TypeError), match=r"^a time must ") as info:
        epoch_time(value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["inf", "nan", "0001-01-01T00:00:00Z"])
def test_parse_time_refuses_non_finite_and_absurd_times(text: str) -> None:
    with pytest.raises(ValueError, match=r"ISO 8601|a time must"):
        parse_time(text)
