"""Streaming benchmark: server-streamed messages/s through the gateway vs direct gRPC.

One run, side by side: N messages of one server stream read (1) directly with grpc.aio,
(2) through the gateway over HTTP as NDJSON (read by curl into a file), and (3) through
the gateway's WebSocket bridge (read by the websockets client), each warmed up, then
round after round. For each: messages/s and the gateway's and upstream's CPU per message,
from /proc. The upstream is Python's grpc.aio, and it is the limit of every row here;
``benchmarks.go_compare`` runs the same streams from a Go upstream beside grpc-gateway.
Run with ``python -m benchmarks.streaming`` (``scripts/bench`` runs it too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc.aio
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from benchmarks.processes import Child, free_port, spawn, stop, wait_for_file, wait_for_http
from benchmarks.procstat import cpu_seconds
from edgetest.v1 import kitchen_pb2 as pb

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class StreamFigures:
    scenario: str
    messages: int
    seconds: float
    gateway_cpu_s: float | None
    upstream_cpu_s: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def per_message_us(self, cpu: float | None) -> str:
        return "-" if cpu is None else f"{cpu / self.messages * 1e6:,.1f}"


async def _direct(address: str, count: int, padding: int) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        rpc = channel.unary_stream(
            "/edgetest.v1.StreamService/Count",
            request_serializer=pb.CountRequest.SerializeToString,
            response_deserializer=pb.Tick.FromString,
        )
        received = 0
        async for _ in rpc(pb.CountRequest(count=count, padding=padding)):
            received += 1
        return received


async def _websocket(url: str, padding: int) -> int:
    received = 0
    async with connect(url, subprotocols=[Subprotocol("edge.grpc-ws.v1")], max_size=None) as ws:
        await ws.send(json.dumps({"message": {"padding": padding}}))
        async for frame in ws:
            if isinstance(frame, str) and frame.startswith('{"message"'):
                received += 1
    return received


def read_ndjson(url: str, out: Path) -> Callable[[], int]:
    """A reader for ``measure``: curl -N into a file, then its lines counted.

    Into a file, not a pipe: read through a pipe, this process woke for every chunk curl
    wrote, a fourth busy process on a two-core machine, and held the whole body in memory.
    """

    def read() -> int:
        subprocess.run(["curl", "-sS", "-N", "-o", str(out), url], check=True, timeout=600)
        return out.read_bytes().count(b"\n")

    return read


def measure(scenario: str, run: object, gateway: Child | None, upstream: Child) -> StreamFigures:
    gateway_before = cpu_seconds(gateway.pid) if gateway else None
    upstream_before = cpu_seconds(upstream.pid)
    started = time.perf_counter()
    messages = asyncio.run(run) if asyncio.iscoroutine(run) else run()  # type: ignore[operator]
    seconds = time.perf_counter() - started
    gateway_cpu = (
        cpu_seconds(gateway.pid) - gateway_before
        if gateway is not None and gateway_before is not None
        else None
    )
    return StreamFigures(
        scenario, messages, seconds, gateway_cpu, cpu_seconds(upstream.pid) - upstream_before
    )


def start_stream_stack(
    workdir: Path,
    children: list[Child],
    name: str,
    server: dict[str, object] | None = None,
    *,
    sections: dict[str, dict[str, object]] | None = None,
    gateway_module: list[str] | None = None,
    ready_timeout: float = 30.0,
) -> tuple[Child, Child, str, str]:
    """The stream upstream and a gateway in front of it, each a child process.

    ``server`` and ``sections`` add to the gateway's config sections (``sections`` by
    section name); ``gateway_module`` replaces ``-m edge.cli`` (a traced gateway runs the
    same CLI). Returns (upstream, gateway, the upstream's address, the gateway's bind);
    both are appended to ``children`` as soon as they start, for the caller to stop.
    """
    port_file = workdir / f"{name}-upstream.port"
    upstream = spawn(
        f"{name}-upstream",
        [sys.executable, "-m", "benchmarks.stream_upstream", str(port_file)],
        workdir,
        REPO,
    )
    children.append(upstream)
    address = f"127.0.0.1:{wait_for_file(upstream, port_file)}"
    bind = f"127.0.0.1:{free_port()}"
    config = workdir / f"{name}-gateway.yaml"
    settings: dict[str, dict[str, object]] = {
        "server": {"bind": [bind], "graceful_timeout": "1s", **(server or {})},
        "descriptors": {"proto_paths": [str(REPO / "tests" / "protos")]},
        "upstreams": {"streams": {"address": address, "timeout": "600s"}},
        "services": {"*": {"upstream": "streams"}},
        "websocket": {"allowed_origins": ["*"]},
    }
    for section, values in (sections or {}).items():
        settings[section] = {**settings.get(section, {}), **values}
    config.write_text(json.dumps(settings))
    argv = [sys.executable, *(gateway_module or ["-m", "edge.cli"])]
    gateway = spawn(f"{name}-gateway", [*argv, "serve", "--config", str(config)], workdir, REPO)
    children.append(gateway)
    wait_for_http(gateway, f"http://{bind}/v1/count/1", timeout=ready_timeout)
    return upstream, gateway, address, bind


def run_all(count: int, padding: int, workdir: Path, rounds: int = 3) -> list[StreamFigures]:
    """Each reader once on a short stream (warm-up), then all of them round after round,
    summed: a row measured alone, once, took whatever else the machine did then, and the
    same code read 27k and 61k messages/s minutes apart."""
    children: list[Child] = []
    try:
        upstream, gateway, address, bind = start_stream_stack(workdir, children, "stream")
        out = workdir / "stream.ndjson"
        readers: list[tuple[str, Callable[[int], object], Child | None]] = [
            ("direct grpc.aio stream", lambda n: _direct(address, n, padding), None),
            (
                "gateway HTTP NDJSON stream",
                lambda n: read_ndjson(f"http://{bind}/v1/count/{n}?padding={padding}", out),
                gateway,
            ),
            (
                "gateway WebSocket stream",
                lambda n: _websocket(f"ws://{bind}/v1/count/{n}", padding),
                gateway,
            ),
        ]
        for scenario, make, child in readers:
            measure(scenario, make(min(count, 2_000)), child, upstream)
        measured: dict[str, list[StreamFigures]] = {scenario: [] for scenario, _, _ in readers}
        for _ in range(rounds):
            for scenario, make, child in readers:
                figure = measure(scenario, make(count), child, upstream)
                if figure.messages != count:
                    raise RuntimeError(f"{scenario}: {figure.messages} of {count} messages")
                measured[scenario].append(figure)
        return [_summed(scenario, figures) for scenario, figures in measured.items()]
    finally:
        for child in reversed(children):
            stop(child)


def _summed(scenario: str, figures: list[StreamFigures]) -> StreamFigures:
    gateway = [f.gateway_cpu_s for f in figures if f.gateway_cpu_s is not None]
    return StreamFigures(
        scenario,
        sum(f.messages for f in figures),
        sum(f.seconds for f in figures),
        sum(gateway) if gateway else None,
        sum(f.upstream_cpu_s for f in figures),
    )


def format_table(figures: list[StreamFigures]) -> str:
    lines = [
        f"{'scenario':<28}  {'messages':>9}  {'msgs/s':>9}  {'gateway us/msg':>14}  "
        f"{'upstream us/msg':>15}"
    ]
    for f in figures:
        lines.append(
            f"{f.scenario:<28}  {f.messages:>9,}  {f.rate:>9,.0f}  "
            f"{f.per_message_us(f.gateway_cpu_s):>14}  {f.per_message_us(f.upstream_cpu_s):>15}"
        )
    direct = figures[0].rate
    for f in figures[1:]:
        lines.append(f"{f.scenario}: {f.rate / direct:.2f}x the direct gRPC rate")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--padding", type=int, default=100, help="bytes of payload per message")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, summed")
    parser.add_argument("--quick", action="store_true", help="20,000 messages, one round")
    args = parser.parse_args(argv)
    count = 20_000 if args.quick else args.messages
    rounds = 1 if args.quick else args.rounds
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="edge-stream-bench-") as tmp:
        figures = run_all(count, args.padding, Path(tmp), rounds)
    print(format_table(figures))
    print(
        f"{rounds} interleaved round(s) of {count:,} messages each; load average "
        f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after (a busy machine starves "
        "the Python upstream, which sets these rates: see benchmarks.go_compare)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
