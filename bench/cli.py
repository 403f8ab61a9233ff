"""Control-command benchmark: wall time of `vaultd status` and `vaultd switch`, as typed.

Each run is a new process of the installed `vaultd` script (interpreter start, imports, one
control-socket round trip, output), the figure a person waits for and the README quotes.
`python -c pass` is measured alongside as the interpreter's own floor (issue 14's goal: the
control commands' p50 within 3x its p50). By default it brings up its own sandbox and switches
to the demo's `master` role, so `switch master` measures a switch whose credentials are
already held; `--control-socket PATH` measures a running daemon.

vaultd's bytecode is written first, as installing it does (pip compiles every module): a
source checkout run with PYTHONDONTWRITEBYTECODE set would otherwise compile each module on
every run, which no installed vaultd does.

Prints one line per command: runs, min, p50 and p90 in milliseconds, and p50 over the p50 of
`python -c pass`.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    """Wall-clock seconds of `runs` sequential runs of `argv`; each must exit 0."""
    took = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, check=False)
        took.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode().strip()}")
    return took


def report(name: str, took: list[float], floor: float) -> float:
    """Print one line for `took` (seconds); `floor` is python -c pass's p50. Returns p50."""
    ms = sorted(t * 1000 for t in took)
    deciles = statistics.quantiles(ms, n=10)
    p50 = statistics.median(ms)
    print(
        f"{name:<22} runs {len(ms):>3}  min {ms[0]:6.1f} ms  p50 {p50:6.1f} ms"
        f"  p90 {deciles[8]:6.1f} ms  {p50 / (floor or p50):4.1f}x"
    )
    return p50


def compile_vaultd() -> None:
    """Write the bytecode of the installed vaultd package, as pip does when it installs one."""
    import vaultd

    compileall.compile_dir(str(Path(vaultd.__file__).parent), quiet=1)


def measure(env: dict[str, str], runs: int) -> None:
    compile_vaultd()
    vaultd = shutil.which("vaultd", path=str(Path(sys.executable).parent)) or "vaultd"
    floor = report("python -c pass", timed([sys.executable, "-c", "pass"], env, runs), 0.0)
    report("vaultd status", timed([vaultd, "status"], env, runs), floor)
    report("vaultd status --json", timed([vaultd, "status", "--json"], env, runs), floor)
    report("vaultd switch master", timed([vaultd, "switch", "master"], env, runs), floor)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--control-socket", help="measure the daemon on this control socket")
    parser.add_argument("--runs", type=int, default=30, help="runs per command")
    args = parser.parse_args()
    if args.control_socket:
        measure({**os.environ, "VAULTD_CONTROL_SOCKET": args.control_socket}, args.runs)
        return 0

    from vaultd.demo import DEMO_CODE, Sandbox

    sandbox = Sandbox("127.0.0.1:0", quiet_daemon=True)
    try:
        sandbox.start()
        sandbox.vaultd("switch", "master", "--mfa", DEMO_CODE)
        measure(sandbox.env, args.runs)
    finally:
        sandbox.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
