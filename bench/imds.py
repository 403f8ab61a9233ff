"""`make bench`: vaultd's IMDS listener beside a minimal stdlib asyncio server, as ratios.

Brings up its own sandbox (moto as STS, a throwaway keyring, `vaultd serve`, the demo's
`master` role) and `bench/minimal.py`, then measures both in the same run: keep-alive
req/s, p50 and p99 at 1, 16 and 64 connections (wrk when installed, else Python), the
median new-connection GET with 0 and with 9,000 idle loopback connections held elsewhere,
`vaultd status` against `python -c pass`, vaultd's RSS idle and after each kind of load
(keep-alive, a token-PUT flood, new connections), and STS calls made during the run (0).
Loopback only; bounded to a couple of minutes. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from load import (
    idle_connections,
    keep_alive,
    new_connection_median,
    python_load,
    token_for,
)

from vaultd.client import ControlClient
from vaultd.demo import DEMO_CODE, Sandbox

ROLES = "/latest/meta-data/iam/security-credentials/"
PUT = (
    b"PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n"
    b"X-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n"
)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wall_ms(argv: list[str], env: dict[str, str], runs: int = 10) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=True, timeout=30)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, name: str, ours: float, theirs: float, unit: str = "") -> None:
        ratio = ours / theirs if theirs else float("nan")
        self.rows.append((name, f"{ours:,.2f}{unit}", f"{theirs:,.2f}{unit}", f"{ratio:.2f}"))
        print(f"  {name}: vaultd {ours:,.2f}{unit}  reference {theirs:,.2f}{unit}", flush=True)

    def note(self, name: str, value: str) -> None:
        self.rows.append((name, value, "", ""))
        print(f"  {name}: {value}", flush=True)

    def render(self) -> str:
        head = ("figure", "vaultd", "reference", "ratio")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(4)]
        lines = [
            " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
            for row in [head, *self.rows]
        ]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        return "\n".join(lines)


def run(sandbox: Sandbox, seconds: float, idle: int) -> Table:
    control = ControlClient(Path(sandbox.env["VAULTD_CONTROL_SOCKET"]))
    status = control.status()
    pid, calls_before = int(status["pid"]), int(status.get("sts_calls", 0))
    ours = int(sandbox.imds_endpoint.rstrip("/").rsplit(":", 1)[1])
    token = token_for(ours)
    path = ROLES + python_load_role(ours, token)
    body_size = len(fetch_body(ours, path, token))
    minimal = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "minimal.py"), str(body_size)],
        stdout=subprocess.PIPE,
        text=True,
    )
    table = Table()
    try:
        assert minimal.stdout is not None
        theirs = int(minimal.stdout.readline().split()[1])
        their_token = token_for(theirs)
        table.note("owner lookup", str(status.get("owner_check", "(not reported)")))
        table.note("rss idle", f"{rss_mib(pid):.1f} MiB")
        served = 0
        for conns in (1, 16, 64):
            a = keep_alive(ours, path, token, conns, seconds)
            b = keep_alive(theirs, path, their_token, conns, seconds)
            served += int(a.rps * seconds)
            table.add(f"keep-alive c={conns} req/s", a.rps, b.rps)
            table.add(f"keep-alive c={conns} p50", a.p50_ms, b.p50_ms, " ms")
            table.add(f"keep-alive c={conns} p99", a.p99_ms, b.p99_ms, " ms")
            if a.errors or b.errors:
                table.note(f"errors c={conns}", f"{a.errors} / {b.errors}")
        table.note("rss after keep-alive", f"{rss_mib(pid):.1f} MiB (~{served:,} requests)")
        flood = python_load(ours, path, token, 8, seconds, data=PUT)
        table.note(
            "rss after token-PUT flood", f"{rss_mib(pid):.1f} MiB ({flood.rps * seconds:,.0f} PUTs)"
        )
        table.add(
            "new connection median",
            new_connection_median(ours, path, token),
            new_connection_median(theirs, path, their_token),
            " ms",
        )
        with idle_connections(idle):
            table.add(
                f"new connection, {idle} idle",
                new_connection_median(ours, path, token),
                new_connection_median(theirs, path, their_token),
                " ms",
            )
        table.note("rss after new connections", f"{rss_mib(pid):.1f} MiB")
        vaultd = str(Path(sys.executable).parent / "vaultd")
        table.add(
            "vaultd status wall",
            wall_ms([vaultd, "status"], sandbox.env),
            wall_ms([sys.executable, "-c", "pass"], sandbox.env),
            " ms",
        )
        table.note(
            "sts calls during run", str(int(control.status().get("sts_calls", 0)) - calls_before)
        )
    finally:
        minimal.kill()
        minimal.wait()
    return table


def fetch_body(port: int, path: str, token: str) -> bytes:
    import socket

    from load import request

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request(path, token, close=True))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.partition(b"\r\n\r\n")[2]


def python_load_role(port: int, token: str) -> str:
    return fetch_body(port, ROLES, token).decode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per load level and server")
    parser.add_argument("--idle", type=int, default=9000, help="idle loopback connections")
    args = parser.parse_args()
    sandbox = Sandbox("127.0.0.1:0", quiet_daemon=True)
    try:
        sandbox.start()
        sandbox.vaultd("switch", "master", "--mfa", DEMO_CODE)
        table = run(sandbox, args.seconds, args.idle)
    finally:
        sandbox.close()
    print()
    print(table.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
