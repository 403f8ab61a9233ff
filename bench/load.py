"""Load for `make bench`: wrk when installed, else a raw-socket asyncio load generator; the
new-connection latency probe; and a process that holds idle loopback connections.

Loopback only, every loop bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def request(path: str, token: str, close: bool = False) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    return (
        f"GET {path} HTTP/1.1\r\nHost: 169.254.169.254\r\n"
        f"X-aws-ec2-metadata-token: {token}\r\n{extra}\r\n"
    ).encode()


def token_for(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n"
            b"X-aws-ec2-metadata-token-ttl-seconds: 21600\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.partition(b"\r\n\r\n")[2].decode()


_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk_ms(text: str, label: str) -> float:
    found = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    return float(found.group(1)) * _WRK_UNITS[found.group(2)] if found else float("nan")


def wrk(port: int, path: str, token: str, connections: int, seconds: float) -> Load:
    """Keep-alive load with wrk (Debian package `wrk`)."""
    argv = [
        "wrk",
        f"-t{min(2, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-H",
        "Host: 169.254.169.254",
        "-H",
        f"X-aws-ec2-metadata-token: {token}",
        f"http://127.0.0.1:{port}{path}",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out.stdout)
    socket_errors = re.search(r"Socket errors: (.*)", out.stdout)
    errors = int(bad.group(1)) if bad else 0
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    return Load(
        float(rps.group(1)) if rps else 0.0,
        _wrk_ms(out.stdout, "50%"),
        _wrk_ms(out.stdout, "99%"),
        errors,
    )


async def _client(port: int, data: bytes, until: float, latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    try:
        while time.perf_counter() < until:
            start = time.perf_counter()
            writer.write(data)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"Content-Length: (\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            latencies.append(time.perf_counter() - start)
            errors += not head.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()
    return errors


def python_load(
    port: int, path: str, token: str, connections: int, seconds: float, *, data: bytes = b""
) -> Load:
    """The same load from Python when wrk is missing (it is the bottleneck sooner); `data`
    replaces the GET (the token-PUT flood)."""

    async def run() -> Load:
        latencies: list[float] = []
        until = time.perf_counter() + seconds
        started = time.perf_counter()
        errors = await asyncio.gather(
            *(
                _client(port, data or request(path, token), until, latencies)
                for _ in range(connections)
            )
        )
        elapsed = time.perf_counter() - started
        cuts = statistics.quantiles(latencies, n=100)
        return Load(len(latencies) / elapsed, cuts[49] * 1000, cuts[98] * 1000, sum(errors))

    return asyncio.run(run())


def keep_alive(port: int, path: str, token: str, connections: int, seconds: float) -> Load:
    runner = wrk if shutil.which("wrk") else python_load
    return runner(port, path, token, connections, seconds)


def new_connection_medians(targets: list[tuple[int, str, str]], count: int = 200) -> list[float]:
    """Median milliseconds for connect + one GET + the whole answer, a new connection each,
    for each (port, path, token) in `targets`. The targets take turns, one connection each,
    so that every server is timed across the same stretch of a noisy machine, and going
    first in every other round."""
    times: list[list[float]] = [[] for _ in targets]
    order = list(range(len(targets)))
    for _ in range(count):
        for at in order:
            port, path, token = targets[at]
            times[at].append(_new_connection_seconds(port, request(path, token, close=True)))
        order.reverse()  # each goes first in every other round
    return [statistics.median(taken) * 1000 for taken in times]


def _new_connection_seconds(port: int, data: bytes) -> float:
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    elapsed = time.perf_counter() - start
    if not answer.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"new connection answered {answer[:40]!r}")
    return elapsed


@contextlib.contextmanager
def idle_connections(count: int) -> Iterator[None]:
    """`count` idle loopback connections held by another process (both ends) meanwhile."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "hold", str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("holding"):
            raise RuntimeError(f"could not hold {count} connections: {line!r}")
        yield
    finally:
        proc.kill()
        proc.wait()


def _hold(count: int) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * count + 100), hard))
    server = socket.create_server(("127.0.0.1", 0), backlog=4096)
    held = []
    for _ in range(count):
        held.append(socket.create_connection(server.getsockname()))
        held.append(server.accept()[0])
    print("holding", len(held) // 2, flush=True)
    sys.stdin.read()


if __name__ == "__main__" and sys.argv[1:2] == ["hold"]:
    _hold(int(sys.argv[2]))
