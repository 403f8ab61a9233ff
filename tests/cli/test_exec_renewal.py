"""`vaultd exec` renews its token while the child runs (the token's lifetime is bounded)."""

from __future__ import annotations

import os
import sys

from vaultd.cli.run import _run_child


def test_the_child_runs_while_the_token_is_renewed() -> None:
    renewals: list[int] = []
    code = _run_child(
        [sys.executable, "-c", "import time, sys; time.sleep(1.0); sys.exit(3)"],
        dict(os.environ),
        renew=lambda: renewals.append(1),
        every=0.2,
    )
    assert code == 3
    assert len(renewals) >= 2  # about five; at least two even on a loaded machine


def test_without_a_token_nothing_is_renewed() -> None:
    assert _run_child([sys.executable, "-c", "pass"], dict(os.environ)) == 0
