"""IMDS benchmark: throughput and latency of the credentials path, memory, and STS calls.

By default it brings up its own sandbox (moto as STS, a throwaway keyring, `vaultd serve`)
and switches to the demo's `master` role; `--endpoint URL --control-socket PATH` measures a
daemon that is already running instead. Each client fetches an IMDSv2 token once, then asks
for the credentials document in a loop over one keep-alive connection, as SDKs do.

Prints one line per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, TCPConnector

from vaultd.client import ControlClient

TOKEN_PATH = "latest/api/token"  # noqa: S105 - a URL path
ROLE_PATH = "latest/meta-data/iam/security-credentials/"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


async def worker(endpoint: str, seconds: float, latencies: list[float]) -> int:
    errors = 0
    async with ClientSession(connector=TCPConnector(limit=1)) as http:
        ttl = {"X-aws-ec2-metadata-token-ttl-seconds": "21600"}
        async with http.put(endpoint + TOKEN_PATH, headers=ttl) as r:
            token = await r.text()
        headers = {"X-aws-ec2-metadata-token": token}
        async with http.get(endpoint + ROLE_PATH, headers=headers) as r:
            url = endpoint + ROLE_PATH + await r.text()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            async with http.get(url, headers=headers) as r:
                body = await r.read()
                if r.status != 200 or b'"Success"' not in body:
                    errors += 1
            latencies.append(time.perf_counter() - start)
    return errors


async def load(endpoint: str, concurrency: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    started = time.perf_counter()
    errors = await asyncio.gather(
        *(worker(endpoint, seconds, latencies) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": quantiles[49] * 1000,
        "p99_ms": quantiles[98] * 1000,
        "errors": sum(errors),
    }


def measure(endpoint: str, control: ControlClient, seconds: float) -> None:
    status: dict[str, Any] = control.status()
    pid = int(status["pid"])
    calls_before = int(status.get("sts_calls", 0))
    print(f"daemon pid {pid}, endpoint {endpoint}, profile {status.get('active')}")
    print(f"rss_idle_kib {rss_kib(pid)}")
    peak = 0
    for concurrency in (1, 16, 64):
        result = asyncio.run(load(endpoint, concurrency, seconds))
        peak = max(peak, rss_kib(pid))
        print(
            f"c={concurrency:<3} requests {result['requests']:.0f}  rps {result['rps']:.0f}  "
            f"p50_ms {result['p50_ms']:.2f}  p99_ms {result['p99_ms']:.2f}  "
            f"errors {result['errors']:.0f}"
        )
    print(f"rss_after_load_kib {rss_kib(pid)} (peak seen {peak})")
    calls_after = int(control.status().get("sts_calls", 0))
    print(f"sts_calls_during_run {calls_after - calls_before}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", help="measure a running daemon at this IMDS URL")
    parser.add_argument("--control-socket", help="that daemon's control socket")
    parser.add_argument("--seconds", type=float, default=5.0, help="per concurrency level")
    args = parser.parse_args()
    if args.endpoint:
        if not args.control_socket:
            parser.error("--endpoint needs --control-socket")
        measure(args.endpoint, ControlClient(Path(args.control_socket)), args.seconds)
        return 0

    from vaultd.demo import DEMO_CODE, Sandbox

    sandbox = Sandbox("127.0.0.1:0", quiet_daemon=True)
    try:
        sandbox.start()
        sandbox.vaultd("switch", "master", "--mfa", DEMO_CODE)
        control = ControlClient(Path(sandbox.env["VAULTD_CONTROL_SOCKET"]))
        measure(sandbox.imds_endpoint, control, args.seconds)
    finally:
        sandbox.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
