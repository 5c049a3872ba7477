"""The policy pipeline's own CPU per call, in process: the plain gateway against the pipeline.

The full run's pipeline row (``run.py``) is judged against its line (1.1x the plain
gateway) within a few percent, and on a shared two-core machine two identical gateways
measured side by side differ by that much. Here both apps run in one process, with the
gRPC client replaced by a canned reply (``canned_gateway.CannedTerminal``) and no server
around them, in interleaved rounds; the minimum of each is reported, with the difference
(what the pipeline adds to one call) and the ratio. As in the full run, the pipeline is
judged against the plain gateway given the same requests, token included (neither checked
nor forwarded); the plain gateway without a token is shown beside it. The pipeline is the full
run's:
``pipeline.pipeline_config`` (an HS256 token required on every route, a per-subject token
bucket that never refuses, limiter state in memory, breakers on as in the plain gateway).

``--profile`` prints cProfile's top functions for the pipeline app instead;
``--instructions`` counts each row's instructions per call under callgrind
(``instructions.callgrind``, about a minute), which hold still where CPU time scatters. Run
as ``python -m benchmarks.pipeline_cost``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
from typing import Any

from benchmarks import pipeline
from benchmarks.adapter_cost import KINDS, REPO, _call, interleaved
from benchmarks.canned_gateway import CannedTerminal
from benchmarks.instructions import callgrind
from edge.app import create_app
from edge.config import parse_config

_PLAIN: dict[str, Any] = {
    "descriptors": {"proto_paths": [str(REPO / "protos")]},
    "upstreams": {"demo": {"address": "127.0.0.1:1"}},
    "services": {"*": {"upstream": "demo"}},
    "transcoding": {"generic_routes": "all"},
}


def _app(config: dict[str, Any]) -> Any:
    terminal = CannedTerminal()
    app = create_app(parse_config(config, base=REPO, env={}), terminal=terminal)
    terminal.open(app.extensions["edge.state"].current.routes.upstream_methods())
    return app.asgi_app


def apps() -> dict[str, tuple[Any, list[tuple[bytes, bytes]]]]:
    """Each row's ASGI app and request headers: the same JSON POST, with a token or not."""
    headers, _ = KINDS["JSON POST"]
    token = pipeline.mint_token()
    with_token = [*headers, (b"authorization", f"Bearer {token}".encode())]
    piped = pipeline.pipeline_config(_PLAIN, {"backend": "memory"})
    return {
        "plain gateway": (_app(_PLAIN), headers),
        # the token not forwarded, as the pipeline does not forward it once verified
        "plain gateway + token": (_app(pipeline.token_not_forwarded(_PLAIN)), with_token),
        "pipeline (memory)": (_app(piped), with_token),
    }


async def measure(calls: int, rounds: int) -> dict[str, list[float]]:
    _, body = KINDS["JSON POST"]
    rows = {name: (asgi, headers, body) for name, (asgi, headers) in apps().items()}
    return await interleaved(rows, calls, rounds, warmup=calls // 2)


async def _profile(calls: int) -> None:
    _, body = KINDS["JSON POST"]
    asgi, headers = apps()["pipeline (memory)"]
    for _ in range(calls // 2):
        await _call(asgi, headers, body)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        await _call(asgi, headers, body)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


ROWS = ("plain gateway", "plain gateway + token", "pipeline (memory)")
_RUNNER = """
import asyncio, gc, sys
sys.path.insert(0, {repo!r})
from benchmarks.adapter_cost import KINDS, _call
from benchmarks.pipeline_cost import apps
async def main():
    asgi, headers = apps()[{row!r}]
    _, body = KINDS["JSON POST"]
    for _ in range(300):
        await _call(asgi, headers, body)
    gc.collect()
    gc.freeze()  # as edge serve does once started: the counts then repeat to the instruction
    for _ in range({calls}):
        await _call(asgi, headers, body)
asyncio.run(main())
"""


def instructions(row: str, small: int = 200, large: int = 1200) -> float:
    """``row``'s instructions per call: two runs' difference over their extra calls."""
    counts = [callgrind(_RUNNER.format(repo=str(REPO), row=row, calls=n)) for n in (small, large)]
    return (counts[1] - counts[0]) / (large - small)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per round and row")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--profile", action="store_true", help="cProfile the pipeline app")
    parser.add_argument("--instructions", action="store_true", help="count under callgrind")
    args = parser.parse_args(argv)
    if args.instructions:
        counts = {row: instructions(row) for row in ROWS}
        print("pipeline instructions per call in process (callgrind, canned upstream)")
        _print(counts, "{:11,.0f}")
        return 0
    if args.profile:
        asyncio.run(_profile(args.calls))
        return 0
    cost = asyncio.run(measure(args.calls, args.rounds))
    print("pipeline cost in process (canned upstream, no server): us/call, min of rounds")
    _print({row: min(values) for row, values in cost.items()}, "{:11.1f}")
    return 0


def _print(figures: dict[str, float], form: str) -> None:
    """Each row, and the pipeline against the plain gateway with and without the token."""
    for row, value in figures.items():
        print(f"  {row:<22} {form.format(value)}")
    piped = figures["pipeline (memory)"]
    for row in ("plain gateway + token", "plain gateway"):
        base = figures[row]
        print(f"  pipeline vs {row:<22} +{form.format(piped - base).strip()}  {piped / base:.3f}x")


if __name__ == "__main__":
    raise SystemExit(main())
