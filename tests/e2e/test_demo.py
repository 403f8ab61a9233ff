"""`vaultd demo` from start to Ctrl-C: it serves the role, then leaves nothing behind."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.harness import vaultd_env


def test_demo_serves_the_role_and_cleans_up() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaultd", "demo", "--listen", "127.0.0.1:0"],
        env=vaultd_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Ready."):
            break
    output = "".join(lines)
    assert "assumed-role/DeveloperRole" in output, output
    found = re.search(r"keyring under (\S+)", output)
    assert found is not None
    workdir = Path(found.group(1))
    assert workdir.exists()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Demo stopped" in out
    assert not workdir.exists()
    assert "Traceback" not in err
