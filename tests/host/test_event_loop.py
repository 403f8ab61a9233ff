"""Choosing and naming the daemon's event loop."""

from __future__ import annotations

import asyncio
import importlib
import sys
from importlib.metadata import version
from types import ModuleType

import pytest

from vaultd.errors import ConfigError
from vaultd.host import event_loop


async def _running() -> str:
    return event_loop.describe(asyncio.get_running_loop())


def test_auto_runs_on_uvloop_when_it_is_installed() -> None:
    chosen = event_loop.choose()
    assert chosen.name == "uvloop"
    assert chosen.run(_running()) == f"uvloop {version('uvloop')}"


def test_asyncio_can_be_asked_for() -> None:
    chosen = event_loop.choose("asyncio")
    assert chosen.factory is None
    assert chosen.run(_running()) == "asyncio"


def _without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def refuse(name: str, package: str | None = None) -> ModuleType:
        if name == "uvloop":
            raise ImportError("No module named 'uvloop'")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", refuse)
    monkeypatch.delitem(sys.modules, "uvloop")


def test_auto_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_uvloop(monkeypatch)
    assert event_loop.choose("auto").run(_running()) == "asyncio"


def test_uvloop_asked_for_by_name_but_missing_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without_uvloop(monkeypatch)
    with pytest.raises(ConfigError, match="uvloop cannot be imported"):
        event_loop.choose("uvloop")


@pytest.mark.parametrize("word", ["", "UVLOOP", "trio", "auto "])
def test_other_words_are_refused(word: str) -> None:
    with pytest.raises(ConfigError, match="event_loop must be one of auto, uvloop, asyncio"):
        event_loop.choose(word)
