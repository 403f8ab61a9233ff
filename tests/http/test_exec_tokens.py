"""Exec tokens end with the process that asked for them, or when their lifetime runs out
without a renewal (issue 13 section 5)."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from tests.helpers import FakeClock, FakeProvider
from vaultd.core.broker import Broker
from vaultd.http.ecs import Grants
from vaultd.http.exec_tokens import ExecTokens


def test_a_token_expires_unless_renewed(clock: FakeClock) -> None:
    grants = Grants(clock, lifetime=900)
    grant, token = grants.issue("master", holder=4242)
    assert grants.check(token) == grant and grant.holder == 4242
    clock.advance(899)
    renewed = grants.renew(grant.id)
    assert renewed is not None and renewed.expires == clock() + 900
    clock.advance(899)
    assert grants.check(token) is not None
    clock.advance(1)
    assert grants.check(token) is None  # expired: refused even before the sweep
    assert grants.renew(grant.id) is None  # and cannot be brought back


def held(broker: Broker, profile: str) -> int:
    slot = broker.slots.get(profile)
    return slot.holders if slot is not None else 0


async def test_the_token_ends_when_its_process_is_killed(clock: FakeClock) -> None:
    broker = Broker(FakeProvider(clock), clock)
    tokens = ExecTokens(Grants(clock), broker)
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(60)"
    )
    try:
        _, token = tokens.issue("master", holder.pid)
        assert held(broker, "master") == 1
        holder.kill()  # SIGKILL: it runs no cleanup of its own
        await holder.wait()
        await asyncio.sleep(0.1)  # the pidfd is readable since the exit: one loop turn
        assert tokens.grants.check(token) is None
        assert held(broker, "master") == 0  # the profile is no longer kept fresh for it
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
        tokens.close()


async def test_the_token_ends_when_its_lifetime_runs_out() -> None:
    clock = time.time  # the expiry timer runs on the loop: a short real lifetime
    broker = Broker(FakeProvider(clock), clock)
    tokens = ExecTokens(Grants(clock, lifetime=0.2), broker)
    grant, _ = tokens.issue("master", holder=None)
    assert tokens.grants.get(grant.id) is not None
    await asyncio.sleep(0.6)
    assert tokens.grants.get(grant.id) is None
    assert held(broker, "master") == 0


def test_revoking_twice_is_harmless(clock: FakeClock) -> None:
    async def scenario() -> None:
        broker = Broker(FakeProvider(clock), clock)
        tokens = ExecTokens(Grants(clock), broker)
        grant, _ = tokens.issue("master", holder=None)
        assert tokens.end(grant.id, "revoked") is not None
        assert tokens.end(grant.id, "revoked") is None
        assert held(broker, "master") == 0

    asyncio.run(scenario())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pidfd is Linux's")
async def test_an_already_dead_holder_ends_the_token_at_once(clock: FakeClock) -> None:
    broker = Broker(FakeProvider(clock), clock)
    tokens = ExecTokens(Grants(clock), broker)
    gone = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await gone.wait()
    grant, _ = tokens.issue("master", gone.pid)
    await asyncio.sleep(0.05)
    assert tokens.grants.get(grant.id) is None
