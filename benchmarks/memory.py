"""Memory: the gateway worker's resident memory per idle WebSocket and per open server stream.

Each scenario gets a fresh gateway worker (``edge serve``, one process) in front of an
upstream whose streams stay open (``benchmarks.stream_upstream``), so memory freed by one
scenario cannot be reused by the next and hide its cost. After a warm-up (a few
connections of the scenario opened and closed, so first-use allocations are not charged
to the connections), the worker's ``VmRSS`` is read; then client processes
(``benchmarks.memory_clients``, about 2,500 raw sockets each) open N connections and hold
them, and ``VmRSS`` is read again: (after - before) / N is the cost of one connection. The
asyncio tasks the worker holds (``/admin/pipeline``) are read beside it, so the tasks per
connection are counted too.

Scenarios: ``ws-idle`` (a WebSocket that has done its handshake and sent nothing) at 1,000
and 10,000; ``ws-floor``, the same sockets held by a bare Hypercorn app configured as the
gateway (``benchmarks.bare_app``: stock Hypercorn's cost per socket, which edge's own
WebSocket stream, ``edge.ingress.ws_exchange``, undercuts);
``ws-stream`` (a WebSocket whose server stream has sent one message and is
quiet) and ``http-stream`` (the same stream over HTTP, NDJSON) at 1,000. The verdict is
the issue's target: 10,000 idle WebSockets in one worker within 300 MB. Figures go to
``benchmarks/results/memory.json``. Run with ``python -m benchmarks.memory`` (``--quick``:
1,000 connections only; ``--trace N``: instead, name what an idle socket's memory is made
of, with tracemalloc in the worker: ``benchmarks.memory_traced``).

A 10,000-socket worker needs settings an operator would have to give too (``BENCH_SETTINGS``):
``server.max_streams_per_client`` (100: every client here is 127.0.0.1) and
``server.max_streams`` (10,000 counts every open stream, so 10,000 streaming sockets leave
no room) raised, ``websocket.first_frame_timeout`` (10 s) raised for sockets that are
silent from the start, and the process's open-file limit at least N plus a few hundred.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import resource
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.memory_clients import open_one
from benchmarks.processes import Child, free_port, spawn, stop, wait_for_file, wait_for_http
from benchmarks.streaming import start_stream_stack

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "memory.json"
TARGET_SOCKETS = 10_000
TARGET_MIB = 300
SOCKETS_PER_CLIENT = 2_500
HANDSHAKES_IN_FLIGHT = 96  # in all client processes together: under Hypercorn's backlog (100)
WARM_UP = 20

# What a deployment holding 10,000 sockets on one worker has to change from the defaults.
BENCH_SETTINGS: dict[str, dict[str, object]] = {
    "server": {"max_streams": 4 * TARGET_SOCKETS, "max_streams_per_client": None},
    "websocket": {"first_frame_timeout": "3600s", "allowed_origins": ["*"]},
}


@dataclass(frozen=True)
class Sample:
    """The worker at one moment: resident memory, descriptors, tasks and streams open."""

    rss_kib: int
    fds: int
    tasks: int
    streams: int


@dataclass(frozen=True)
class MemoryFigures:
    scenario: str
    connections: int
    before: Sample
    after: Sample
    open_seconds: float

    @property
    def kib_per_connection(self) -> float:
        return (self.after.rss_kib - self.before.rss_kib) / self.connections

    @property
    def tasks_per_connection(self) -> float:
        return (self.after.tasks - self.before.tasks) / self.connections

    def as_json(self) -> dict[str, object]:
        return {
            **asdict(self),
            "kib_per_connection": round(self.kib_per_connection, 2),
            "tasks_per_connection": round(self.tasks_per_connection, 2),
        }


def raise_fd_limit(needed: int) -> int:
    """Raise this process's soft open-file limit to the hard one (children inherit it).

    Raises when even the hard limit is too low for ``needed`` descriptors: the figures of
    a gateway refusing connections with EMFILE would be meaningless.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        raise RuntimeError(f"open-file limit {target} < {needed}: raise it (ulimit -Hn)")
    return target


