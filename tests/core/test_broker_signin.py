"""The broker when a sign-in (IAM Identity Center, `aws login`) waits for a person: a named
state, one announcement, no credentials served, and picked up again by itself."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from tests.helpers import FakeClock, FakeProvider, RecordingAnnouncer, make_plan, settle
from vaultd.core.broker import SIGNIN_POLL, Broker
from vaultd.core.resolve import Plan, SigninRoot
from vaultd.errors import LoginRequired, SsoLoginRequired
from vaultd.http.status import document

CORP = SigninRoot("sso", "dev-sso", "corp")
CONSOLE = SigninRoot("login", "console", "arn:aws:iam::111122223333:user/elmerfudd")


def expired(root: SigninRoot) -> LoginRequired:
    kind = SsoLoginRequired if root.kind == "sso" else LoginRequired
    return kind(
        f"{root.label}: the sign-in has expired: run `{root.command}`",
        profile=root.profile,
        command=root.command,
    )


@dataclass
class SigninProvider(FakeProvider):
    root: SigninRoot = CORP

    def plan(self, name: str) -> Plan:
        roles = make_plan(name).roles if name != self.root.profile else ()
        return replace(make_plan(name, serial=None), signin=self.root, roles=roles)


def make(
    clock: FakeClock, root: SigninRoot = CORP
) -> tuple[Broker, SigninProvider, RecordingAnnouncer]:
    provider = SigninProvider(clock, root=root)
    announcer = RecordingAnnouncer()
    return Broker(provider, clock, rand=lambda: 0.5, announcer=announcer), provider, announcer


async def test_named_state_one_announcement_and_picked_up_by_itself(clock: FakeClock) -> None:
    broker, provider, announcer = make(clock)
    provider.failure = expired(CORP)
    with pytest.raises(SsoLoginRequired):
        await broker.switch("dev-sso")
    status = document(broker.status())
    assert status["state"] == "sso_login_required"
    assert status["message"].endswith("run `aws sso login --sso-session corp`")
    assert status["credentials"] is None
    assert broker.current() is None  # IMDS answers at once, with nothing
    # A minute of the daemon's loop and IMDS requests: looked at every few seconds,
    # announced once.
    for _ in range(60):
        clock.advance(1)
        broker.maintain()
        broker.current()
        await settle(broker)
    assert len(provider.calls) == 1 + 60 // SIGNIN_POLL
    assert announcer.signins == ["aws sso login --sso-session corp"]
    assert document(broker.status())["last_error"]["command"] == "aws sso login --sso-session corp"
    # `aws sso login` in a terminal; nobody tells vaultd.
    provider.failure = None
    clock.advance(SIGNIN_POLL)
    broker.maintain()
    await settle(broker)
    assert broker.current() is not None
    assert document(broker.status())["state"] == "ok"
    assert announcer.statuses[-1] == "serving dev-sso"
    assert document(broker.status())["message"] == "serving dev-sso (from IAM Identity Center corp)"
    assert broker.signins_wanted == {}


async def test_two_profiles_on_one_sign_in_announce_once(clock: FakeClock) -> None:
    broker, provider, announcer = make(clock)
    provider.failure = expired(CORP)
    broker.hold("master-via-sso")
    with pytest.raises(SsoLoginRequired):
        await broker.switch("dev-sso")
    broker.maintain()
    await settle(broker)
    assert {c[0] for c in provider.calls} == {"dev-sso", "master-via-sso"}
    assert announcer.signins == ["aws sso login --sso-session corp"]


async def test_credentials_still_served_while_the_sign_in_is_renewed(clock: FakeClock) -> None:
    broker, provider, announcer = make(clock)
    await broker.switch("dev-sso")
    held = broker.current()
    provider.failure = expired(CORP)
    clock.advance(31 * 60)  # due; the token has expired meanwhile
    broker.maintain()
    await settle(broker)
    assert broker.current() is held
    assert document(broker.status())["state"] == "ok"
    assert announcer.signins == ["aws sso login --sso-session corp"]  # told early


async def test_aws_login_status_says_half_life(clock: FakeClock) -> None:
    broker, provider, _ = make(clock, CONSOLE)
    provider.lifetime = 900
    await broker.switch("console")
    message = document(broker.status())["message"]
    assert message.startswith("serving console (aws login credentials last 15 minutes")
    assert "renewed at half-life" in message
