"""`vaultd relay`: IMDS for containers on a docker network, fed by the host's daemon.

The relay holds no long-lived keys and never sees an MFA code: it asks the host's daemon
for the active profile's temporary credentials, over the host's control socket bind-mounted
into the container (Linux), or over HTTP to the host's IMDS listener with a shared token
(Docker Desktop, where Unix sockets do not cross into the VM). It serves them with the same
IMDS surface as the daemon, through a Broker of its own, so refresh timing, backoff and
single-flight are the same; `vaultd switch` on the host changes what containers see within
one poll interval. The listener and its loops are assembled by `vaultd.daemon.Relay`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from vaultd.client import ControlClient, ControlError, DaemonNotRunning
from vaultd.core import resolve
from vaultd.core.broker import Broker
from vaultd.core.credentials import Credentials, from_document
from vaultd.errors import ConfigError, NoProfile, StsError, VaultdError, reason_of
from vaultd.http.imds import RELAY_PATH
from vaultd.untrusted import json_object

log = logging.getLogger("vaultd.relay")
POLL_INTERVAL = 10.0
Fetch = Callable[[], dict[str, Any]]


def socket_fetch(path: Path) -> Fetch:
    client = ControlClient(path, timeout=10)

    def fetch() -> dict[str, Any]:
        try:
            return client.call("GET", "/v1/credentials")
        except DaemonNotRunning:
            raise StsError(f"the host's vaultd is not running (no daemon on {path})") from None
        except ControlError as exc:
            if exc.code == "no_profile":
                raise NoProfile(str(exc)) from None
            raise StsError(f"the host's vaultd has no credentials: {exc}") from None

    return fetch


def http_fetch(upstream: str, token: str) -> Fetch:
    if not upstream.startswith(("http://", "https://")):
        raise ConfigError(f"--upstream must be an http(s) URL, not {upstream!r}")
    url = upstream.rstrip("/") + RELAY_PATH

    def fetch() -> dict[str, Any]:
        request = urllib.request.Request(url, headers={"Authorization": token})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise StsError(f"the host's vaultd answered {exc.code} at {url}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise StsError(f"cannot reach the host's vaultd at {url}: {reason_of(exc)}") from None
        answer = json_object(raw)
        if answer is None:
            raise StsError(f"the host's vaultd answered something not a JSON object at {url}")
        return answer

    return fetch


class RelayProvider:
    """A provider whose "STS" is the host daemon; the profile is whatever the host serves."""

    def __init__(self, fetch: Fetch, clock: Callable[[], float]) -> None:
        self.fetch = fetch
        self.clock = clock
        self.last: dict[str, Any] = {}

    def poll(self) -> dict[str, Any]:
        self.last = self.fetch()
        return self.last

    def plan(self, name: str) -> resolve.Plan:
        doc = self.last if self.last.get("Profile") == name else {}
        arn = doc.get("RoleArn")
        # Never executed here: it only names the role and region the host reported.
        roles = (resolve.RoleStep(name, str(arn), "relay", 3600, None),) if arn else ()
        return resolve.Plan(
            target=name,
            root=name,
            session=False,
            mfa_serial=None,
            roles=roles,
            region=str(doc.get("Region") or resolve.DEFAULT_REGION),
            role_name=str(doc.get("RoleName") or name),
        )

    def credentials(self, name: str, mfa_code: str | None = None) -> Credentials:
        doc = self.poll()
        if doc.get("Profile") != name:
            raise StsError(f"the host now serves {doc.get('Profile')!r}, not {name!r}")
        try:
            return from_document(doc)
        except (KeyError, ValueError):
            raise StsError("the host's vaultd answered an incomplete credentials set") from None

    def has_auto_code(self, plan: resolve.Plan) -> bool:
        return False

    # The relay holds no keys and no keyring: there is nothing to federate, list or clear.
    def federation_token(self, name: str, duration: int) -> Credentials:
        raise StsError("vaultd relay cannot make console sessions: ask the host's vaultd")

    def drop_sessions(self, profile: str | None) -> tuple[list[str], int]:
        return [], 0

    def inventory(self, active: str | None, exec_tokens: Mapping[str, int]) -> list[dict[str, Any]]:
        return []


async def follow_host(broker: Broker, provider: RelayProvider, interval: float) -> None:
    """Switch when the host does; the broker refreshes on its own schedule in between."""
    last_problem = ""
    while True:
        try:
            doc = await asyncio.to_thread(provider.poll)
        except VaultdError as exc:
            if exc.message != last_problem:  # once per change, not every interval
                log.warning("%s", exc.message)
                last_problem = exc.message
        else:
            if last_problem:
                log.info("the host's vaultd answers again")
                last_problem = ""
            profile = doc.get("Profile")
            current = broker.active_slot()
            if profile and profile != broker.active:
                log.info("the host serves %s now", profile)
                try:
                    await broker.switch(str(profile))
                except VaultdError as exc:
                    log.warning("%s", exc.message)
            elif (
                current is not None
                and current.creds is not None
                and doc.get("AccessKeyId") != current.creds.access_key_id
            ):
                with contextlib.suppress(VaultdError):
                    await broker.refresh()  # the host renewed: pick the new set up now
        await asyncio.sleep(interval)
