"""The version is written once, in pyproject.toml; everything that shows it reads that."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import vaultd

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_version_comes_from_pyproject() -> None:
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    assert vaultd.__version__ == declared
    shown = subprocess.run(
        [sys.executable, "-m", "vaultd", "--version"], capture_output=True, text=True, check=True
    )
    assert shown.stdout == f"vaultd {declared}\n"
