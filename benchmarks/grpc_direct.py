"""Direct grpc.aio calls to the demo upstream: the floor the gateway is measured against.

Run as ``python -m benchmarks.grpc_direct TARGET --concurrency N --warmup S --duration S
--watch NAME=PID``. It keeps N GetBook calls in flight on one channel (as the gateway
keeps its calls on one channel per upstream), warms up, then measures a fixed window:
calls completed, latency samples, its own CPU and that of each watched process (the
upstream). It prints one JSON object on stdout and nothing else there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import dataclass, field

import grpc
import grpc.aio

from benchmarks.procstat import cpu_snapshot
from benchmarks.stats import percentile
from edgedemo.library.v1 import library_pb2 as pb
from edgedemo.library.v1 import library_pb2_grpc as pb_grpc

BOOK = "shelves/1/books/1"


@dataclass
class Window:
    """Shared by the workers: whether to record, whether to stop, what was recorded."""

    measuring: bool = False
    stopping: bool = False
    latencies: list[float] = field(default_factory=list)
    errors: int = 0


async def _worker(stub: pb_grpc.LibraryServiceStub, window: Window) -> None:
    request = pb.GetBookRequest(name=BOOK)
    while not window.stopping:
        started = time.perf_counter()
        try:
            await stub.GetBook(request, timeout=10)
        except grpc.aio.AioRpcError:
            if window.measuring:
                window.errors += 1
            continue
        if window.measuring:
            window.latencies.append(time.perf_counter() - started)


async def drive(
    target: str, concurrency: int, warmup: float, duration: float, watch: dict[str, int]
) -> dict[str, object]:
    """Load ``target`` and return the window's figures (raw CPU seconds, not per request)."""
    pids = {"client": os.getpid(), **watch}
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.LibraryServiceStub(channel)
        book = await stub.GetBook(pb.GetBookRequest(name=BOOK), timeout=10)
        if book.name != BOOK:
            raise RuntimeError(f"upstream answered GetBook with {book.name!r}")
        window = Window()
        workers = [asyncio.create_task(_worker(stub, window)) for _ in range(concurrency)]
        try:
            await asyncio.sleep(warmup)
            cpu_before, started = cpu_snapshot(pids), time.perf_counter()
            window.measuring = True
            await asyncio.sleep(duration)
            window.measuring = False
            cpu_after, seconds = cpu_snapshot(pids), time.perf_counter() - started
        finally:
            window.stopping = True
            await asyncio.gather(*workers, return_exceptions=True)
    requests = len(window.latencies)
    return {
        "requests": requests,
        "seconds": seconds,
        "rps": requests / seconds,
        "p50_ms": percentile(window.latencies, 0.50) * 1000,
        "p99_ms": percentile(window.latencies, 0.99) * 1000,
        "max_ms": max(window.latencies, default=0.0) * 1000,
        "errors": window.errors,
        "cpu_seconds": {name: cpu_after[name] - cpu_before[name] for name in pids},
    }


def _watch(value: str) -> tuple[str, int]:
    name, _, pid = value.partition("=")
    return name, int(pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", help="host:port of the upstream")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--watch", type=_watch, action="append", default=[], help="NAME=PID")
    args = parser.parse_args()
    figures = asyncio.run(
        drive(args.target, args.concurrency, args.warmup, args.duration, dict(args.watch))
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
