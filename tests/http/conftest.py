"""Every async HTTP test here runs on both event loops the daemon may use
(`vaultd.host.event_loop`): asyncio's own and uvloop, so the protocol and guard tests hold
on whichever one serves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
