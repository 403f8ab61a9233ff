"""The daemon assembled and run in-process by the one runner, stopped by its trigger."""

from __future__ import annotations

import asyncio
import gc
import signal
import tempfile
from pathlib import Path

import aiohttp
import pytest

from vaultd import settings
from vaultd.client import ControlClient
from vaultd.daemon import Daemon, ServeError, run


def short_socket_path() -> Path:
    # Unix socket paths are limited to ~104 bytes; pytest's tmp paths can be longer.
    return Path(tempfile.mkdtemp(prefix="vdd-")) / "control.sock"


async def test_a_daemon_runs_in_process_until_its_shutdown_trigger() -> None:
    path = short_socket_path()
    daemon = Daemon(settings.load(listen="127.0.0.1:0", control_socket=str(path)), sockets={})
    shutdown, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(daemon, shutdown, ready))
    await asyncio.wait_for(ready.wait(), 30)
    status = await asyncio.to_thread(ControlClient(path, timeout=10).status)
    assert (status["state"], status["endpoint"]) == ("no_profile", daemon.endpoint)
    # Start-up's objects are frozen out of the collector's full passes (tail latency).
    assert gc.get_freeze_count() > 0
    gc.unfreeze()
    async with (
        aiohttp.ClientSession() as http,
        http.get(daemon.endpoint + "latest/meta-data/iam/") as reply,
    ):
        assert reply.status == 404  # no profile: no role attached, as on EC2
    shutdown.set()
    await asyncio.wait_for(task, 30)
    assert not path.exists()  # the socket it made is removed
    assert asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM) is False


async def test_a_failed_start_releases_what_was_bound() -> None:
    first_path = short_socket_path()
    first = Daemon(settings.load(listen="127.0.0.1:0", control_socket=str(first_path)), sockets={})
    ready = asyncio.Event()
    shutdown = asyncio.Event()
    task = asyncio.create_task(run(first, shutdown, ready))
    await asyncio.wait_for(ready.wait(), 30)
    # Same control socket, another IMDS port: the IMDS listener binds, the control one cannot.
    second = Daemon(settings.load(listen="127.0.0.1:0", control_socket=str(first_path)), sockets={})
    with pytest.raises(ServeError, match="another vaultd is already running"):
        await run(second)
    assert second.imds._listeners == []  # the IMDS listener it bound was closed again
    shutdown.set()
    await asyncio.wait_for(task, 30)
