"""edge beside grpc-gateway, both in front of the same Go gRPC upstream (issue 14's comparison).

One run on one machine, every server a process of its own on a free loopback port: the Go
upstream (``benchmarks/go/goupstream``, grpc-go), grpc-gateway v1 in front of it
(``benchmarks/go/gogateway``), edge (``edge serve``, the config of ``run.py`` with
``tests/protos`` added so StreamService is served too) and bare Hypercorn
(``bare_app.py``, the floor of any Hypercorn-based server). Then:

- unary, wrk -t1 -c32, every row interleaved round after round (``run.measure_wrk_rounds``):
  the transcoded POST (``wrk_post.lua`` at ``run.POST_PATH``) through grpc-gateway, edge
  and bare Hypercorn, and the GET (``run.GET_PATH``) through both gateways. CPU per request
  of the server and of the upstream from ``/proc``, and edge's ratios to the other two.
- streams: one ``StreamService.Count`` server stream of N messages, read as NDJSON by
  ``curl -N -o FILE`` through grpc-gateway and edge, and through edge's WebSocket bridge
  by the ``websockets`` client (``streaming._websocket``), round after round. Messages/s,
  the gateway's and upstream's CPU per message and the reader's cores, and issue 14's
  verdicts: edge's rate at least half grpc-gateway's and its CPU per message at most
  twice grpc-gateway's. grpc-gateway has no WebSocket proxy here, so the bridge is judged
  against grpc-gateway's NDJSON stream.

The Go binaries come from ``benchmarks/go/build.sh`` (Debian bookworm's golang-go,
grpc-go 1.33.3 and grpc-gateway 1.6.4; ``--install`` there installs them), which this
module runs first and which does nothing when its output is up to date. Run with
``python -m benchmarks.go_compare [--quick]``; ``scripts/bench`` runs it too (its stream
verdicts are issue 14's), but CI does not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import run, streaming
from benchmarks.processes import (
    Child,
    free_port,
    spawn,
    spawn_edge,
    stop,
    wait_for_file,
    wait_for_http,
)
from benchmarks.report import POST_TARGET, Figures, Ratio, fixed_width, format_table
from benchmarks.streaming import StreamFigures
from benchmarks.wrk import wrk_path

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "benchmarks" / "go" / "build.sh"
DEFAULT_BUILD_DIR = REPO / ".venv" / "go-bench"
STREAM_TARGET_RATE = 0.5  # edge's messages/s at least half grpc-gateway's (issue 14)
STREAM_TARGET_CPU = 2.0  # edge's CPU per message at most twice grpc-gateway's (issue 14)
# Debian bookworm's packages the Go side is built from, and the versions they carry.
GO_PACKAGES = {
    "grpc-go": ("golang-google-grpc-dev", "1.33.3"),
    "grpc-gateway": ("golang-github-grpc-ecosystem-grpc-gateway-dev", "1.6.4"),
    "golang-protobuf": ("golang-goprotobuf-dev", "1.3.5"),
}


@dataclass(frozen=True)
class Settings:
    rounds: int
    seconds: int  # per wrk slice: each row runs rounds x seconds in all
    warmup: int
    connections: int
    threads: int
    messages: int
    padding: int
    output: Path
    build_dir: Path
    rebuild: bool


@dataclass(frozen=True)
class Servers:
    upstream: Child
    upstream_address: str
    grpc_gateway: Child
    grpc_gateway_url: str
    edge: Child
    edge_url: str
    bare: Child
    bare_url: str


@dataclass(frozen=True)
class StreamRow:
    """One stream scenario summed over its rounds; CPU in seconds, None where not measured."""

    scenario: str
    reader: str
    messages: int
    seconds: float
    gateway_cpu_s: float
    upstream_cpu_s: float
    reader_cpu_s: float
    identical_to: str | None = None  # the row whose bytes this one's matched, if any

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def gateway_us(self) -> float:
        return self.gateway_cpu_s / self.messages * 1e6

    @property
    def upstream_us(self) -> float:
        return self.upstream_cpu_s / self.messages * 1e6


@dataclass(frozen=True)
class StreamVerdict:
    name: str
    edge: StreamRow
    grpc_gateway: StreamRow

    @property
    def rate_ratio(self) -> float:
        return self.edge.rate / self.grpc_gateway.rate

    @property
    def cpu_ratio(self) -> float:
        return self.edge.gateway_us / self.grpc_gateway.gateway_us

    @property
    def passed(self) -> bool:
        return self.rate_ratio >= STREAM_TARGET_RATE and self.cpu_ratio <= STREAM_TARGET_CPU

    def line(self) -> str:
        rate_ok = "PASS" if self.rate_ratio >= STREAM_TARGET_RATE else "MISS"
        cpu_ok = "PASS" if self.cpu_ratio <= STREAM_TARGET_CPU else "MISS"
        return (
            f"{self.name}: rate {self.edge.rate:,.0f} / {self.grpc_gateway.rate:,.0f} msg/s = "
            f"{self.rate_ratio:.2f}x (target >= {STREAM_TARGET_RATE}x: {rate_ok}); CPU "
            f"{self.edge.gateway_us:.1f} / {self.grpc_gateway.gateway_us:.1f} us/msg = "
            f"{self.cpu_ratio:.2f}x (target <= {STREAM_TARGET_CPU}x: {cpu_ok})"
        )


def parse_settings(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.go_compare", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds of each wrk run, per round"
    )
    parser.add_argument("--warmup", type=int, default=2, help="discarded seconds before each row")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--messages", type=int, default=100_000, help="messages per stream")
    parser.add_argument("--padding", type=int, default=100, help="bytes of payload per message")
    parser.add_argument(
        "--quick", action="store_true", help="1 round of 3 s runs, 1 s warm-ups, 20,000 messages"
    )
    parser.add_argument(
        "--output", type=Path, default=REPO / "benchmarks" / "results" / "go_compare.json"
    )
    parser.add_argument(
        "--build-dir", type=Path, default=DEFAULT_BUILD_DIR, help="benchmarks/go/build.sh's OUT"
    )
    parser.add_argument("--rebuild", action="store_true", help="build the Go binaries again")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup, args.messages = 1, 3, 1, 20_000
    if min(args.rounds, args.duration, args.warmup, args.connections, args.threads) < 1:
        parser.error("--rounds, --duration, --warmup, --connections and --threads must be >= 1")
    if args.messages < 1 or args.padding < 0:
        parser.error("--messages must be at least 1 and --padding at least 0")
    return Settings(
        rounds=args.rounds,
        seconds=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        threads=args.threads,
        messages=args.messages,
        padding=args.padding,
        output=args.output,
        build_dir=args.build_dir,
        rebuild=args.rebuild,
    )


def build(settings: Settings) -> Path:
    """Run benchmarks/go/build.sh (a no-op when up to date); the directory of the binaries."""
    argv = [str(BUILD_SCRIPT), *(["--force"] if settings.rebuild else []), str(settings.build_dir)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{BUILD_SCRIPT.relative_to(REPO)} failed:\n{done.stderr}{done.stdout}")
    _progress(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "built")
    return settings.build_dir / "bin"


def edge_config(bind: str, upstream: str) -> dict[str, Any]:
    """run.py's gateway config against the Go upstream, with StreamService's protos too."""
    settings = run._gateway_config(bind, upstream)
    settings["descriptors"]["proto_paths"].append(str(REPO / "tests" / "protos"))
    # One deadline for unary calls and streams alike: a stream must fit in it on a busy machine.
    settings["upstreams"]["demo"]["timeout"] = "600s"
    settings["websocket"] = {"allowed_origins": ["*"]}  # as benchmarks/streaming.py
    return settings


def start_servers(children: list[Child], workdir: Path, bin_dir: Path) -> Servers:
    """Upstream, grpc-gateway, edge and bare Hypercorn, each appended to ``children`` at once."""
    port_file = workdir / "goupstream.port"
    upstream = spawn("goupstream", [str(bin_dir / "goupstream"), str(port_file)], workdir, workdir)
    children.append(upstream)
    upstream_address = f"127.0.0.1:{wait_for_file(upstream, port_file)}"

    gateway_port_file = workdir / "grpc-gateway.port"
    grpc_gateway = spawn(
        "grpc-gateway",
        [
            str(bin_dir / "gogateway"), "-upstream", upstream_address,
            "-listen", "127.0.0.1:0", "-port-file", str(gateway_port_file),
            # lowerCamelCase field names, as edge prints them: the same reply bytes
            "-orig-names=false",
        ],
        workdir,
        workdir,
    )  # fmt: skip
    children.append(grpc_gateway)

    edge_bind = f"127.0.0.1:{free_port()}"
    edge = spawn_edge("edge", edge_config(edge_bind, upstream_address), workdir, REPO, children)

    bare_bind = f"127.0.0.1:{free_port()}"
    bare = spawn("bare", [sys.executable, "-m", "benchmarks.bare_app", bare_bind], workdir, REPO)
    children.append(bare)

    grpc_gateway_url = f"http://127.0.0.1:{wait_for_file(grpc_gateway, gateway_port_file)}"
    edge_url, bare_url = f"http://{edge_bind}", f"http://{bare_bind}"
    replies: dict[tuple[str, str], bytes] = {}
    for child, url in ((grpc_gateway, grpc_gateway_url), (edge, edge_url), (bare, bare_url)):
        for path, body in ((run.GET_PATH, None), (run.POST_PATH, run.POST_BODY)):
            reply = wait_for_http(child, url + path, body)
            if b"shelves/1/books/1" not in reply:
                raise RuntimeError(f"{child.name}: {path} answered {reply!r}")
            replies[child.name, path] = reply
    for path in (run.GET_PATH, run.POST_PATH):
        if replies["grpc-gateway", path] != replies["edge", path]:
            _progress(
                f"note: {path} replies differ: grpc-gateway {replies['grpc-gateway', path]!r}, "
                f"edge {replies['edge', path]!r}"
            )
    return Servers(
        upstream,
        upstream_address,
        grpc_gateway,
        grpc_gateway_url,
        edge,
        edge_url,
        bare,
        bare_url,
    )


def measure_unary(settings: Settings, servers: Servers) -> list[Figures]:
    """The five wrk rows, interleaved by run.measure_wrk_rounds, with x bare filled in."""
    post, get = run.POST_SCRIPT, None
    upstream = servers.upstream
    rows: list[tuple[str, str, Path | None, Child, Child | None]] = [
        ("grpc-gateway POST (transcoded)", servers.grpc_gateway_url + run.POST_PATH, post,
         servers.grpc_gateway, upstream),
        ("edge POST (transcoded)", servers.edge_url + run.POST_PATH, post, servers.edge, upstream),
        ("bare Hypercorn POST", servers.bare_url + run.POST_PATH, post, servers.bare, None),
        ("grpc-gateway GET (transcoded)", servers.grpc_gateway_url + run.GET_PATH, get,
         servers.grpc_gateway, upstream),
        ("edge GET (transcoded)", servers.edge_url + run.GET_PATH, get, servers.edge, upstream),
    ]  # fmt: skip
    _progress(
        f"{len(rows)} wrk rows interleaved in {settings.rounds} round(s): {settings.warmup}s "
        f"warm-ups + {settings.rounds} x {settings.seconds}s each"
    )
    wrk_settings = run.Settings(
        seconds=settings.seconds * settings.rounds,
        warmup=settings.warmup,
        connections=settings.connections,
        threads=settings.threads,
        output=settings.output,
    )
    figures = run.measure_wrk_rounds(rows, wrk_settings, rounds=settings.rounds)
    return run._against_bare(figures)


def unary_ratios(figures: list[Figures]) -> list[Ratio]:
    """edge's CPU per request over grpc-gateway's (POST, GET) and over bare Hypercorn's."""
    by_name = {f.scenario: f for f in figures}

    def cpu(scenario: str) -> float:
        value = by_name[scenario].server_cpu_us
        assert value is not None
        return value

    ratios = []
    for method in ("POST", "GET"):
        ratios.append(
            Ratio(
                f"{method} CPU/request, edge vs grpc-gateway",
                cpu(f"edge {method} (transcoded)"),
                cpu(f"grpc-gateway {method} (transcoded)"),
                None,
                numerator="edge",
                denominator="grpc-gateway",
                show_added=True,
            )
        )
    for name in ("edge", "grpc-gateway"):
        ratios.append(
            Ratio(
                f"POST CPU/request, {name} vs bare Hypercorn",
                cpu(f"{name} POST (transcoded)"),
                cpu("bare Hypercorn POST"),
                POST_TARGET if name == "edge" else None,
                numerator=name,
            )
        )
    return ratios


