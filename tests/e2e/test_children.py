"""A daemon stopped while an mfa_process runs takes the process with it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import README_CONFIG, shared_config
from tests.e2e.harness import Daemon, vaultd_env
from tests.host.test_children import alive, wait_gone


def test_stopping_the_daemon_ends_a_hung_mfa_process(
    user_keys: tuple[str, str], daemon: Daemon, isolated: Path
) -> None:
    pidfile = isolated / "mfa_process.pid"
    shared_config(
        isolated,
        README_CONFIG + "\n[profile slow]\nsource_profile = identity\n"
        "mfa_serial = arn:aws:iam::111122223333:mfa/elmerfudd\n"
        "role_arn = arn:aws:iam::222233334444:role/DeveloperRole\n"
        f"mfa_process = echo $$ > {pidfile}; exec sleep 60\n",
    )
    daemon.start()
    switch = subprocess.Popen(
        [sys.executable, "-m", "vaultd", "switch", "slow"],
        env=vaultd_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert time.monotonic() < deadline, "the mfa_process never started"
            time.sleep(0.05)
        pid = int(pidfile.read_text())
        assert alive(pid)
        assert daemon.stop() == 0
        assert wait_gone(pid), "the mfa_process outlived the daemon"
    finally:
        switch.kill()
        switch.wait()
