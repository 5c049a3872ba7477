"""Soak: well-behaved calls beside hostile clients, and what the gateway keeps afterwards.

For the first half of the run, hostile clients keep coming: uploads answered before their
body ends (a client stream the upstream refuses at once, its 1.5 MB body sent anyway),
readers that stop reading an HTTP stream or a WebSocket, and clients that hang up as soon
as their stream is asked for. Throughout, a few well-behaved clients make short calls and
their latencies are kept. For the second half only the well-behaved clients run.

Every two seconds the gateway process (a child, ``edge serve``) is sampled: resident
memory, open descriptors, and the streams the gateway holds open (``/admin/pipeline``).
The report shows them over time: they should be flat once the hostile clients have left,
and the well-behaved calls' p99 beside each phase. Run with ``python -m benchmarks.soak``
(``--seconds``; ``--quick`` for 16 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from wsproto import ConnectionType, WSConnection
from wsproto.events import Message, Request

from benchmarks.processes import Child, stop
from benchmarks.stats import percentile
from benchmarks.streaming import start_stream_stack

REPO = Path(__file__).resolve().parents[1]
SEND_TIMEOUT = "3s"  # the gateway's server.send_timeout here: stalled readers turn over


@dataclass
class Sample:
    at: float
    phase: str
    rss_mib: float
    fds: int
    open_streams: int
    tasks: int
    good_calls: int


@dataclass
class Soak:
    host: str
    port: int
    hostile: bool = True
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"hostile": [], "calm": []})
    hostile_clients: int = 0
    hostile_sockets: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def phase(self) -> str:
        return "hostile" if self.hostile else "calm"


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _streams_and_tasks(base: str) -> tuple[int, int]:
    """Streams the gateway holds open, and its asyncio tasks (``/admin/pipeline``)."""
    with urllib.request.urlopen(f"{base}/admin/pipeline", timeout=5) as answer:
        state = json.load(answer)
    return int((state.get("streams") or {}).get("open", 0)), int(state.get("tasks", 0))


async def _connect(
    soak: Soak, rcvbuf: int | None = None, *, hostile: bool = True
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (soak.host, soak.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    if hostile:
        soak.hostile_sockets.add(writer)  # dropped at once when the calm half begins
    return reader, writer


async def _early_answered_upload(soak: Soak) -> None:
    body = b'{"value": 1}\n' * 115_000
    reader, writer = await _connect(soak)
    head = (f"POST /v1/sum HTTP/1.1\r\nHost: soak\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with contextlib.suppress(ConnectionError):
        writer.write(head + body)
        async with asyncio.timeout(10):
            await reader.read()
    writer.close()


async def _stalled_http_reader(soak: Soak) -> None:
    reader, writer = await _connect(soak, rcvbuf=4096)
    writer.write(b"GET /v1/count/100000000?padding=2000 HTTP/1.1\r\nHost: soak\r\n\r\n")
    with contextlib.suppress(ConnectionError, TimeoutError):
        async with asyncio.timeout(15):  # never reads; the gateway cuts it at send_timeout
            await writer.wait_closed()
            while await reader.read(1):  # (only once the connection has gone)
                pass
    writer.close()


async def _stalled_websocket(soak: Soak) -> None:
    client = WSConnection(ConnectionType.CLIENT)
    reader, writer = await _connect(soak, rcvbuf=4096)
    target = "/v1/count/100000000"
    writer.write(client.send(Request(host="soak", target=target, subprotocols=["edge.grpc-ws.v1"])))
    with contextlib.suppress(ConnectionError, TimeoutError, asyncio.IncompleteReadError):
        client.receive_data(await reader.readuntil(b"\r\n\r\n"))
        list(client.events())  # the handshake's answer: the socket is open
        writer.write(client.send(Message(data=json.dumps({"message": {"padding": 2000}}))))
        async with asyncio.timeout(15):
            await asyncio.sleep(15)  # and never reads again
    writer.transport.abort()


async def _hang_up_at_once(soak: Soak) -> None:
    _, writer = await _connect(soak)
    writer.write(b"GET /v1/count/100000000 HTTP/1.1\r\nHost: soak\r\n\r\n")
    await writer.drain()
    writer.transport.abort()


async def _hostile(soak: Soak, kind: str) -> None:
    attacks = {
        "upload": _early_answered_upload,
        "http-reader": _stalled_http_reader,
        "websocket": _stalled_websocket,
        "hang-up": _hang_up_at_once,
    }
    attack = attacks[kind]
    while soak.hostile:
        soak.hostile_clients += 1
        with contextlib.suppress(Exception):
            await attack(soak)
        await asyncio.sleep(0.05)


async def _well_behaved(soak: Soak) -> None:
    while True:
        reader, writer = await _connect(soak, hostile=False)
        try:
            for _ in range(50):
                started = time.perf_counter()
                writer.write(b"GET /v1/count/3 HTTP/1.1\r\nHost: soak\r\n\r\n")
                await reader.readuntil(b"0\r\n\r\n")  # the chunked stream's end
                soak.latencies[soak.phase].append(time.perf_counter() - started)
                await asyncio.sleep(0.01)
        finally:
            writer.close()


async def run(gateway: Child, base: str, seconds: float) -> tuple[list[Sample], Soak]:
    host, port = base.removeprefix("http://").split(":")
    soak = Soak(host, int(port))
    tasks = [asyncio.create_task(_well_behaved(soak)) for _ in range(4)]
    hostile = [
        asyncio.create_task(_hostile(soak, kind))
        for kind in ("upload", "http-reader", "http-reader", "websocket", "websocket", "hang-up")
        for _ in range(3)
    ]
    tasks += hostile
    samples: list[Sample] = []
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            if soak.hostile and elapsed >= seconds / 2:  # the hostile clients leave, all
                soak.hostile = False
                for task in hostile:
                    task.cancel()
                await asyncio.gather(*hostile, return_exceptions=True)
                for writer in soak.hostile_sockets:
                    writer.transport.abort()
            gateway.check_alive()
            streams, tasks_open = await asyncio.to_thread(_streams_and_tasks, base)
            samples.append(
                Sample(
                    round(elapsed),
                    soak.phase,
                    _rss_mib(gateway.pid),
                    len(list(Path(f"/proc/{gateway.pid}/fd").iterdir())),
                    streams,
                    tasks_open,
                    sum(len(v) for v in soak.latencies.values()),
                )
            )
            await asyncio.sleep(2)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return samples, soak


def report(samples: list[Sample], soak: Soak) -> str:
    lines = [
        f"{'t (s)':>6}  {'phase':<8}  {'RSS MiB':>8}  {'fds':>5}  {'streams':>7}  {'tasks':>5}  "
        f"{'calls':>6}"
    ]
    for s in samples:
        lines.append(
            f"{s.at:>6}  {s.phase:<8}  {s.rss_mib:>8.1f}  {s.fds:>5}  {s.open_streams:>7}  "
            f"{s.tasks:>5}  {s.good_calls:>6}"
        )
    for phase, latencies in soak.latencies.items():
        if latencies:
            ms = sorted(x * 1000 for x in latencies)
            lines.append(
                f"well-behaved calls while {phase}: {len(ms)}, p50 {percentile(ms, 0.50):.1f} ms, "
                f"p99 {percentile(ms, 0.99):.1f} ms"
            )
    calm = [s for s in samples if s.phase == "calm"]
    first_hostile = samples[0]
    if calm:
        lines.append(
            f"hostile clients: {soak.hostile_clients}; after they left: RSS "
            f"{calm[0].rss_mib:.1f} -> {calm[-1].rss_mib:.1f} MiB (started at "
            f"{first_hostile.rss_mib:.1f}), fds {calm[-1].fds} (started at {first_hostile.fds}), "
            f"tasks {calm[-1].tasks} (started at {first_hostile.tasks}), "
            f"open streams {calm[-1].open_streams}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="16 s instead")
    args = parser.parse_args(argv)
    seconds = 16.0 if args.quick else args.seconds
    with tempfile.TemporaryDirectory(prefix="edge-soak-") as tmp:
        workdir = Path(tmp)
        children: list[Child] = []
        try:
            _, gateway, _, bind = start_stream_stack(
                workdir, children, "soak", {"send_timeout": SEND_TIMEOUT}
            )
            base = f"http://{bind}"
            samples, soak = asyncio.run(run(gateway, base, seconds))
        finally:
            for child in reversed(children):
                stop(child)
    print(report(samples, soak))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