def rss_kib(pid: int) -> int:
    """``VmRSS`` of ``pid`` in KiB (resident memory, shared pages included)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def sample(gateway: Child, base: str) -> Sample:
    gateway.check_alive()
    if gateway.name.startswith("ws-floor"):  # the bare app has no admin endpoint
        return Sample(
            rss_kib(gateway.pid), len(list(Path(f"/proc/{gateway.pid}/fd").iterdir())), 0, 0
        )
    with urllib.request.urlopen(f"{base}/admin/pipeline", timeout=30) as answer:
        state = json.load(answer)
    return Sample(
        rss_kib(gateway.pid),
        len(list(Path(f"/proc/{gateway.pid}/fd").iterdir())),
        int(state.get("tasks", 0)),
        int((state.get("streams") or {}).get("open", 0)),
    )


@contextlib.contextmanager
def holding_stack(
    workdir: Path, name: str, gateway_module: list[str] | None = None, ready_timeout: float = 30.0
) -> Iterator[tuple[Child, str]]:
    """The holding upstream and one gateway worker before it; both stopped on the way out.

    ``gateway_module`` replaces ``-m edge.cli`` (the traced gateway runs the same CLI).
    Yields the gateway and its ``host:port``.
    """
    children: list[Child] = []
    try:
        _, gateway, _, bind = start_stream_stack(
            workdir,
            children,
            name,
            sections={**BENCH_SETTINGS, "descriptors": {"watch": False}},
            gateway_module=gateway_module,
            ready_timeout=ready_timeout,
        )
        yield gateway, bind
    finally:
        for child in reversed(children):
            stop(child)


async def _warm_up(host: str, port: int, kind: str) -> None:
    """Open and close a few connections, so first-use costs are in the baseline."""
    for sock in await asyncio.gather(*(open_one(host, port, kind) for _ in range(WARM_UP))):
        sock.close()
    await asyncio.sleep(0.5)  # the gateway notices the closes and ends those sessions


@contextlib.contextmanager
def clients(workdir: Path, bind: str, kind: str, count: int, name: str = "") -> Iterator[float]:
    """``count`` connections of ``kind`` held by client processes; yields the seconds it took."""
    host, port = bind.split(":")
    processes = max(1, math.ceil(count / SOCKETS_PER_CLIENT))
    shares = [count // processes + (index < count % processes) for index in range(processes)]
    in_flight = max(1, HANDSHAKES_IN_FLIGHT // processes)
    started = time.perf_counter()
    children: list[Child] = []
    try:
        ready: list[tuple[Child, Path]] = []
        for index, share in enumerate(shares):
            ready_file = workdir / f"{name or kind}-{count}-{index}.ready"
            ready_file.unlink(missing_ok=True)
            child = spawn(
                f"{name or kind}-{count}-clients-{index}",
                [
                    sys.executable,
                    "-m",
                    "benchmarks.memory_clients",
                    str(ready_file),
                    f"--host={host}",
                    f"--port={port}",
                    f"--kind={kind}",
                    f"--count={share}",
                    f"--in-flight={in_flight}",
                ],
                workdir,
                REPO,
            )
            children.append(child)
            ready.append((child, ready_file))
        opened = 0
        for child, ready_file in ready:
            report = json.loads(wait_for_file(child, ready_file, timeout=120))
            if report["failed"]:
                raise RuntimeError(f"{child.name}: {report['failed']} failed: {report['errors']}")
            opened += report["opened"]
        if opened != count:
            raise RuntimeError(f"{kind}: {opened} of {count} connections open")
        yield time.perf_counter() - started
    finally:
        for child in children:
            stop(child)


@contextlib.contextmanager
def floor_server(workdir: Path, name: str) -> Iterator[tuple[Child, str]]:
    """A bare Hypercorn app that holds WebSockets (``benchmarks.bare_app``): the floor."""
    bind = f"127.0.0.1:{free_port()}"
    server = spawn(name, [sys.executable, "-m", "benchmarks.bare_app", bind], workdir, REPO)
    try:
        wait_for_http(server, f"http://{bind}/")
        yield server, bind
    finally:
        stop(server)


def measure(workdir: Path, kind: str, count: int) -> MemoryFigures:
    """One scenario on a fresh gateway: RSS before, N connections held, RSS after.

    ``ws-floor`` is ``ws-idle`` against the bare Hypercorn app instead of the gateway.
    """
    name = f"{kind}-{count}"
    server = floor_server(workdir, name) if kind == "ws-floor" else holding_stack(workdir, name)
    client_kind = "ws-idle" if kind == "ws-floor" else kind
    with server as (gateway, bind):
        base = f"http://{bind}"
        host, port = bind.split(":")
        asyncio.run(_warm_up(host, int(port), client_kind))
        before = sample(gateway, base)
        with clients(workdir, bind, client_kind, count, kind) as seconds:
            time.sleep(1.0)  # let the last sessions settle (their tasks started, frames sent)
            after = sample(gateway, base)
    return MemoryFigures(kind, count, before, after, seconds)


def verdict(figures: list[MemoryFigures]) -> str | None:
    """The issue's target line, when the run had 10,000 idle WebSockets."""
    for f in figures:
        if f.scenario == "ws-idle" and f.connections == TARGET_SOCKETS:
            mib = f.after.rss_kib / 1024
            mark = "PASS" if mib <= TARGET_MIB else "MISS"
            return (
                f"RSS of the worker with {TARGET_SOCKETS:,} idle WebSockets: {mib:.0f} MiB "
                f"= {mib * 1.048576:.0f} MB (target <= {TARGET_MIB} MiB, the issue's "
                f"300 MB read as ps and top read it: {mark})"
            )
    return None


