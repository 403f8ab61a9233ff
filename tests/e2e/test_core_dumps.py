"""No core dumps from the daemon: RLIMIT_CORE 0 and not dumpable, even when started with
core dumps enabled, and `vaultd status` says so. Issue 13 section 6."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Daemon, run_vaultd, vaultd_env

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc and prctl: Linux only"
)
SLEEPER = "import os, sys, time\n{before}\nprint('ready', flush=True)\ntime.sleep(60)\n"


def cores_enabled() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def core_pattern() -> str:
    return Path("/proc/sys/kernel/core_pattern").read_text().strip()


def abort_and_list(argv: list[str], cwd: Path, ready: object) -> list[str]:
    """Start `argv` with core dumps enabled in `cwd`, wait for `ready()`, SIGABRT it, and
    list the core files it left in `cwd`."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=vaultd_env(),
        preexec_fn=cores_enabled,  # noqa: PLW1509 - only sets a limit
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert callable(ready)
        ready(proc)
        proc.send_signal(signal.SIGABRT)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signal.SIGABRT
    time.sleep(0.5)  # the kernel writes the core as the process dies
    return sorted(p.name for p in cwd.iterdir() if p.name.startswith("core"))


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    pattern = core_pattern()
    if pattern.startswith("|") or "/" in pattern:
        pytest.skip(f"core_pattern {pattern!r} does not write into the working directory")
    folder = tmp_path / "cwd"
    folder.mkdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_sigabrt_with_core_dumps_enabled_writes_no_core(workdir: Path) -> None:
    # The control: an ordinary Python process started the same way does leave a core.
    def printed_ready(proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    plain = abort_and_list(
        [sys.executable, "-c", SLEEPER.format(before="")], workdir, printed_ready
    )
    if not plain:
        pytest.skip("this machine writes no core files even for a plain process")
    for name in plain:
        (workdir / name).unlink()

    def serving(proc: subprocess.Popen[str]) -> None:
        deadline = time.monotonic() + 30
        while run_vaultd("status", "--json").returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, "daemon did not start"
            time.sleep(0.1)

    daemon = [sys.executable, "-m", "vaultd", "serve", "--listen", "127.0.0.1:0"]
    assert abort_and_list(daemon, workdir, serving) == []


def test_the_daemon_runs_with_core_dumps_off_and_says_so(daemon: Daemon) -> None:
    daemon.start()
    assert daemon.proc is not None
    limits = Path(f"/proc/{daemon.proc.pid}/limits").read_text()
    core_line = next(line for line in limits.splitlines() if line.startswith("Max core"))
    assert core_line.split()[4:6] == ["0", "0"], core_line
    status = json.loads(run_vaultd("status", "--json").stdout)
    assert status["core_dumps"] == "off (RLIMIT_CORE 0, not dumpable)"
    text = run_vaultd("status").stdout
    assert "core dumps:  off (RLIMIT_CORE 0, not dumpable)" in text


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as another uid needs root")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) missing")
def test_a_process_of_the_same_uid_cannot_read_its_memory_or_environment() -> None:
    """PR_SET_DUMPABLE 0 also keeps same-uid processes out of /proc/PID/mem and environ."""
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    src = str(Path(__file__).resolve().parents[2] / "src")

    def readable(before: str) -> bool:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": src}
        proc = subprocess.Popen(
            [*nobody, sys.executable, "-c", SLEEPER.format(before=before)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            probe = f"open('/proc/{proc.pid}/environ', 'rb').read()"
            done = subprocess.run(
                [*nobody, sys.executable, "-c", probe], capture_output=True, check=False
            )
            return done.returncode == 0
        finally:
            proc.kill()
            proc.wait(10)

    assert readable("")  # the control: same uid, readable
    forbid = "from vaultd.host.coredump import forbid_core_dumps\nforbid_core_dumps()"
    assert not readable(forbid)