def throughput_lines(figures: list[Figures]) -> list[str]:
    by_name = {f.scenario: f for f in figures}
    lines = []
    for method in ("POST", "GET"):
        edge, go = (
            by_name[f"edge {method} (transcoded)"],
            by_name[f"grpc-gateway {method} (transcoded)"],
        )
        lines.append(
            f"{method} req/s, edge vs grpc-gateway: {edge.rps:,.0f} / {go.rps:,.0f} = "
            f"{edge.rps / go.rps:.2f}x; p99 {edge.p99_ms:.2f} / {go.p99_ms:.2f} ms"
        )
    edge, bare = by_name["edge POST (transcoded)"], by_name["bare Hypercorn POST"]
    lines.append(
        f"POST req/s, edge vs bare Hypercorn: {edge.rps:,.0f} / {bare.rps:,.0f} = "
        f"{edge.rps / bare.rps:.2f}x"
    )
    return lines


def _reader_cpu() -> float:
    """CPU seconds of this process and its reaped children (curl) so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure_streams(settings: Settings, servers: Servers, workdir: Path) -> list[StreamRow]:
    """Each stream read once to warm up, then all of them round after round, summed."""
    count, padding = settings.messages, settings.padding
    edge_bind = servers.edge_url.removeprefix("http://")

    def ndjson(base: str, name: str) -> Callable[[int], object]:
        return lambda n: streaming.read_ndjson(
            f"{base}/v1/count/{n}?padding={padding}", workdir / name
        )

    readers: list[tuple[str, str, Child, Callable[[int], object]]] = [
        ("grpc-gateway NDJSON stream", "curl -N", servers.grpc_gateway,
         ndjson(servers.grpc_gateway_url, "grpc-gateway.ndjson")),
        ("edge NDJSON stream", "curl -N", servers.edge, ndjson(servers.edge_url, "edge.ndjson")),
        ("edge WebSocket bridge", "websockets", servers.edge,
         lambda n: streaming._websocket(f"ws://{edge_bind}/v1/count/{n}", padding)),
    ]  # fmt: skip
    for scenario, _, gateway, make in readers:  # a short stream each, to warm up
        streaming.measure(scenario, make(min(count, 2_000)), gateway, servers.upstream)
    _progress(
        f"{len(readers)} streams of {count:,} messages interleaved in {settings.rounds} round(s)"
    )
    totals: dict[str, list[tuple[StreamFigures, float]]] = {name: [] for name, *_ in readers}
    digests: dict[str, str] = {}
    for _ in range(settings.rounds):
        for scenario, _, gateway, make in readers:
            before = _reader_cpu()
            figure = streaming.measure(scenario, make(count), gateway, servers.upstream)
            reader_cpu = _reader_cpu() - before
            gateway.check_alive()
            if figure.messages != count:
                raise RuntimeError(f"{scenario}: {figure.messages} of {count} messages")
            totals[scenario].append((figure, reader_cpu))
        for name in ("grpc-gateway", "edge"):
            data = (workdir / f"{name}.ndjson").read_bytes()
            digests[name] = hashlib.sha256(data).hexdigest()
    same = digests["grpc-gateway"] == digests["edge"]
    rows = []
    for scenario, reader, _, _ in readers:
        measured = totals[scenario]
        gateway_cpu = [f.gateway_cpu_s for f, _ in measured]
        rows.append(
            StreamRow(
                scenario=scenario,
                reader=f"{reader} x{len(measured)}",
                messages=sum(f.messages for f, _ in measured),
                seconds=sum(f.seconds for f, _ in measured),
                gateway_cpu_s=sum(c for c in gateway_cpu if c is not None),
                upstream_cpu_s=sum(f.upstream_cpu_s for f, _ in measured),
                reader_cpu_s=sum(cpu for _, cpu in measured),
                identical_to=(
                    "grpc-gateway NDJSON stream"
                    if same and scenario == "edge NDJSON stream"
                    else None
                ),
            )
        )
    return rows


def stream_verdicts(rows: list[StreamRow]) -> list[StreamVerdict]:
    by_name = {r.scenario: r for r in rows}
    go = by_name["grpc-gateway NDJSON stream"]
    return [
        StreamVerdict("NDJSON, edge vs grpc-gateway", by_name["edge NDJSON stream"], go),
        StreamVerdict(
            "WebSocket bridge, edge vs grpc-gateway's NDJSON (grpc-gateway has no WebSocket "
            "proxy here)",
            by_name["edge WebSocket bridge"],
            go,
        ),
    ]


_STREAM_COLUMNS = (
    ("stream (Go upstream)", 28, "<"),
    ("reader", 14, "<"),
    ("messages", 9, ">"),
    ("msgs/s", 9, ">"),
    ("gateway us/msg", 14, ">"),
    ("gateway cores", 13, ">"),
    ("upstream us/msg", 15, ">"),
    ("reader cores", 12, ">"),
)
READER_LIMIT_CORES = 0.8  # a reader this busy may be what limits the rate


def format_streams(rows: list[StreamRow], verdicts: list[StreamVerdict]) -> str:
    lines = fixed_width(
        _STREAM_COLUMNS,
        (
            [
                r.scenario,
                r.reader,
                f"{r.messages:,}",
                f"{r.rate:,.0f}",
                f"{r.gateway_us:,.1f}",
                f"{r.gateway_cpu_s / r.seconds:.2f}",
                f"{r.upstream_us:,.1f}",
                f"{r.reader_cpu_s / r.seconds:.2f}",
            ]
            for r in rows
        ),
    )
    edge_ndjson = next(r for r in rows if r.scenario == "edge NDJSON stream")
    lines.append(
        "NDJSON bodies of edge and grpc-gateway: "
        + ("identical bytes" if edge_ndjson.identical_to else "DIFFERENT (not the same work)")
    )
    for r in rows:
        if r.reader_cpu_s / r.seconds >= READER_LIMIT_CORES:
            lines.append(
                f"{r.scenario}: its reader ({r.reader.split()[0]}) used "
                f"{r.reader_cpu_s / r.seconds:.2f} cores, so the rate may be the reader's limit"
            )
    lines.append("")
    lines += [v.line() for v in verdicts]
    return "\n".join(lines)


def _command(*argv: str) -> str:
    """The first line a command prints, "" when it cannot run."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError:
        return ""
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else ""


