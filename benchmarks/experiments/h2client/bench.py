"""Client CPU per unary call: grpc.aio against the two prototype clients, side by side in one run.

Run as ``python -m benchmarks.experiments.h2client.bench [--calls N] [--rounds R]`` from
the repo root. It starts the demo upstream (``benchmarks.upstream``) in its own process,
then, for each round, runs every (client, loop) pair in a fresh child process so that no
client's threads or caches are charged to another. Each child checks its answers (a
GetBook equal to grpc.aio's, NOT_FOUND with the upstream's message), warms up, then
makes N GetBook calls with 32 in flight on one connection and reports
``time.process_time()`` (all threads of the child) per call. The table shows the median
over rounds; ratios are against grpc.aio on the same loop and against grpc.aio on plain
asyncio.

Requests per second are end to end and bounded by the upstream (a Python grpc.aio
server on the same two cores), so they say little about the clients; the upstream's own
CPU per call is shown to prove every row did the same work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks.processes import spawn, stop, wait_for_file
from benchmarks.procstat import cpu_seconds
from edgedemo.library.v1 import library_pb2 as pb

PATH = "/edgedemo.library.v1.LibraryService/GetBook"
BOOK = "shelves/1/books/1"
MISSING = "shelves/1/books/999"
VARIANTS = ("grpc.aio", "h2lib", "handrolled", "handrolled+memo")
LOOPS = ("asyncio", "uvloop")
ROOT = Path(__file__).resolve().parents[3]

GetBook = Callable[[str], Awaitable[pb.Book]]


# -- child: one client on one loop ------------------------------------------------------


async def _open(variant: str, host: str, port: int) -> tuple[GetBook, Callable[[], Any]]:
    """A ``get_book(name)`` for ``variant`` and how to close it; errors raise ``RpcError``-likes."""
    if variant == "grpc.aio":
        import grpc.aio

        channel = grpc.aio.insecure_channel(f"{host}:{port}")
        method = channel.unary_unary(
            PATH,
            request_serializer=pb.GetBookRequest.SerializeToString,
            response_deserializer=pb.Book.FromString,
        )

        async def grpc_get_book(name: str) -> pb.Book:
            book: pb.Book = await method(pb.GetBookRequest(name=name), timeout=10)
            return book

        return grpc_get_book, lambda: channel.close(None)

    from .h2lib import H2LibClient
    from .handrolled import HandRolledClient

    if variant == "h2lib":
        client: H2LibClient | HandRolledClient = await H2LibClient.connect(host, port)
    else:
        client = await HandRolledClient.connect(host, port, memo=variant == "handrolled+memo")
    path = PATH.encode()

    async def get_book(name: str) -> pb.Book:
        request = pb.GetBookRequest(name=name).SerializeToString()
        reply = await client.unary(path, request, timeout=10)
        return pb.Book.FromString(reply.message)

    return get_book, client.close


async def _error_of(variant: str, get_book: GetBook, name: str) -> dict[str, Any]:
    try:
        await get_book(name)
    except Exception as error:  # the error type is the variant's own
        if variant == "grpc.aio":
            return {"code": error.code().name, "message": error.details()}  # type: ignore[attr-defined]
        return {"code": error.code.name, "message": error.message}  # type: ignore[attr-defined]
    return {"code": "OK", "message": ""}


async def _run_calls(get_book: GetBook, calls: int, concurrency: int) -> None:
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await get_book(BOOK)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _child(args: argparse.Namespace) -> dict[str, Any]:
    host, _, port = args.target.rpartition(":")
    get_book, close = await _open(args.variant, host, int(port))
    try:
        book = await get_book(BOOK)
        error = await _error_of(args.variant, get_book, MISSING)
        await _run_calls(get_book, args.warmup, args.concurrency)
        upstream_before = cpu_seconds(args.upstream_pid)
        times_before = os.times()
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        await _run_calls(get_book, args.calls, args.concurrency)
        cpu = time.process_time() - cpu_before
        times = os.times()
        wall = time.perf_counter() - wall_before
        upstream = cpu_seconds(args.upstream_pid) - upstream_before
    finally:
        result = close()
        if asyncio.iscoroutine(result):
            await result
    return {
        "book": book.SerializeToString(deterministic=True).hex(),
        "error": error,
        "us_per_call": cpu / args.calls * 1e6,
        "sys_us_per_call": (times.system - times_before.system) / args.calls * 1e6,
        "calls_per_s": args.calls / wall,
        "upstream_us_per_call": upstream / args.calls * 1e6,
        "threads": len(os.listdir("/proc/self/task")),
    }


def run_child(args: argparse.Namespace) -> None:
    if args.loop == "uvloop":
        import uvloop

        figures = uvloop.run(_child(args))
    else:
        figures = asyncio.run(_child(args))
    print(json.dumps(figures))


# -- orchestrator -----------------------------------------------------------------------


def _measure(variant: str, loop: str, target: str, upstream_pid: int, args: Any) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "benchmarks.experiments.h2client.bench",
        "--child",
        variant,
        loop,
        "--target",
        target,
        "--upstream-pid",
        str(upstream_pid),
        "--calls",
        str(args.calls),
        "--warmup",
        str(args.warmup),
        "--concurrency",
        str(args.concurrency),
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=180)
    if done.returncode:
        raise RuntimeError(f"{variant}/{loop} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _check(variant: str, loop: str, got: dict[str, Any], reference: dict[str, Any]) -> None:
    """Every client must decode the same Book and the same NOT_FOUND as grpc.aio."""
    book = pb.Book.FromString(bytes.fromhex(got["book"]))
    expected = pb.Book.FromString(bytes.fromhex(reference["book"]))
    if book != expected or book.name != BOOK:
        raise RuntimeError(f"{variant}/{loop}: Book differs from grpc.aio's:\n{book}\n{expected}")
    if got["error"] != reference["error"] or reference["error"]["code"] != "NOT_FOUND":
        raise RuntimeError(f"{variant}/{loop}: error {got['error']} != {reference['error']}")


def _table(results: dict[tuple[str, str], list[dict[str, Any]]]) -> str:
    def median(key: tuple[str, str], field: str) -> float:
        return float(statistics.median(r[field] for r in results[key]))

    base_asyncio = median(("grpc.aio", "asyncio"), "us_per_call")
    lines = [
        "| client | loop | client CPU µs/call (median, min-max) | calls/s | "
        "vs grpc.aio same loop | vs grpc.aio asyncio | upstream µs/call | threads |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for loop in LOOPS:
        base = median(("grpc.aio", loop), "us_per_call")
        for variant in VARIANTS:
            key = (variant, loop)
            us = median(key, "us_per_call")
            spread = [r["us_per_call"] for r in results[key]]
            lines.append(
                f"| {variant} | {loop} | {us:.1f} ({min(spread):.1f}-{max(spread):.1f}) "
                f"| {median(key, 'calls_per_s'):,.0f} | {us / base:.2f}x "
                f"| {us / base_asyncio:.2f}x | {median(key, 'upstream_us_per_call'):.0f} "
                f"| {results[key][0]['threads']} |"
            )
    return "\n".join(lines)


def run_orchestrator(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="h2client-bench-") as scratch:
        port_file = Path(scratch) / "port"
        upstream = spawn(
            "upstream",
            [sys.executable, "-m", "benchmarks.upstream", str(port_file)],
            Path(scratch),
            ROOT,
        )
        try:
            target = f"127.0.0.1:{wait_for_file(upstream, port_file)}"
            results: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for round_number in range(args.rounds):
                for loop in LOOPS:
                    for variant in VARIANTS:
                        upstream.check_alive()
                        got = _measure(variant, loop, target, upstream.pid, args)
                        results.setdefault((variant, loop), []).append(got)
                        print(
                            f"round {round_number + 1}/{args.rounds} {variant:>10} {loop:>7}: "
                            f"{got['us_per_call']:.1f} µs/call",
                            file=sys.stderr,
                        )
            reference = results[("grpc.aio", "asyncio")][0]
            for (variant, loop), runs in results.items():
                for got in runs:
                    _check(variant, loop, got, reference)
        finally:
            stop(upstream)
    print(
        f"{args.calls} GetBook calls per run, {args.concurrency} in flight, after "
        f"{args.warmup} warm-up calls; {args.rounds} rounds; python {sys.version.split()[0]}"
    )
    print(
        f"answers checked: Book == grpc.aio's, {MISSING} -> "
        f"{reference['error']['code']} {reference['error']['message']!r}"
    )
    print(_table(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="5000 calls, 1 round")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "LOOP"), help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--upstream-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.calls, args.warmup, args.rounds = 5_000, 1_000, 1
    if args.child:
        args.variant, args.loop = args.child
        run_child(args)
    else:
        run_orchestrator(args)


if __name__ == "__main__":
    main()
