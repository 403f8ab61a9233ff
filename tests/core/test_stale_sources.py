"""A source that answers with credentials already expired, or already due, is backed off
like a failed STS call: never re-run in a loop, never served past its real expiry."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.helpers import FakeClock, settle
from vaultd.core import config, schedule
from vaultd.core.broker import Broker
from vaultd.core.credentials import iso8601
from vaultd.core.keystore import Keystore
from vaultd.core.provider import Provider
from vaultd.errors import StaleCredentials
from vaultd.http.status import message


class Process:
    """A scripted `credential_process`: prints a set expiring `left` seconds from now."""

    def __init__(self, clock: FakeClock, left: float) -> None:
        self.clock, self.left, self.runs = clock, left, 0

    def __call__(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        self.runs += 1
        doc = {
            "Version": 1,
            "AccessKeyId": f"ASIAPROCESS{self.runs:09d}",
            "SecretAccessKey": "s" * 40,
            "SessionToken": "t" * 80,
            "Expiration": iso8601(self.clock() + self.left),
        }
        return subprocess.CompletedProcess(argv, 0, json.dumps(doc), "")


def make(clock: FakeClock, left: float) -> tuple[Broker, Process]:
    process = Process(clock, left)
    provider = Provider(
        load_profiles=lambda: config.parse_profiles("[profile cp]\ncredential_process = x\n"),
        keystore=Keystore(),
        sts_factory=lambda source, region: None,
        clock=clock,
        env={},
        runner=process,
    )
    return Broker(provider, clock, rand=lambda: 0.5), process


@pytest.mark.parametrize("left", [-8 * 3600, 30, 0])
async def test_a_stale_set_is_backed_off_not_re_run(clock: FakeClock, left: float) -> None:
    broker, process = make(clock, left)
    with pytest.raises(StaleCredentials):
        await broker.switch("cp")
    status = broker.status()
    assert status.state == "stale_credentials"
    assert message(status) == (
        f"credential_process for cp returned credentials that expire at "
        f"{iso8601(clock() + left)} — retrying in 1s"
    )
    assert status.held is None and broker.current() is None
    for _ in range(50):  # the maintenance loop and IMDS polls, with no time passing
        broker.maintain()
        broker.current()
        await settle(broker)
    assert process.runs == 1
    # Each retry waits longer, exactly as after an STS failure.
    delays = []
    for _ in range(4):
        slot = broker.active_slot()
        assert slot is not None and slot.retry_at is not None
        delays.append(slot.retry_at - clock())
        clock.now = slot.retry_at
        broker.maintain()
        await settle(broker)
    assert process.runs == 5
    assert delays == [schedule.backoff(n, lambda: 0.5) for n in (1, 2, 3, 4)]
    # The source recovers: the next retry serves its set.
    process.left = 3600
    slot = broker.active_slot()
    assert slot is not None and slot.retry_at is not None
    clock.now = slot.retry_at
    broker.maintain()
    await settle(broker)
    assert broker.status().state == "ok" and broker.current() is not None


async def test_a_short_but_fresh_set_is_served_until_its_real_expiry(clock: FakeClock) -> None:
    broker, process = make(clock, 10 * 60)
    await broker.switch("cp")
    held = broker.current()
    assert held is not None and process.runs == 1
    assert broker.status().state == "ok"
    # The source keeps answering with the same expiry: renewed at half-life, then backed
    # off once what it answers is too close to expiry; never served past that expiry.
    process.left = 0
    end = held.expiration
    while clock() < end + 60:
        clock.advance(5)
        creds = broker.current()
        assert creds is None or creds.expiration - clock() > schedule.SERVE_MIN_LEFT
        broker.maintain()
        await settle(broker)
        process.left = end - clock()
    # Runs at 5 and 7.5 minutes (half-life), then backoff once the set is stale: about ten, not
    # one per poll (130 polls).
    assert process.runs <= 12
    assert broker.current() is None
