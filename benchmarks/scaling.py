"""Worker scaling: what a second ``edge serve`` worker adds, measured on whatever cores exist.

Issue 14 asks for two workers to give at least 1.8x the throughput of one, with wrk and
the upstream pinned away from the gateway's cores. On a two-core machine that cannot be
arranged: two gateway cores leave none for wrk and the upstream. So this measures what
the claim rests on, with an upstream that costs next to nothing (``canned_upstream.py``)
so the gateway is nearly all the work, in four layouts (pinned with
``sched_setaffinity``, as ``taskset`` does, every thread of every process):

1. one worker on core 0, wrk and the upstream on core 1: one gateway core's throughput
   and CPU per request;
2. the same worker driven by half of wrk's connections: the CPU per request of a worker
   carrying what each of two would carry (an event loop with fewer requests ready per
   turn pays its per-turn costs over fewer requests);
3. two workers, both on core 0, the rest on core 1: the same CPU budget as (1), so any
   cost two workers add (two loops time-sliced on one core, shared metrics files,
   accepts) and how the kernel splits wrk's connections, with nothing else changed;
4. two workers, nothing pinned: the ratio the issue asks for, as this machine allows.

The projection for two cores given to the gateway alone is 2 x the CPU per request of (1)
over that of (2): right if the workers split the connections about evenly (printed: wrk's
split during each run, and the split of bursts of connections opened at once, as wrk
opens them) and share nothing costly. The most (4) could reach here is also printed: the
machine's cores' worth of requests at the CPU per request of gateway, upstream and wrk
together, over (1). CPU comes from ``/proc`` (user + system, all threads; the gateway's
is every process of it, supervisor included); wrk's from this process's reaped-children
times. Layouts are measured interleaved, round after round; a row's CPU per request is
the least of its rounds (other load on a shared machine only ever adds to it), its
req/s the median.

Run as ``python -m benchmarks.scaling [--quick]``; writes benchmarks/results/scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.processes import Child, free_port, spawn, stop, wait_for_file, wait_for_http
from benchmarks.procstat import cpu_seconds
from benchmarks.proctree import connections_per_process, descendants, pin, worker_pids
from benchmarks.scaling_report import (
    PATH,
    Row,
    Settings,
    format_rows,
    judge,
    verdict_document,
)
from benchmarks.wrk import WrkReport, run_wrk, wrk_path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Layout:
    """Where one run puts the gateway and where it puts wrk and the upstream."""

    name: str
    workers: int
    gateway_cores: frozenset[int]
    other_cores: frozenset[int]
    share: int = 1  # wrk opens settings.connections // share connections

    @property
    def server(self) -> tuple[int, frozenset[int]]:
        """Layouts with the same server share one gateway process."""
        return self.workers, self.gateway_cores


def layouts(cores: frozenset[int]) -> list[Layout]:
    """The runs of the module docstring, in their order; on one core, only (3)."""
    everything = frozenset(cores)
    if len(cores) < 2:
        return [Layout("2 workers, all share the one core", 2, everything, everything)]
    first, second = sorted(cores)[:2]
    gateway, rest = frozenset({first}), frozenset({second})
    return [
        Layout(f"1 worker  on core {first}; rest on {second}", 1, gateway, rest),
        Layout(f"1 worker  on core {first}, half the conns", 1, gateway, rest, share=2),
        Layout(f"2 workers on core {first}; rest on {second}", 2, gateway, rest),
        Layout("2 workers, all share every core", 2, everything, everything),
    ]


def gateway_config(bind: str, upstream: str, workers: int) -> dict[str, Any]:
    """The gateway as an operator runs it, but for the worker count and the upstream."""
    return {
        "server": {"bind": [bind], "workers": workers, "graceful_timeout": "1s"},
        "descriptors": {"proto_paths": [str(REPO / "protos")]},
        "upstreams": {"demo": {"address": upstream, "timeout": "10s"}},
        "services": {"*": {"upstream": "demo"}},
    }


@dataclass(frozen=True)
class Gateway:
    layout: Layout
    child: Child
    port: int
    workers: list[int]  # the pids that serve, supervisor excluded

    @property
    def processes(self) -> list[int]:
        return [self.child.pid, *descendants(self.child.pid)]


def start_gateway(children: list[Child], workdir: Path, upstream: str, layout: Layout) -> int:
    """Spawn ``edge serve`` for ``layout`` (appended to ``children`` at once); its port."""
    port = free_port()
    name = f"gateway-{len(children)}"
    config = workdir / f"{name}.yaml"  # JSON is YAML
    config.write_text(json.dumps(gateway_config(f"127.0.0.1:{port}", upstream, layout.workers)))
    argv = [sys.executable, "-m", "edge.cli", "serve", "--config", str(config)]
    children.append(spawn(name, argv, workdir, REPO))
    return port


def ready_gateway(child: Child, port: int, layout: Layout) -> Gateway:
    """Wait until every worker serves and answers right, then pin it where ``layout`` says."""
    reply = wait_for_http(child, f"http://127.0.0.1:{port}{PATH}")
    if b"shelves/1/books/1" not in reply:
        raise RuntimeError(f"{child.name} answered {reply!r}")
    deadline = time.monotonic() + 30
    while _serving(child) < layout.workers:  # the answer above came from any one
        if time.monotonic() > deadline:
            raise RuntimeError(f"not every worker of {child.name} serves:\n{child.log_tail()}")
        child.check_alive()
        time.sleep(0.1)
    workers = worker_pids(child.pid, layout.workers)
    if len(workers) != layout.workers:
        raise RuntimeError(f"{child.name}: expected {layout.workers} workers, found {workers}")
    pin(child.pid, set(layout.gateway_cores))
    return Gateway(layout, child, port, workers)


_SERVING = re.compile(r"\[(\d+)\] \[INFO\] Running on http")


def _serving(child: Child) -> int:
    """How many processes have said they serve (Hypercorn logs ``[pid] [INFO] Running on``
    per listener; each line shows twice, once per log handler, so pids are counted)."""
    try:
        return len(set(_SERVING.findall(child.log.read_text(errors="replace"))))
    except OSError:
        return 0


@dataclass(frozen=True)
class Slice:
    """One wrk run against one gateway, with the CPU each process spent during it."""

    report: WrkReport
    gateway_cpu: float
    worker_cpu: list[float]
    connections: list[int]
    upstream_cpu: float
    wrk_cpu: float


def measure(gateway: Gateway, upstream: Child, seconds: int, settings: Settings) -> Slice:
    """One measured wrk run: CPU read around it, the connection split read during it."""
    cores = gateway.layout.other_cores
    pin(upstream.pid, set(cores))
    target = f"http://127.0.0.1:{gateway.port}{PATH}"
    processes = gateway.processes
    before = {pid: cpu_seconds(pid) for pid in processes}
    upstream_before = cpu_seconds(upstream.pid)
    wrk_before = _children_cpu()
    with ThreadPoolExecutor(1) as pool:  # wrk from a thread pinned where the layout says
        started = time.monotonic()
        connections = settings.connections // gateway.layout.share
        running = pool.submit(drive, target, seconds, connections, settings.threads, cores)
        split = _sample_split(running, gateway, started, seconds)
        report = running.result()
    wrk_cpu = _children_cpu() - wrk_before
    spent = {pid: cpu_seconds(pid) - before[pid] for pid in processes}
    upstream_cpu = cpu_seconds(upstream.pid) - upstream_before
    gateway.child.check_alive()
    return Slice(
        report,
        sum(spent.values()),
        [spent[pid] for pid in gateway.workers],
        split,
        upstream_cpu,
        wrk_cpu,
    )


def summarize(gateway: Gateway, slices: list[Slice], bursts: list[list[int]]) -> Row:
    """A layout's row from its slices: median req/s, and the least CPU per request (the
    machine is shared: other load only ever adds to it)."""
    requests = [s.report.requests for s in slices]
    per_request = [s.gateway_cpu / s.report.requests * 1e6 for s in slices]
    worker_cpu = [sum(cpus) for cpus in zip(*(s.worker_cpu for s in slices), strict=True)]
    return Row(
        layout=gateway.layout.name,
        workers=gateway.layout.workers,
        requests=sum(requests),
        seconds=sum(s.report.seconds for s in slices),
        rps=statistics.median(s.report.rps for s in slices),
        p50_ms=statistics.median(s.report.p50_ms for s in slices),
        p99_ms=max(s.report.p99_ms for s in slices),
        errors=sum(s.report.errors for s in slices),
        gateway_us=min(per_request),
        gateway_us_median=statistics.median(per_request),
        gateway_cores=statistics.median(s.gateway_cpu / s.report.seconds for s in slices),
        worker_cpu_share=[cpu / (sum(worker_cpu) or 1.0) for cpu in worker_cpu],
        worker_connections=[s.connections for s in slices],
        burst_splits=bursts,
        upstream_us=min(s.upstream_cpu / s.report.requests * 1e6 for s in slices),
        wrk_us=min(s.wrk_cpu / s.report.requests * 1e6 for s in slices),
    )


def burst_splits(gateway: Gateway, connections: int, bursts: int) -> list[list[int]]:
    """How the workers split ``connections`` opened at once, as wrk opens its own, over
    ``bursts`` tries: each connection sends one request and reads its reply (so it has
    been accepted) before the count, then all close."""
    splits = []
    request = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    for _ in range(bursts):
        opened = [socket.create_connection(("127.0.0.1", gateway.port)) for _ in range(connections)]
        try:
            for conn in opened:
                conn.sendall(request)
            for conn in opened:
                conn.settimeout(10)
                if not conn.recv(65536).startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"{gateway.child.name}: a burst request failed")
            splits.append(connections_per_process(gateway.port, gateway.workers))
        finally:
            for conn in opened:
                conn.close()
        time.sleep(0.05)  # let the workers see the closes before the next burst
    return splits


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def _sample_split(
    running: Future[WrkReport], gateway: Gateway, started: float, seconds: int
) -> list[int]:
    """Each worker's connections, read three times mid-run; the fullest count is kept (a
    read can miss connections wrk is reopening)."""
    samples = []
    for fraction in (0.3, 0.5, 0.7):
        time.sleep(max(0.0, started + seconds * fraction - time.monotonic()))
        if running.done():
            running.result()  # wrk failed early: say why
        samples.append(connections_per_process(gateway.port, gateway.workers))
    return max(samples, key=sum)


def drive(
    url: str, seconds: int, connections: int, threads: int, cores: frozenset[int]
) -> WrkReport:
    """One wrk run on ``cores``: call it from a thread of its own, whose affinity this
    sets and wrk inherits (pid 0 is the calling thread)."""
    os.sched_setaffinity(0, cores)
    report = run_wrk(url, seconds=seconds, connections=connections, threads=threads)
    if report.errors:
        raise RuntimeError(f"{report.errors} errors from wrk against {url}: figures are void")
    return report


def parse_settings(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(prog="benchmarks.scaling", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=3, help="measured seconds per slice")
    parser.add_argument("--rounds", type=int, default=3, help="slices per layout, interleaved")
    parser.add_argument("--warmup", type=int, default=1, help="discarded seconds per layout")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--bursts", type=int, default=20, help="connection bursts per gateway")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 s, no warm-up")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/scaling.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.warmup, args.bursts = 1, 2, 0, 10
    numbers = (args.duration, args.rounds, args.connections // 2, args.threads)
    if min(numbers) < 1 or args.bursts < 0 or args.warmup < 0:
        parser.error("--duration, --rounds, --threads must be >= 1, --connections >= 2")
    return Settings(
        args.duration,
        args.rounds,
        args.warmup,
        args.connections,
        args.threads,
        args.bursts,
        args.output,
    )


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(argv)
    wrk_path()  # fail before starting anything
    cores = frozenset(os.sched_getaffinity(0))
    plan = layouts(cores)
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="edge-scaling-") as folder:
        workdir = Path(folder)
        try:
            port_file = workdir / "upstream.port"
            argv_up = [sys.executable, "-m", "benchmarks.canned_upstream", str(port_file)]
            upstream = spawn("upstream", argv_up, workdir, REPO)
            children.append(upstream)
            address = f"127.0.0.1:{wait_for_file(upstream, port_file)}"
            servers = {layout.server: layout for layout in reversed(plan)}  # first wins
            ports = {
                key: start_gateway(children, workdir, address, layout)
                for key, layout in servers.items()
            }
            started = {
                key: ready_gateway(child, ports[key], servers[key])
                for key, child in zip(servers, children[1:], strict=True)
            }
            gateways = [replace(started[layout.server], layout=layout) for layout in plan]
            bursts = {
                g.layout.server: burst_splits(g, settings.connections, settings.bursts)
                for g in started.values()
                if g.layout.workers > 1
            }
            if settings.warmup:
                for gateway in gateways:  # discarded
                    measure(gateway, upstream, settings.warmup, settings)
            slices: list[list[Slice]] = [[] for _ in gateways]
            for _ in range(settings.rounds):  # interleaved: drift is spread over all rows
                for index, gateway in enumerate(gateways):
                    slices[index].append(measure(gateway, upstream, settings.seconds, settings))
            rows = [
                summarize(g, slices[i], bursts.get(g.layout.server, []))
                for i, g in enumerate(gateways)
            ]
        finally:
            for child in reversed(children):
                stop(child)
            os.sched_setaffinity(0, cores)
    verdict = judge(rows)
    print(format_rows(rows, verdict, settings))
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "meta": {
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": platform.node(),
            "cores": sorted(cores),
            "python": platform.python_version(),
            "settings": {k: str(v) for k, v in asdict(settings).items()},
        },
        "rows": [asdict(row) for row in rows],
        "verdict": verdict_document(verdict),
    }
    settings.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {settings.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
