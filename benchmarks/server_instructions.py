"""Instructions per request of each server under wrk, counted by callgrind: ratios that hold still.

``scripts/bench``'s CPU ratios are judged within a few percent, but on a shared two-core
machine the same server's CPU per request moved by 20-30% between runs minutes apart,
interleaved or not. Instructions do not: each server here runs under valgrind's callgrind
(all at once, since counts do not depend on what else runs), is warmed up with wrk, has
its counters zeroed, serves a measured wrk run, and has its counters dumped; the dump's
total over wrk's request count is that server's instructions per request.

What this leaves out, and why it is beside the CPU figures and not instead of them:
instructions are user space only (a ``send`` system call counts as its few instructions
into the kernel, not what the kernel does), and an instruction that misses the cache
costs more than one that hits. So a server that makes more system calls per request (the
gateway: one write to its upstream, one read of its reply) looks a little cheaper here
than in CPU time. Both are printed against bare Hypercorn for the same request.

Run as ``python -m benchmarks.server_instructions`` (about 3 minutes; needs valgrind).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import pipeline
from benchmarks.processes import Child, free_port, spawn, stop, wait_for_file, wait_for_http
from benchmarks.run import GET_PATH, POST_BODY, POST_PATH, POST_SCRIPT, PROXY_PREFIX, REPO
from benchmarks.run import _gateway_config as gateway_config
from benchmarks.wrk import run_wrk

# (row, server, path, POST?) in the order printed; each is compared with bare Hypercorn's
# row of the same method
ROWS = (
    ("bare Hypercorn POST", "bare", POST_PATH, True),
    ("gateway POST (transcoded)", "gateway", POST_PATH, True),
    ("gateway POST, canned upstream", "canned", POST_PATH, True),
    ("gateway POST + token, no auth", "plain-token", POST_PATH, True),
    ("gateway POST + pipeline (memory)", "pipeline", POST_PATH, True),
    ("proxy POST (plain HTTP)", "proxy", PROXY_PREFIX + POST_PATH, True),
    ("bare Hypercorn GET", "bare", GET_PATH, False),
    ("gateway GET (transcoded)", "gateway", GET_PATH, False),
    ("proxy GET (plain HTTP)", "proxy", PROXY_PREFIX + GET_PATH, False),
)
TARGETS = {  # issue 14's CPU targets, against bare Hypercorn
    "gateway POST (transcoded)": 1.5,
    "gateway GET (transcoded)": 1.6,
    "proxy POST (plain HTTP)": 1.8,
    "proxy GET (plain HTTP)": 1.8,
}
PIPELINE_TARGET = 1.1  # the policy pipeline against the plain gateway's POST


@dataclass(frozen=True)
class Counted:
    row: str
    requests: int
    instructions: int

    @property
    def per_request(self) -> float:
        return self.instructions / self.requests


def _callgrind(name: str, argv: list[str], workdir: Path, root: str = "") -> Child:
    """``argv`` under callgrind; with ``root``, Python imports ``edge`` from that checkout."""
    out = workdir / f"{name}.callgrind.%p"
    return spawn(
        name,
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv],
        workdir,
        Path(root) if root else REPO,
        {"PYTHONPATH": f"{root}:{root}/generated"} if root else None,
    )


def _control(child: Child, *args: str) -> None:
    subprocess.run(
        ["callgrind_control", *args, str(child.pid)], capture_output=True, check=True, timeout=120
    )


def _dumped_total(workdir: Path, name: str, child: Child, dumps: int) -> int:
    """The ``dumps``-th dump's total: callgrind writes ``<file>.<n>`` for the n-th dump."""
    path = workdir / f"{name}.callgrind.{child.pid}.{dumps}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
        time.sleep(0.2)
    raise RuntimeError(f"no callgrind dump {path}")


