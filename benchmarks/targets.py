"""Every target of one `scripts/bench` run in one table, each beside what the run measured.

The figures are spread over the run's own reports (``benchmarks.run``'s CPU ratios and
tails, ``go_compare``'s streams against grpc-gateway, ``scaling``'s workers, ``memory``'s
RSS), each printed among many other lines. This gathers them from the JSON files those
modules wrote, so a reader sees in one place which targets the run met. A file older than
the run (``--since``, the run's start as a Unix time) is named as not measured this run
rather than read: a table mixing runs would claim figures no single run produced.

Run as ``python -m benchmarks.targets [--since EPOCH]``; ``scripts/bench`` runs it last.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.memory import TARGET_MIB, TARGET_SOCKETS
from benchmarks.report import MAX_LATENCY_TARGET_MS, POST_TARGET, TAIL_TARGET, Tail
from benchmarks.scaling_report import TARGET as WORKERS_TARGET

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
# the module that writes each file, for the line that says it is missing or stale
SOURCES = {
    "latest.json": "benchmarks.run",
    "go_compare.json": "benchmarks.go_compare",
    "scaling.json": "benchmarks.scaling",
    "memory.json": "benchmarks.memory",
}

Document = Mapping[str, Any]


@dataclass(frozen=True)
class TargetRow:
    figure: str
    target: str
    measured: str
    verdict: str  # PASS, MISS, or why there is no verdict


def _mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _ratio(document: Document, name: str) -> Mapping[str, Any]:
    for ratio in document["ratios"]:
        if ratio["name"] == name:
            return ratio  # type: ignore[no-any-return]
    raise KeyError(name)


def _cpu_rows(run: Document) -> list[TargetRow]:
    rows = []
    for figure, name in (
        ("transcoded POST CPU vs bare Hypercorn", "POST CPU/request"),
        ("transcoded GET CPU vs bare Hypercorn", "GET CPU/request"),
        (
            "policy pipeline CPU vs the plain gateway, same requests",
            "pipeline (memory) POST CPU/request vs plain gateway POST",
        ),
        (  # as the issue first measured it: the token's own bytes counted as the pipeline's
            "policy pipeline CPU vs the plain gateway's tokenless POST",
            "pipeline (memory) POST CPU/request vs plain gateway POST without a token",
        ),
        ("plain proxy POST CPU vs bare Hypercorn", "proxy POST CPU/request"),
        ("plain proxy GET CPU vs bare Hypercorn", "proxy GET CPU/request"),
        ("gRPC-Web unary CPU vs the JSON POST", "gRPC-Web unary CPU/request vs JSON POST"),
        ("Connect unary CPU vs the JSON POST", "Connect unary CPU/request vs JSON POST"),
    ):
        ratio = _ratio(run, name)
        value, target = ratio["value"], ratio["target"]
        rows.append(
            TargetRow(
                figure,
                f"<= {target}x",
                f"{value:.2f}x ({ratio['gateway_cpu_us']:.0f} / {ratio['bare_cpu_us']:.0f} us)",
                _mark(value <= target),
            )
        )
    return rows


def _tail_rows(run: Document) -> list[TargetRow]:
    rows = []
    for tail in run["tails"]:
        method = "POST" if "POST" in tail["scenario"] else "GET"
        rows.append(
            TargetRow(
                f"tail of the transcoded {method}: p99 / p50, slowest",
                f"<= {TAIL_TARGET:g}x, <= {MAX_LATENCY_TARGET_MS:g} ms",
                f"{tail['spread']:.2f}x ({tail['p99_ms']:.1f} / {tail['p50_ms']:.1f} ms), "
                f"{tail['max_ms']:.0f} ms",
                str(tail["verdict"]),
            )
        )
    return rows


def _go_unary_rows(go: Document) -> list[TargetRow]:
    """The issue's own setup: the Go upstream, whose CPU leaves the gateway more of the
    machine than the Python upstream of ``benchmarks.run`` does; its bare row is POST only."""
    ratio = _ratio(go, "POST CPU/request, edge vs bare Hypercorn")
    rows = [
        TargetRow(
            "transcoded POST CPU vs bare Hypercorn, Go upstream",
            f"<= {POST_TARGET}x",
            f"{ratio['value']:.2f}x ({ratio['gateway_cpu_us']:.0f} / "
            f"{ratio['bare_cpu_us']:.0f} us)",
            _mark(ratio["value"] <= POST_TARGET),
        )
    ]
    for scenario in go["scenarios"]:
        if scenario["scenario"] in ("edge POST (transcoded)", "edge GET (transcoded)"):
            method = "POST" if "POST" in scenario["scenario"] else "GET"
            tail = Tail(
                scenario["scenario"], scenario["p50_ms"], scenario["p99_ms"], scenario["max_ms"]
            )
            rows.append(
                TargetRow(
                    f"tail of the transcoded {method}, Go upstream",
                    f"<= {TAIL_TARGET:g}x, <= {MAX_LATENCY_TARGET_MS:g} ms",
                    f"{tail.spread:.2f}x ({tail.p99_ms:.1f} / {tail.p50_ms:.1f} ms), "
                    f"{tail.max_ms:.0f} ms",
                    tail.verdict,
                )
            )
    return rows


def _stream_rows(go: Document) -> list[TargetRow]:
    rows = []
    for verdict in go["stream_verdicts"]:
        label = "WebSocket bridge" if verdict["name"].startswith("WebSocket") else "NDJSON"
        rate_ok = verdict["rate_ratio"] >= verdict["rate_target"]
        cpu_ok = verdict["cpu_ratio"] <= verdict["cpu_target"]
        rows.append(
            TargetRow(
                f"server stream over {label} vs grpc-gateway: rate, CPU per message",
                f">= {verdict['rate_target']}x, <= {verdict['cpu_target']}x",
                f"{verdict['rate_ratio']:.2f}x, {verdict['cpu_ratio']:.2f}x",
                _mark(rate_ok and cpu_ok),
            )
        )
    return rows


def _worker_rows(scaling: Document) -> list[TargetRow]:
    verdict = scaling["verdict"]
    if verdict["measured"] is None:
        return [TargetRow("2 workers vs 1", f">= {WORKERS_TARGET}x", "-", "fewer than 2 cores")]
    measured, cap, projected = verdict["measured"], verdict["machine_cap"], verdict["projected"]
    return [
        TargetRow(
            "2 workers vs 1, as measured (upstream and wrk on the same cores)",
            f">= {WORKERS_TARGET}x",
            f"{measured:.2f}x (this machine allows {cap:.2f}x)",
            _mark(measured >= WORKERS_TARGET)
            if cap >= WORKERS_TARGET
            else f"{_mark(measured >= WORKERS_TARGET)}: the machine's ceiling is under the target",
        ),
        TargetRow(
            "2 workers vs 1, projected for 2 cores of the gateway's own",
            f">= {WORKERS_TARGET}x",
            f"{projected:.2f}x",
            _mark(projected >= WORKERS_TARGET),
        ),
    ]


def _memory_rows(memory: Document) -> list[TargetRow]:
    by_scenario: dict[tuple[str, int], Mapping[str, Any]] = {
        (f["scenario"], f["connections"]): f for f in memory["figures"]
    }
    rows = []
    idle = by_scenario.get(("ws-idle", TARGET_SOCKETS))
    if idle is None:
        rows.append(
            TargetRow(
                f"RSS of one worker with {TARGET_SOCKETS:,} idle WebSockets",
                "<= 300 MB",
                "-",
                "not measured (--quick)",
            )
        )
    else:
        mib = idle["after"]["rss_kib"] / 1024
        rows.append(
            TargetRow(
                f"RSS of one worker with {TARGET_SOCKETS:,} idle WebSockets",
                "<= 300 MB",
                f"{mib:.0f} MiB ({mib * 1.048576:.0f} MB), "
                f"{idle['kib_per_connection']:.1f} KiB each",
                _mark(mib <= TARGET_MIB),
            )
        )
    per_stream = {name: f for (name, _), f in by_scenario.items()}  # one run each
    streams = [
        f"{label} {per_stream[scenario]['kib_per_connection']:.1f} KiB"
        for label, scenario in (("WebSocket", "ws-stream"), ("NDJSON", "http-stream"))
        if scenario in per_stream
    ]
    rows.append(TargetRow("RSS per open server stream", "reported", ", ".join(streams) or "-", "-"))
    return rows


Section = Callable[[Document], list[TargetRow]]
SECTIONS: tuple[tuple[str, tuple[Section, ...]], ...] = (
    ("latest.json", (_cpu_rows, _tail_rows)),
    ("go_compare.json", (_go_unary_rows, _stream_rows)),
    ("scaling.json", (_worker_rows,)),
    ("memory.json", (_memory_rows,)),
)


def load(directory: Path, since: float | None) -> dict[str, Document | str]:
    """Each results file's document, or the reason it cannot be read as this run's."""
    found: dict[str, Document | str] = {}
    for name, module in SOURCES.items():
        path = directory / name
        if not path.exists():
            found[name] = f"not measured: no {name} (python -m {module})"
        elif since is not None and path.stat().st_mtime < since:
            found[name] = f"not measured this run: {name} is older than the run"
        else:
            try:
                found[name] = json.loads(path.read_text())
            except ValueError:
                found[name] = f"not measured: {name} is not JSON"
    return found


def target_rows(documents: Mapping[str, Document | str]) -> list[TargetRow]:
    rows: list[TargetRow] = []
    for name, sections in SECTIONS:
        document = documents[name]
        if isinstance(document, str):
            rows.append(TargetRow(f"({SOURCES[name]})", "", "-", document))
            continue
        for section in sections:
            try:
                rows.extend(section(document))
            except (KeyError, TypeError) as error:  # a file in an older layout
                rows.append(TargetRow(f"({SOURCES[name]})", "", "-", f"unreadable: {error!r}"))
    return rows


def format_rows(rows: list[TargetRow]) -> str:
    header = TargetRow("target", "goal", "this run", "verdict")
    widths = [max(len(getattr(r, f)) for r in [header, *rows]) for f in TargetRow.__annotations__]
    lines = []
    for row in [header, *rows]:
        cells = (row.figure, row.target, row.measured, row.verdict)
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        if row is header:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.targets", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--since", type=float, help="the run's start (Unix time)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results folder")
    args = parser.parse_args(argv)
    documents = load(args.results, args.since)
    rows = target_rows(documents)
    print("The targets of this run, each beside what it measured:")
    print(format_rows(rows))
    run = documents["latest.json"]
    if not isinstance(run, str):
        upstream = run.get("meta", {}).get("upstream", "python")
        print(
            f"(benchmarks.run's gateway rows were served by the {upstream.capitalize()} upstream)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
