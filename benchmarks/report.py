"""The figures of one benchmark run: a table for people, JSON for machines and history.

CPU is reported per request in microseconds, split by process, because on a shared
two-core machine requests per second depends on who else holds a core (the load
generator always does) while CPU per request barely moves.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# gateway CPU/request ÷ bare Hypercorn CPU/request (issue 14's targets)
POST_TARGET = 1.5  # the transcoded POST
GET_TARGET = 1.6  # the transcoded GET (path variables bound from the template)
PROXY_TARGET = 1.8  # the plain HTTP proxy, POST and GET
# pipeline (auth + rate limit, memory store) POST CPU/request ÷ plain gateway POST CPU/request:
# the policy pipeline adds at most 10% CPU per request
PIPELINE_TARGET = 1.1
# the tail of the transcoded POST and GET at 32 connections: p99 within 3x p50, and no
# request slower than 100 ms
TAIL_TARGET = 3.0
MAX_LATENCY_TARGET_MS = 100.0
BROWSER_PROTOCOL_TARGET = 1.0  # gRPC-Web and Connect unary: no dearer than the JSON POST


@dataclass(frozen=True)
class Figures:
    """One scenario. CPU figures are microseconds per request; None where not measured."""

    scenario: str
    driver: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float  # the slowest request (for interleaved rows, of any slice)
    errors: int
    server_cpu_us: float | None  # the HTTP server under test (gateway or bare Hypercorn)
    server_cores: float | None  # its CPU seconds per wall second: 1.0 means one core saturated
    upstream_cpu_us: float | None  # the demo gRPC upstream process
    client_cpu_us: float | None  # the Python gRPC client (wrk's own CPU is not charged)
    vs_bare: float | None = None  # server us/req ÷ bare Hypercorn's for the same method
    # interleaved rows: p50 and p99 are of all the row's requests; this is its worst slice's
    p99_worst_slice_ms: float | None = None
    # each slice's server us/req, in the order measured: how much the figure moved in a run
    slice_server_cpu_us: tuple[float, ...] = ()


@dataclass(frozen=True)
class Ratio:
    """CPU/request of one row over another's; the labels name the two in the printed line.

    The fields keep their first names (gateway over bare Hypercorn) so the JSON of older
    runs compares with newer; a pipeline ratio is pipeline gateway over plain gateway.
    """

    name: str
    gateway_cpu_us: float
    bare_cpu_us: float
    target: float | None
    numerator: str = "gateway"
    denominator: str = "bare Hypercorn"
    show_added: bool = False  # also print the difference in us/request

    @property
    def value(self) -> float:
        return self.gateway_cpu_us / self.bare_cpu_us

    @property
    def added_us(self) -> float:
        """What the numerator costs per request beyond the denominator, in microseconds."""
        return self.gateway_cpu_us - self.bare_cpu_us

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        return "PASS" if self.value <= self.target else "MISS"


def _cell(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


_COLUMNS = (
    ("scenario", 32, "<"),
    ("driver", 16, "<"),
    ("req/s", 8, ">"),
    ("p50 ms", 7, ">"),
    ("p99 ms", 7, ">"),
    ("max ms", 7, ">"),
    ("errors", 6, ">"),
    ("server us/req", 13, ">"),
    ("x bare", 6, ">"),
    ("server cores", 12, ">"),
    ("upstream us/req", 15, ">"),
    ("client us/req", 13, ">"),
)


Columns = Sequence[tuple[str, int, str]]  # (heading, width, alignment: "<" or ">")


def fixed_width(columns: Columns, rows: Iterable[Sequence[str]]) -> list[str]:
    """The headings, a rule, then each row's cells, each in its column's width."""

    def row(cells: Sequence[str]) -> str:
        pairs = zip(cells, columns, strict=True)
        return "  ".join(f"{cell:{align}{width}}" for cell, (_, width, align) in pairs)

    lines = [row([name for name, _, _ in columns])]
    lines.append("  ".join("-" * width for _, width, _ in columns))
    lines += [row(cells) for cells in rows]
    return lines


def format_table(figures: list[Figures], ratios: list[Ratio]) -> str:
    """A fixed-width table of every figure, then one line per gateway/bare ratio."""
    lines = fixed_width(
        _COLUMNS,
        (
            [
                f.scenario,
                f.driver,
                _cell(f.rps),
                _cell(f.p50_ms, 2),
                _cell(f.p99_ms, 2),
                _cell(f.max_ms, 1),
                str(f.errors),
                _cell(f.server_cpu_us),
                _cell(f.vs_bare, 2),
                _cell(f.server_cores, 2),
                _cell(f.upstream_cpu_us),
                _cell(f.client_cpu_us),
            ]
            for f in figures
        ),
    )
    lines.append("")
    for r in ratios:
        target = f"  (target <= {_times(r.target)}x: {r.verdict})" if r.target is not None else ""
        added = f", {r.added_us:+,.0f} us/req" if r.show_added else ""
        lines.append(
            f"{r.name}: {r.numerator} {r.gateway_cpu_us:,.0f} us/req / {r.denominator} "
            f"{r.bare_cpu_us:,.0f} us/req = {r.value:.2f}x{added}{target}"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Tail:
    """One row's latency spread: p99 over p50, and its slowest request, against targets."""

    scenario: str
    p50_ms: float
    p99_ms: float
    max_ms: float
    p99_worst_slice_ms: float | None = None  # shown beside, not judged

    @property
    def spread(self) -> float:
        return self.p99_ms / self.p50_ms

    @property
    def verdict(self) -> str:
        ok = self.spread <= TAIL_TARGET and self.max_ms <= MAX_LATENCY_TARGET_MS
        return "PASS" if ok else "MISS"

    def line(self) -> str:
        worst = self.p99_worst_slice_ms
        beside = "" if worst is None else f" (worst slice's p99 {worst:.1f} ms)"
        return (
            f"tail, {self.scenario}: p99 {self.p99_ms:.1f} ms / p50 {self.p50_ms:.1f} ms = "
            f"{self.spread:.2f}x, max {self.max_ms:.1f} ms{beside}  (target p99 <= "
            f"{_times(TAIL_TARGET)}x p50, max <= {MAX_LATENCY_TARGET_MS:.0f} ms: {self.verdict})"
        )


def _times(target: float) -> str:
    """2.0 as "2.0", 1.15 as "1.15": as many decimals as the target has, at least one."""
    return f"{target:.1f}" if round(target, 1) == target else f"{target:.2f}"


def write_json(
    path: Path,
    meta: dict[str, Any],
    figures: list[Figures],
    ratios: list[Ratio],
    tails: list[Tail],
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "meta": meta,
        "scenarios": [asdict(f) for f in figures],
        "ratios": [
            {**asdict(r), "value": r.value, "added_us": r.added_us, "verdict": r.verdict or None}
            for r in ratios
        ],
        "tails": [{**asdict(t), "spread": t.spread, "verdict": t.verdict} for t in tails],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