def measure(seconds: int, warmup: int, connections: int, root: str = "") -> list[Counted]:
    """Count every row; with ``root``, the gateways served by ``edge serve`` are that
    checkout's (an older commit, to compare), the canned one and bare Hypercorn this one's."""
    workdir = Path(tempfile.mkdtemp(prefix="edge-instr-"))
    children: list[Child] = []
    python = sys.executable
    try:
        port_file = workdir / "upstream.port"
        upstream = spawn(
            "upstream", [python, "-m", "benchmarks.upstream", str(port_file)], workdir, REPO
        )
        children.append(upstream)
        upstream_address = f"127.0.0.1:{wait_for_file(upstream, port_file)}"
        names = ("bare", "gateway", "canned", "proxy", "pipeline", "plain-token")
        binds = {name: f"127.0.0.1:{free_port()}" for name in names}
        configs = {}
        for name in ("gateway", "canned", "proxy", "pipeline", "plain-token"):
            settings = gateway_config(binds[name], upstream_address)
            if name == "pipeline":  # JWT, a never-refusing memory limiter, breakers
                settings = pipeline.pipeline_config(settings, {"backend": "memory"})
            if name == "plain-token":  # given the token, does with it what the pipeline does
                settings = pipeline.token_not_forwarded(settings)
            if name == "proxy":
                settings["http_upstreams"] = {"bare": {"url": f"http://{binds['bare']}"}}
                settings["proxy_routes"] = [
                    {"prefix": PROXY_PREFIX, "upstream": "bare", "strip_prefix": True}
                ]
            configs[name] = workdir / f"{name}.yaml"
            configs[name].write_text(json.dumps(settings))
        servers = {
            "bare": _callgrind(
                "bare", [python, "-m", "benchmarks.bare_app", binds["bare"]], workdir
            ),
            "gateway": _callgrind(
                "gateway",
                [python, "-m", "edge.cli", "serve", "--config", str(configs["gateway"])],
                workdir,
                root,
            ),
            "canned": _callgrind(
                "canned",
                [python, "-m", "benchmarks.canned_gateway", str(configs["canned"])],
                workdir,
            ),
            # the proxy's upstream is the bare app under callgrind too: slow, but counted
            # instructions do not care, and only the proxy's own are read
            "proxy": _callgrind(
                "proxy",
                [python, "-m", "edge.cli", "serve", "--config", str(configs["proxy"])],
                workdir,
                root,
            ),
            "pipeline": _callgrind(
                "pipeline",
                [python, "-m", "edge.cli", "serve", "--config", str(configs["pipeline"])],
                workdir,
                root,
            ),
            "plain-token": _callgrind(
                "plain-token",
                [python, "-m", "edge.cli", "serve", "--config", str(configs["plain-token"])],
                workdir,
                root,
            ),
        }
        token = pipeline.mint_token()
        token_script = workdir / "pipeline.lua"
        pipeline.write_wrk_script(token_script, POST_BODY, token, workdir / "pipeline.status")
        children.extend(servers.values())
        for name, child in servers.items():
            url = f"http://{binds[name]}" + (PROXY_PREFIX if name == "proxy" else "")
            if name == "pipeline":
                gateway = pipeline.PipelineGateway(
                    "memory", child, url, token_script, workdir / "pipeline.status"
                )
                pipeline.check_auth(gateway, POST_PATH, POST_BODY, token, b"shelves/1/books/1")
            else:
                wait_for_http(child, url + POST_PATH, POST_BODY, timeout=300)
        dumps = dict.fromkeys(servers, 0)
        counted = []
        for row, name, path, post in ROWS:
            child = servers[name]
            url = f"http://{binds[name]}{path}"
            with_token = name in ("pipeline", "plain-token")
            script = (token_script if with_token else POST_SCRIPT) if post else None
            run_wrk(url, seconds=warmup, connections=connections, threads=1, script=script)
            _control(child, "-z")
            report = run_wrk(
                url, seconds=seconds, connections=connections, threads=1, script=script
            )
            _control(child, "-d")
            dumps[name] += 1
            if report.errors or not report.requests:
                raise RuntimeError(f"{row}: {report.requests} requests, {report.errors} errors")
            total = _dumped_total(workdir, name, child, dumps[name])
            counted.append(Counted(row, report.requests, total))
            print(f"instructions: {row}: {total / report.requests:,.0f}/request", file=sys.stderr)
        return counted
    finally:
        for child in reversed(children):
            stop(child, timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


def _method(row: str) -> str:
    return "POST" if "POST" in row else "GET"


def report(counted: list[Counted]) -> str:
    bare = {_method(c.row): c for c in counted if c.row.startswith("bare")}
    lines = [f"{'scenario':32}  {'requests':>8}  {'instructions/req':>16}  {'x bare':>6}"]
    ratios = []
    for c in counted:
        ratio = c.per_request / bare[_method(c.row)].per_request
        lines.append(f"{c.row:32}  {c.requests:>8,}  {c.per_request:>16,.0f}  {ratio:>6.2f}")
        target = TARGETS.get(c.row)
        if target is not None:
            verdict = "within" if ratio <= target else "over"
            ratios.append(
                f"{c.row} instructions/request vs bare Hypercorn: {ratio:.2f}x "
                f"({verdict} the CPU target's {target}x; user space only)"
            )
    by_row = {c.row: c for c in counted}
    piped, plain, tokenless = (
        by_row.get("gateway POST + pipeline (memory)"),
        by_row.get("gateway POST + token, no auth"),
        by_row.get("gateway POST (transcoded)"),
    )
    if piped is not None and plain is not None:
        # the same requests (token included) with the pipeline on and off: what it costs
        ratio = piped.per_request / plain.per_request
        verdict = "within" if ratio <= PIPELINE_TARGET else "over"
        ratios.append(
            f"pipeline (memory) instructions/request vs the plain gateway's POST with the "
            f"same token: {ratio:.2f}x ({verdict} the CPU target's {PIPELINE_TARGET}x)"
        )
    if piped is not None and tokenless is not None:
        ratios.append(
            f"pipeline (memory) vs the plain gateway's POST without a token: "
            f"{piped.per_request / tokenless.per_request:.2f}x (the token's own bytes included)"
        )
    return "\n".join([*lines, "", *ratios])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="measured wrk seconds per row")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument(
        "--root", default="", help="another checkout whose `edge serve` gateways to measure"
    )
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("server instructions: valgrind is not installed; skipped", file=sys.stderr)
        return 0
    print(report(measure(args.seconds, args.warmup, args.connections, args.root)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
