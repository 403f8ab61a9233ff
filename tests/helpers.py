"""Small test doubles shared by several modules."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vaultd.core.broker import Broker
from vaultd.core.credentials import Credentials
from vaultd.core.resolve import Plan
from vaultd.errors import MfaRejected, MfaRequired, VaultdError
from vaultd.secret import Secret

START = 1_800_000_000.0  # 2027-01-15, a fixed "now" for the fake clock


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_creds(issued: float, lifetime: float = 3600, n: int = 0) -> Credentials:
    return Credentials(
        access_key_id=f"ASIATESTKEY{n:09d}",
        secret_access_key=Secret(f"secret-{n}-" + "x" * 30),
        session_token=Secret(f"token-{n}-" + "y" * 60),
        expiration=issued + lifetime,
        issued=issued,
        arn="arn:aws:sts::222233334444:assumed-role/DeveloperRole/vaultd-test",
    )


def make_plan(name: str = "master", serial: str | None = "arn:aws:iam::111122223333:mfa/e") -> Plan:
    return Plan(
        target=name,
        root="identity",
        session=True,
        mfa_serial=serial,
        roles=(),
        region="eu-west-1",
        role_name="DeveloperRole" if name == "master" else name,
    )


@dataclass
class FakeProvider:
    """Scripted provider: counts calls; can fail, demand MFA, or block until released."""

    clock: Callable[[], float]
    lifetime: float = 3600
    needs_mfa: bool = False
    valid_code: str = "123456"
    failure: VaultdError | None = None
    calls: list[tuple[str, str | None]] = field(default_factory=list)
    gate: threading.Event | None = None
    # When set, credentials say they were minted from an MFA session ending then.
    session_ends: float | None = None
    auto_code: bool = False

    def plan(self, name: str) -> Plan:
        return make_plan(name)

    def has_auto_code(self, plan: Plan) -> bool:
        return self.auto_code

    def federation_token(self, name: str, duration: int) -> Credentials:
        self.calls.append((name, f"federate {duration}"))
        return make_creds(self.clock(), duration, n=len(self.calls))

    def drop_sessions(self, profile: str | None) -> tuple[list[str], int]:
        return [], 0

    def inventory(self, active: str | None, exec_tokens: Mapping[str, int]) -> list[dict[str, Any]]:
        return []

    def credentials(self, name: str, mfa_code: str | None = None) -> Credentials:
        self.calls.append((name, mfa_code))
        if self.gate is not None:
            self.gate.wait(10)
        if self.failure is not None:
            raise self.failure
        if self.needs_mfa:
            if mfa_code is None:
                raise MfaRequired(
                    "needs MFA", profile=name, serial=make_plan(name).mfa_serial or ""
                )
            if mfa_code != self.valid_code:
                raise MfaRejected("STS rejected the MFA code")
            self.needs_mfa = False
        if mfa_code is not None and self.session_ends is not None:
            self.session_ends = self.clock() + 12 * 3600  # a new session
        creds = make_creds(self.clock(), self.lifetime, n=len(self.calls))
        return replace(creds, source_expiration=self.session_ends)


@dataclass
class RecordingAnnouncer:
    statuses: list[str] = field(default_factory=list)
    requests: list[tuple[str, bool]] = field(default_factory=list)
    signins: list[str] = field(default_factory=list)

    def status(self, text: str) -> None:
        self.statuses.append(text)

    def mfa_needed(self, profile: str, serial: str, early: bool) -> None:
        self.requests.append((profile, early))

    def login_needed(self, command: str, message: str) -> None:
        self.signins.append(command)


async def settle(broker: Broker, rounds: int = 200) -> None:
    """Let the broker's background refresh tasks finish (they run the provider in a thread)."""
    for _ in range(rounds):
        pending = [s.task for s in broker.slots.values() if s.task is not None]
        if not pending:
            return
        await asyncio.wait(pending)


@contextlib.contextmanager
def answering(body: bytes) -> Iterator[str]:
    """An HTTP server on loopback that answers every GET with 200 and `body`; yields its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def child_json(argv: list[str], timeout: float) -> dict[str, Any]:
    """Run `argv` (a Python child in a network namespace, say) from the repository's root,
    where it finds `tests`, and return the JSON object it prints; it must exit 0."""
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))
