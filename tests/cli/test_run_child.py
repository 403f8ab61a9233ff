"""Starting a `vaultd exec` child: every way a command cannot start is one line and a
shell's exit status, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vaultd.cli.exits import Failure
from vaultd.cli.run import _run_child


def _file(tmp_path: Path, content: bytes, mode: int) -> str:
    path = tmp_path / "cmd"
    path.write_bytes(content)
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize(
    ("content", "mode", "status", "words"),
    [
        (b"\x7fELF\x00junk", 0o755, 126, "cannot run it"),  # executable bit, not a program
        (b"#!/no/such/interpreter\n", 0o755, 127, "command not found"),
        (b"#!/bin/sh\nexit 0\n", 0o644, 126, "permission denied"),
    ],
)
def test_a_command_that_cannot_start_is_one_line_and_a_shell_status(
    tmp_path: Path, content: bytes, mode: int, status: int, words: str
) -> None:
    command = _file(tmp_path, content, mode)
    with pytest.raises(Failure) as caught:
        _run_child([command], dict(os.environ))
    assert caught.value.exit_code == status
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_command_that_starts_returns_its_status(tmp_path: Path) -> None:
    command = _file(tmp_path, b"#!/bin/sh\nexit 7\n", 0o755)
    assert _run_child([command], dict(os.environ)) == 7
