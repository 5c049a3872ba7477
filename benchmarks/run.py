"""The benchmark orchestrator: start every server, drive each in turn, print one side-by-side table.

Three things are measured in one run on one machine, so their ratios mean something:
direct grpc.aio calls to the demo upstream (the floor), the gateway's transcoded POST and
GET driven by wrk, and a bare Hypercorn app driven the same way (the ceiling of our HTTP
server). The same POST also goes through gateways with the policy pipeline on (JWT auth
and a rate limit on every request, limiter state in memory and in Redis; see
``pipeline.py``), compared with the plain gateway. Every server is a separate process
on a free loopback port; all are stopped in a ``finally``, on error and on SIGTERM alike.
Run with ``scripts/bench`` (``--help`` for flags).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks import browser_protocols, pipeline
from benchmarks.pipeline import PipelineGateway
from benchmarks.processes import (
    Child,
    free_port,
    spawn,
    spawn_edge,
    stop,
    wait_for_file,
    wait_for_http,
)
from benchmarks.procstat import cpu_snapshot
from benchmarks.report import (
    BROWSER_PROTOCOL_TARGET,
    GET_TARGET,
    PIPELINE_TARGET,
    POST_TARGET,
    PROXY_TARGET,
    Figures,
    Ratio,
    Tail,
    format_table,
    write_json,
)
from benchmarks.wrk import merged_percentile, run_wrk, wrk_path

REPO = Path(__file__).resolve().parents[1]
POST_SCRIPT = Path(__file__).resolve().parent / "wrk_post.lua"
GET_PATH = "/v1/shelves/1/books/1"
# A unary GetBook through the generic POST route: transcoded like any POST, but it only
# reads, so the upstream does the same work on every request (CreateBook would grow it).
POST_PATH = "/edgedemo.library.v1.LibraryService/GetBook"
POST_BODY = b'{"name":"shelves/1/books/1"}'
# The plain HTTP proxy scenario: the gateway proxies this prefix (stripped) to bare Hypercorn.
PROXY_PREFIX = "/bare"
# The plain gateway driven with the pipeline rows' token: the pipeline's denominator.
PLAIN_WITH_TOKEN = "gateway POST + token, no auth"
GO_UPSTREAM = REPO / ".venv" / "go-bench" / "bin" / "goupstream"  # build.sh's default OUT


@dataclass(frozen=True)
class Settings:
    seconds: int
    warmup: int
    connections: int
    threads: int
    output: Path
    # the Go upstream's binary (benchmarks/go/build.sh), or None for the Python demo upstream
    go_upstream: Path | None = None


@dataclass(frozen=True)
class Servers:
    upstream: Child
    upstream_address: str
    gateway: Child
    gateway_url: str
    bare: Child
    bare_url: str
    canned: Child
    canned_url: str
    grpcio: Child
    grpcio_url: str
    proxy: Child
    proxy_url: str
    pipeline_memory: PipelineGateway
    pipeline_redis: PipelineGateway
    plain_token: PipelineGateway  # the plain gateway with the pipeline rows' token


def parse_settings(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per run")
    parser.add_argument("--warmup", type=int, default=2, help="discarded seconds before each")
    parser.add_argument(
        "--connections", type=int, default=32, help="wrk connections and gRPC calls in flight"
    )
    # one, as issue 14 measured (wrk -t1 -c32): on two cores a second wrk thread is a
    # fourth busy thread beside the gateway and the upstream, and its time slices showed in
    # the gateway's tail (stop 29, side by side: GET p99/p50 2.16x with two, 1.73x with one)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument(
        "--quick", action="store_true", help="2s runs after 1s warm-ups (smoke test)"
    )
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/latest.json")
    parser.add_argument(
        "--upstream",
        choices=("python", "go"),
        default="python",
        help="the gRPC upstream: the Python demo (default), or the Go one issue 14 measured "
        f"with (built by benchmarks/go/build.sh into {GO_UPSTREAM.relative_to(REPO)})",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 2, 1
    if min(args.duration, args.warmup, args.connections, args.threads) < 1:
        parser.error("--duration, --warmup, --connections and --threads must be at least 1")
    if args.threads > args.connections:
        parser.error("wrk needs at least one connection per thread")
    go_upstream = None
    if args.upstream == "go":
        if not GO_UPSTREAM.is_file():
            parser.error(f"no {GO_UPSTREAM}: run benchmarks/go/build.sh --install first")
        go_upstream = GO_UPSTREAM
    return Settings(
        args.duration, args.warmup, args.connections, args.threads, args.output, go_upstream
    )


def _gateway_config(bind: str, upstream: str, client: str = "auto") -> dict[str, Any]:
    """The gateway as a user runs it; ``client: auto`` picks the lean client for 127.0.0.1."""
    return {
        "server": {"bind": [bind], "graceful_timeout": "1s"},
        "descriptors": {"proto_paths": [str(REPO / "protos")]},
        "upstreams": {"demo": {"address": upstream, "timeout": "10s", "client": client}},
        "services": {"*": {"upstream": "demo"}},
        # Annotated methods get generic POST routes too, so POST_PATH exists.
        "transcoding": {"generic_routes": "all"},
    }


def start_servers(children: list[Child], workdir: Path, go_upstream: Path | None = None) -> Servers:
    """Start upstream, gateway and bare Hypercorn, appending each to ``children`` at once.

    Appending as soon as a process exists (not once it is ready) is what lets the caller's
    ``finally`` stop a server whose start-up failed half way.
    """
    python = sys.executable
    port_file = workdir / "upstream.port"
    upstream_argv = (
        [str(go_upstream), str(port_file)]
        if go_upstream is not None
        else [python, "-m", "benchmarks.upstream", str(port_file)]
    )
    upstream = spawn("upstream", upstream_argv, workdir, REPO)
    children.append(upstream)
    upstream_address = f"127.0.0.1:{wait_for_file(upstream, port_file)}"

    gateway_bind = f"127.0.0.1:{free_port()}"
    gateway_settings = _gateway_config(gateway_bind, upstream_address)
    gateway = spawn_edge("gateway", gateway_settings, workdir, REPO, children)

    bare_bind = f"127.0.0.1:{free_port()}"
    bare = spawn("bare", [python, "-m", "benchmarks.bare_app", bare_bind], workdir, REPO)
    children.append(bare)

    canned_config = workdir / "canned.yaml"
    canned_bind = f"127.0.0.1:{free_port()}"
    canned_config.write_text(json.dumps(_gateway_config(canned_bind, upstream_address)))
    canned = spawn(
        "canned", [python, "-m", "benchmarks.canned_gateway", str(canned_config)], workdir, REPO
    )
    children.append(canned)

    gateway_url, bare_url = f"http://{gateway_bind}", f"http://{bare_bind}"
    canned_url = f"http://{canned_bind}"

    # The same gateway with grpc.aio for unary calls instead of the default lean client.
    grpcio_bind = f"127.0.0.1:{free_port()}"
    grpcio_settings = _gateway_config(grpcio_bind, upstream_address, "grpcio")
    grpcio = spawn_edge("grpcio", grpcio_settings, workdir, REPO, children)
    grpcio_url = f"http://{grpcio_bind}"

    # The same gateway, proxying PROXY_PREFIX to bare Hypercorn (the upstream of these rows).
    proxy_bind = f"127.0.0.1:{free_port()}"
    proxy_settings = _gateway_config(proxy_bind, upstream_address)
    proxy_settings["http_upstreams"] = {"bare": {"url": bare_url}}
    proxy_settings["proxy_routes"] = [
        {"prefix": PROXY_PREFIX, "upstream": "bare", "strip_prefix": True}
    ]
    proxy = spawn_edge("proxy", proxy_settings, workdir, REPO, children)
    proxy_url = f"http://{proxy_bind}{PROXY_PREFIX}"

    targets = (
        (gateway, gateway_url),
        (grpcio, grpcio_url),
        (bare, bare_url),
        (canned, canned_url),
        (proxy, proxy_url),
    )
    for child, url in targets:
        for path, body in ((GET_PATH, None), (POST_PATH, POST_BODY)):
            reply = wait_for_http(child, url + path, body)
            if b"shelves/1/books/1" not in reply:
                raise RuntimeError(f"{child.name}: {path} answered {reply!r}")

    # The same gateway with the policy pipeline on: auth + a never-refusing rate limit.
    redis_url = pipeline.start_redis(children, workdir, REPO)
    token = pipeline.mint_token()
    pipeline_gateways = []
    for backend, limiting in (
        ("memory", {"backend": "memory"}),
        ("redis", pipeline.redis_limiting(redis_url)),
    ):
        base = _gateway_config(f"127.0.0.1:{free_port()}", upstream_address)
        settings = pipeline.pipeline_config(base, limiting)
        started = pipeline.start_gateway(
            backend, settings, token, POST_BODY, workdir, REPO, children
        )
        pipeline_gateways.append(started)
    for started in pipeline_gateways:
        pipeline.check_auth(started, POST_PATH, POST_BODY, token, b"shelves/1/books/1")
    pipeline_memory, pipeline_redis = pipeline_gateways
    plain_token = pipeline.start_plain_with_token(
        _gateway_config(f"127.0.0.1:{free_port()}", upstream_address),
        token,
        POST_BODY,
        workdir,
        REPO,
        children,
    )
    reply = wait_for_http(plain_token.child, plain_token.url + POST_PATH, POST_BODY)
    if b"shelves/1/books/1" not in reply:
        raise RuntimeError(f"plain-token: {POST_PATH} answered {reply!r}")
    return Servers(
        upstream,
        upstream_address,
        gateway,
        gateway_url,
        bare,
        bare_url,
        canned,
        canned_url,
        grpcio,
        grpcio_url,
        proxy,
        proxy_url,
        pipeline_memory,
        pipeline_redis,
        plain_token,
    )


def _per_request_us(cpu_seconds: float, requests: int) -> float:
    return cpu_seconds / requests * 1e6 if requests else float("nan")


def measure_grpc(settings: Settings, servers: Servers) -> Figures:
    """Direct calls from a separate client process, which measures its window itself."""
    argv = [
        sys.executable, "-m", "benchmarks.grpc_direct", servers.upstream_address,
        f"--concurrency={settings.connections}", f"--warmup={settings.warmup}",
        f"--duration={settings.seconds}", f"--watch=upstream={servers.upstream.pid}",
    ]  # fmt: skip
    timeout = settings.warmup + settings.seconds + 60
    done = subprocess.run(
        argv, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"grpc_direct failed ({done.returncode}):\n{done.stderr}")
    servers.upstream.check_alive()
    result = json.loads(done.stdout)
    cpu, requests = result["cpu_seconds"], result["requests"]
    return Figures(
        scenario="grpc direct GetBook",
        driver=f"grpc.aio x{settings.connections}",
        requests=requests,
        seconds=result["seconds"],
        rps=result["rps"],
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        max_ms=result["max_ms"],
        errors=result["errors"],
        server_cpu_us=None,
        server_cores=None,
        upstream_cpu_us=_per_request_us(cpu["upstream"], requests),
        client_cpu_us=_per_request_us(cpu["client"], requests),
    )


def measure_wrk_rounds(
    rows: list[tuple[str, str, Path | None, Child, Child | None]],
    settings: Settings,
    rounds: int = 3,
    checks: dict[int, Callable[[], None]] | None = None,
) -> list[Figures]:
    """Rows measured in turn, round after round, so drift hits them alike.

    The browser protocols are judged against the JSON POST within a few percent; measured
    one after another, the later rows paid for whatever the machine did in the meantime
    (two full runs put Connect at 1.19x and 1.25x the JSON POST while interleaved runs
    put it at 0.85-1.01x). Each row gets ``rounds`` slices of the run's duration; CPU and
    requests are summed over them, and p50 and p99 are those of all the row's requests
    (the slices' latency grids merged: ``merged_percentile``). The worst slice's p99 is
    kept beside them: a slice is a few seconds, and one slow moment sets its p99.
    ``checks`` (by server pid) run after each of that server's runs, warm-up included, and
    raise if its figures cannot be trusted.
    """
    checks = checks or {}
    connections, threads = settings.connections, settings.threads
    for _, url, script, server, _ in rows:  # warm every row up first
        run_wrk(
            url, seconds=settings.warmup, connections=connections, threads=threads, script=script
        )
        check = checks.get(server.pid)
        if check is not None:
            check()
    slice_seconds = max(1, round(settings.seconds / rounds))
    totals: dict[str, dict[str, Any]] = {
        scenario: {"reports": [], "cpu": {}, "slice_cpu_us": []} for scenario, _, _, _, _ in rows
    }
    for _ in range(rounds):
        for scenario, url, script, server, upstream in rows:
            pids = {"server": server.pid} | ({"upstream": upstream.pid} if upstream else {})
            before = cpu_snapshot(pids)
            report = run_wrk(
                url, seconds=slice_seconds, connections=connections, threads=threads, script=script
            )
            after = cpu_snapshot(pids)
            server.check_alive()
            check = checks.get(server.pid)
            if check is not None:
                check()
            total = totals[scenario]
            total["reports"].append(report)
            for name in pids:
                total["cpu"][name] = total["cpu"].get(name, 0.0) + after[name] - before[name]
            used = after["server"] - before["server"]
            total["slice_cpu_us"].append(round(_per_request_us(used, report.requests), 1))
    figures = []
    for scenario, _, _, _, upstream in rows:
        total = totals[scenario]
        reports, cpu = total["reports"], total["cpu"]
        requests, seconds = sum(r.requests for r in reports), sum(r.seconds for r in reports)
        figures.append(
            Figures(
                scenario=scenario,
                driver=f"wrk {threads}t/{connections}c x{rounds}",
                requests=requests,
                seconds=seconds,
                rps=requests / seconds,
                p50_ms=merged_percentile(reports, 50),
                p99_ms=merged_percentile(reports, 99),
                max_ms=max(r.max_ms for r in reports),
                errors=sum(r.errors for r in reports),
                server_cpu_us=_per_request_us(cpu["server"], requests),
                server_cores=cpu["server"] / seconds,
                upstream_cpu_us=_per_request_us(cpu["upstream"], requests) if upstream else None,
                client_cpu_us=None,
                p99_worst_slice_ms=max(r.p99_ms for r in reports),
                slice_server_cpu_us=tuple(total["slice_cpu_us"]),
            )
        )
    return figures


def run_all(settings: Settings, workdir: Path) -> list[Figures]:
    """Every scenario in turn; whatever happens, every server started is stopped."""
    children: list[Child] = []
    try:
        servers = start_servers(children, workdir, settings.go_upstream)
        gateway, bare, upstream = servers.gateway, servers.bare, servers.upstream
        _progress(f"grpc direct GetBook: {settings.warmup}s warm-up + {settings.seconds}s")
        figures = [measure_grpc(settings, servers)]
        post, get = POST_SCRIPT, None
        browser_protocols.check(servers.gateway_url + POST_PATH)
        grpc_web, connect = browser_protocols.write_scripts(workdir)
        # Gateway and bare alternate, so a slow drift in the machine hits both alike; the
        # pipeline rows follow the plain gateway's POST straight away, for the same reason.
        wrk_runs: list[tuple[str, str, Path | None, Child, Child | None]] = [
            # next to the plain gateway's rows, so drift hits both alike
            (
                "gateway POST (grpc.aio client)",
                servers.grpcio_url + POST_PATH,
                post,
                servers.grpcio,
                upstream,
            ),
            (
                PLAIN_WITH_TOKEN,
                servers.plain_token.url + POST_PATH,
                servers.plain_token.script,
                servers.plain_token.child,
                upstream,
            ),
            *(
                (
                    f"gateway POST + pipeline ({p.backend})",
                    p.url + POST_PATH,
                    p.script,
                    p.child,
                    upstream,
                )
                for p in (servers.pipeline_memory, servers.pipeline_redis)
            ),
            (
                "gateway POST, canned upstream",
                servers.canned_url + POST_PATH,
                post,
                servers.canned,
                None,
            ),
            ("gateway GET (transcoded)", servers.gateway_url + GET_PATH, get, gateway, upstream),
            ("bare Hypercorn GET", servers.bare_url + GET_PATH, get, bare, None),
            # plain HTTP proxy: the same requests through the gateway to bare Hypercorn,
            # compared with the bare rows above (hitting it directly)
            ("proxy POST (plain HTTP)", servers.proxy_url + POST_PATH, post, servers.proxy, bare),
            ("proxy GET (plain HTTP)", servers.proxy_url + GET_PATH, get, servers.proxy, bare),
        ]
        # every reply 2xx and nothing refused or failed open, or the run fails
        checks = {
            p.child.pid: p.check_run
            for p in (servers.pipeline_memory, servers.pipeline_redis, servers.plain_token)
        }
        # Every row interleaved, round by round: the ratios are judged within a few
        # percent, finer than this shared machine's drift over a run (measured one after
        # another, a row could land 20% off its neighbour's conditions). The JSON POST,
        # gRPC-Web, Connect and bare Hypercorn's POST come first, as before.
        _progress(
            f"{4 + len(wrk_runs)} wrk rows interleaved in 3 rounds: "
            f"{settings.warmup}s warm-ups + {settings.seconds}s each"
        )
        gateway_post = servers.gateway_url + POST_PATH
        figures += measure_wrk_rounds(
            [
                ("gateway POST (transcoded)", gateway_post, post, gateway, upstream),
                ("gateway gRPC-Web unary", gateway_post, grpc_web, gateway, upstream),
                ("gateway Connect unary", gateway_post, connect, gateway, upstream),
                ("bare Hypercorn POST", servers.bare_url + POST_PATH, post, bare, None),
                *wrk_runs,
            ],
            settings,
            checks=checks,
        )
        return figures
    finally:
        for child in reversed(children):
            stop(child)


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _meta(settings: Settings) -> dict[str, Any]:
    def command(*argv: str) -> str:
        """The first line the command prints (wrk -v writes to stderr), "" if it cannot run."""
        try:
            done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
        except OSError:
            return ""
        lines = (done.stdout + done.stderr).strip().splitlines()
        return lines[0] if lines else ""

    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": command("git", "rev-parse", "HEAD"),
        "dirty": bool(command("git", "status", "--porcelain")),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "python": platform.python_version(),
        "hypercorn": version("hypercorn"),
        "grpcio": version("grpcio"),
        "wrk": command(wrk_path(), "-v"),
        "duration_s": settings.seconds,
        "warmup_s": settings.warmup,
        "connections": settings.connections,
        "wrk_threads": settings.threads,
        "upstream": "go" if settings.go_upstream is not None else "python",
    }


def _ratios(figures: list[Figures]) -> list[Ratio]:
    by_name = {f.scenario: f for f in figures}
    ratios = []
    for method, target in (("POST", POST_TARGET), ("GET", GET_TARGET)):
        gateway = by_name[f"gateway {method} (transcoded)"].server_cpu_us
        bare = by_name[f"bare Hypercorn {method}"].server_cpu_us
        assert gateway is not None and bare is not None
        ratios.append(Ratio(f"{method} CPU/request", gateway, bare, target))
    canned = by_name["gateway POST, canned upstream"].server_cpu_us
    bare_post = by_name["bare Hypercorn POST"].server_cpu_us
    assert canned is not None and bare_post is not None
    # edge's own share: routing, binding, JSON, pipeline; the rest is the gRPC client
    ratios.append(Ratio("POST CPU/request, canned upstream", canned, bare_post, None))
    grpcio = by_name["gateway POST (grpc.aio client)"].server_cpu_us
    assert grpcio is not None
    # the same POST with grpc.aio making the unary call instead of the default lean client
    ratios.append(
        Ratio("POST CPU/request, grpc.aio client", grpcio, bare_post, None, "grpcio gateway")
    )
    for method in ("POST", "GET"):
        proxied = by_name[f"proxy {method} (plain HTTP)"].server_cpu_us
        bare = by_name[f"bare Hypercorn {method}"].server_cpu_us
        assert proxied is not None and bare is not None
        # what the proxy hop costs the gateway, per request, against serving it directly
        ratios.append(Ratio(f"proxy {method} CPU/request", proxied, bare, PROXY_TARGET))
    plain_post = by_name["gateway POST (transcoded)"].server_cpu_us
    assert plain_post is not None
    # the browser protocols against the JSON POST: each no dearer (the target)
    for protocol in ("gRPC-Web", "Connect"):
        framed = by_name[f"gateway {protocol} unary"].server_cpu_us
        assert framed is not None
        ratios.append(
            Ratio(
                f"{protocol} unary CPU/request vs JSON POST",
                framed,
                plain_post,
                BROWSER_PROTOCOL_TARGET,
                numerator=protocol,
                denominator="JSON POST",
                show_added=True,
            )
        )
    # what auth + a rate-limit decision add to each request; breakers are on in both. The
    # same requests, token included, with the pipeline on and off (PLAIN_WITH_TOKEN)
    with_token = by_name[PLAIN_WITH_TOKEN].server_cpu_us
    assert with_token is not None
    pipeline_targets: tuple[tuple[str, float | None], ...] = (
        ("memory", PIPELINE_TARGET),
        ("redis", None),
    )
    for backend, pipeline_target in pipeline_targets:
        scenario = f"gateway POST + pipeline ({backend})"
        with_pipeline = by_name[scenario].server_cpu_us
        assert with_pipeline is not None
        ratios.append(
            Ratio(
                f"pipeline ({backend}) POST CPU/request vs plain gateway POST",
                with_pipeline,
                with_token,
                pipeline_target,
                numerator=f"pipeline ({backend})",
                denominator="gateway + token, no auth",
                show_added=True,
            )
        )
    # against the tokenless POST, as the issue first measured it: the token's own bytes on
    # top (a client without one, which the pipeline refuses); judged against the same line
    memory = by_name["gateway POST + pipeline (memory)"].server_cpu_us
    assert memory is not None
    ratios.append(
        Ratio(
            "pipeline (memory) POST CPU/request vs plain gateway POST without a token",
            memory,
            plain_post,
            PIPELINE_TARGET,
            numerator="pipeline (memory)",
            denominator="gateway",
            show_added=True,
        )
    )
    return ratios


def _tails(figures: list[Figures]) -> list[Tail]:
    """The transcoded POST and GET's latency spread (issue 14's tail targets)."""
    by_name = {f.scenario: f for f in figures}
    rows = (by_name[f"gateway {method} (transcoded)"] for method in ("POST", "GET"))
    return [Tail(f.scenario, f.p50_ms, f.p99_ms, f.max_ms, f.p99_worst_slice_ms) for f in rows]


def _against_bare(figures: list[Figures]) -> list[Figures]:
    """Each HTTP row's CPU per request over bare Hypercorn's for the same method."""
    bare = {method: by.server_cpu_us for by in figures for method in ("POST", "GET")
            if by.scenario == f"bare Hypercorn {method}"}  # fmt: skip
    measured = []
    for f in figures:
        method = "GET" if " GET" in f.scenario else "POST"
        base = bare.get(method)
        if f.server_cpu_us is None or not base:
            measured.append(f)
        else:
            measured.append(replace(f, vs_bare=f.server_cpu_us / base))
    return measured


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through run_all's finally, stopping every server


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    wrk_path()  # fail before starting anything when wrk is missing
    pipeline.redis_binary()  # and when neither REDIS_URL nor redis-server is there
    meta = _meta(settings)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as workdir:
        figures = run_all(settings, Path(workdir))
    figures = _against_bare(figures)
    ratios, tails = _ratios(figures), _tails(figures)
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    write_json(settings.output, meta, figures, ratios, tails)
    print(format_table(figures, ratios))
    print("\n".join(tail.line() for tail in tails))
    print(
        f"\n{meta['upstream'].capitalize()} upstream; "
        f"{meta['cpus']} CPUs, load average before {meta['loadavg_before'][0]:.2f}; "
        f"took {meta['elapsed_s']}s; results in {settings.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