def format_table(figures: list[MemoryFigures]) -> str:
    lines = [
        f"{'scenario':<12}  {'N':>7}  {'RSS before MiB':>14}  {'RSS after MiB':>13}  "
        f"{'KiB/conn':>8}  {'tasks/conn':>10}  {'streams':>7}  {'open s':>6}"
    ]
    for f in figures:
        lines.append(
            f"{f.scenario:<12}  {f.connections:>7,}  {f.before.rss_kib / 1024:>14.1f}  "
            f"{f.after.rss_kib / 1024:>13.1f}  {f.kib_per_connection:>8.1f}  "
            f"{f.tasks_per_connection:>10.1f}  {f.after.streams:>7,}  {f.open_seconds:>6.1f}"
        )
    line = verdict(figures)
    if line:
        lines.append(line)
    return "\n".join(lines)


def plan(idle: list[int], streams: int) -> list[tuple[str, int]]:
    return [
        *(("ws-idle", n) for n in idle),
        ("ws-floor", idle[0]),
        ("ws-stream", streams),
        ("http-stream", streams),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 connections only")
    parser.add_argument(
        "--idle",
        type=lambda text: [int(n) for n in text.split(",")],
        help="idle WebSockets per run, comma-separated (default 1000,10000; --quick: 1000)",
    )
    parser.add_argument("--streams", type=int, default=1_000, help="open streams per scenario")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--trace", type=int, metavar="N", help="instead: what N idle WebSockets are made of"
    )
    args = parser.parse_args(argv)
    raise_fd_limit(TARGET_SOCKETS + 1_000)
    if args.trace:
        from benchmarks.memory_traced import run_trace

        print(run_trace(args.trace))
        return 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edge-memory-") as tmp:
        idle = args.idle or ([1_000] if args.quick else [1_000, TARGET_SOCKETS])
        figures = [measure(Path(tmp), kind, n) for kind, n in plan(idle, args.streams)]
    print(format_table(figures))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "figures": [f.as_json() for f in figures],
                "verdict": verdict(figures),
                "settings": BENCH_SETTINGS,
                "elapsed_s": round(time.perf_counter() - started, 1),
            },
            indent=1,
        )
    )
    print(f"took {time.perf_counter() - started:.0f}s; figures in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