def go_versions(bin_dir: Path) -> dict[str, str]:
    """The Go toolchain the binaries were built with and the Debian packages' versions."""
    built = _command("go", "version", str(bin_dir / "gogateway")).rpartition(": ")[2]
    versions = {"go": f"{built} (built the binaries)" if built else _command("go", "version")}
    for name, (package, expected) in GO_PACKAGES.items():
        installed = _command("dpkg-query", "-W", "-f=${Version}", package)
        versions[name] = f"{installed or expected} ({package})"
    return versions


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores, from /proc/stat's cpu line)."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


def write_json(
    path: Path,
    meta: dict[str, Any],
    figures: list[Figures],
    ratios: list[Ratio],
    streams: list[StreamRow],
    verdicts: list[StreamVerdict],
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "meta": meta,
        "scenarios": [asdict(f) for f in figures],
        "ratios": [{**asdict(r), "value": r.value, "added_us": r.added_us} for r in ratios],
        "streams": [
            {**asdict(r), "rate": r.rate, "gateway_us": r.gateway_us, "upstream_us": r.upstream_us}
            for r in streams
        ],
        "stream_verdicts": [
            {
                "name": v.name,
                "rate_ratio": v.rate_ratio,
                "cpu_ratio": v.cpu_ratio,
                "rate_target": STREAM_TARGET_RATE,
                "cpu_target": STREAM_TARGET_CPU,
                "verdict": "PASS" if v.passed else "MISS",
            }
            for v in verdicts
        ],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def _progress(message: str) -> None:
    print(f"go_compare: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(argv)
    signal.signal(signal.SIGTERM, run._raise_on_sigterm)
    wrk_path()  # fail before building or starting anything when wrk is missing
    bin_dir = build(settings)
    # run._meta asks git for the commit and status: never let status rewrite the index
    # (another checkout user may be committing)
    os.environ["GIT_OPTIONAL_LOCKS"] = "0"
    meta = run._meta(
        run.Settings(
            settings.seconds * settings.rounds,
            settings.warmup,
            settings.connections,
            settings.threads,
            settings.output,
        )
    )
    meta |= {
        "rounds": settings.rounds,
        "slice_s": settings.seconds,
        "messages": settings.messages,
        "padding": settings.padding,
        **go_versions(bin_dir),
    }
    started, busy_before, own_before = time.monotonic(), machine_busy_seconds(), _reader_cpu()
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="edge-go-compare-") as tmp:
        workdir = Path(tmp)
        try:
            servers = start_servers(children, workdir, bin_dir)
            figures = measure_unary(settings, servers)
            streams = measure_streams(settings, servers, workdir)
        finally:
            for child in reversed(children):
                stop(child)
    # every server has been stopped and reaped: their CPU is in RUSAGE_CHILDREN now
    busy, own = machine_busy_seconds() - busy_before, _reader_cpu() - own_before
    ratios, verdicts = unary_ratios(figures), stream_verdicts(streams)
    meta["loadavg_after"] = os.getloadavg()
    elapsed = time.monotonic() - started
    meta["machine_busy_cores"] = busy / elapsed
    # what other processes took meanwhile (callgrind runs, test suites): the run's own
    # servers, wrk, curl and this process are subtracted
    meta["other_cores"] = max(0.0, busy - own) / elapsed
    meta["elapsed_s"] = round(elapsed, 1)
    write_json(settings.output, meta, figures, ratios, streams, verdicts)

    print(format_table(figures, ratios))
    print("\n".join(throughput_lines(figures)))
    print()
    print(format_streams(streams, verdicts))
    before, after = meta["loadavg_before"], meta["loadavg_after"]
    print(
        f"\nGo {meta['go']}; grpc-go {meta['grpc-go']}; grpc-gateway {meta['grpc-gateway']}; "
        f"golang/protobuf {meta['golang-protobuf']}\n"
        f"Python {meta['python']}, hypercorn {meta['hypercorn']}, grpcio {meta['grpcio']}, "
        f"{meta['wrk']}; commit {meta['commit'][:12]}{' (dirty)' if meta['dirty'] else ''}\n"
        f"{meta['cpus']} CPUs; load average before {before[0]:.2f} {before[1]:.2f} "
        f"{before[2]:.2f}, after {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}; machine "
        f"busy {meta['machine_busy_cores']:.2f} cores on average, {meta['other_cores']:.2f} of "
        f"them other processes'; took {meta['elapsed_s']}s; "
        f"results in {settings.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
