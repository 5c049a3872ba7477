"""The worker-scaling row's figures: one row per layout, the ratios, and the printed lines.

Pure: ``scaling.py`` measures and fills ``Row``s; this judges them against issue 14's
target and words the verdict, including what the machine it ran on allows.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

PATH = "/v1/shelves/1/books/1"  # GetBook, transcoded: path variables, JSON reply
TARGET = 1.8  # issue 14: two workers give at least 1.8x the throughput of one
SATURATED = 0.85  # a pinned gateway using less of its core than this was held back


@dataclass(frozen=True)
class Row:
    layout: str
    workers: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    gateway_us: float  # CPU per request of every gateway process (supervisor included)
    gateway_cores: float  # that CPU per wall second
    gateway_us_median: float
    worker_cpu_share: list[float]  # each worker's part of the workers' CPU, all slices
    worker_connections: list[list[int]]  # per slice: each worker's connections, mid-run
    burst_splits: list[list[int]]  # per burst of connections opened at once
    upstream_us: float
    wrk_us: float


@dataclass(frozen=True)
class Settings:
    seconds: int
    rounds: int
    warmup: int
    connections: int
    threads: int
    bursts: int
    output: Path


@dataclass(frozen=True)
class Verdict:
    measured: float | None  # (3) req/s over (1)
    same_core_cost: float | None  # (2) us/req over (1) us/req
    half_load_cost: float | None  # (1) at half the connections, us/req over (1)
    projected: float | None  # 2 x (1) us/req over (1 at half the connections) us/req
    machine_cap: float | None  # the most (3) could reach here, over (1)


def judge(rows: list[Row]) -> Verdict:
    if len(rows) < 4:
        return Verdict(None, None, None, None, None)
    one, one_half, two_same, two_all = rows  # the order of ``layouts``
    everything_us = two_all.gateway_us + two_all.upstream_us + two_all.wrk_us
    cores = len(os.sched_getaffinity(0))
    return Verdict(
        measured=two_all.rps / one.rps,
        same_core_cost=two_same.gateway_us / one.gateway_us,
        half_load_cost=one_half.gateway_us / one.gateway_us,
        projected=2 * one.gateway_us / one_half.gateway_us,
        machine_cap=min(2.0, cores * 1e6 / everything_us / one.rps),
    )


def verdict_document(verdict: Verdict) -> dict[str, float | None]:
    """The verdict as ``scaling.json`` keeps it (``benchmarks.targets`` reads it back)."""
    return {**asdict(verdict), "target": TARGET}


def _split(values: list[int] | list[float], percent: bool = False) -> str:
    return "/".join(f"{v * 100:.0f}" if percent else str(v) for v in values)


def imbalance(splits: list[list[int]]) -> str:
    """The spread of connection splits: the worst one and the mean share of the busier
    worker (50% is even)."""
    if not splits:
        return "none measured"
    shares = [max(split) / (sum(split) or 1) for split in splits]
    worst = max(splits, key=lambda split: max(split) / (sum(split) or 1))
    return f"busier worker holds {statistics.mean(shares):.0%} on average, worst {_split(worst)}"


def format_rows(rows: list[Row], verdict: Verdict, settings: Settings) -> str:
    lines = [
        f"worker scaling: GET {PATH} transcoded, canned upstream, wrk -t{settings.threads} "
        f"-c{settings.connections}, {settings.rounds} interleaved rounds of {settings.seconds} s",
        f"{'layout':<36} {'req/s':>7} {'p99 ms':>7} {'gw us/req':>9} {'(median)':>8} "
        f"{'gw cores':>8} {'CPU %':>7} {'up us':>6} {'wrk us':>6}",
    ]
    for row in rows:
        lines.append(
            f"{row.layout:<36} {row.rps:>7.0f} {row.p99_ms:>7.1f} {row.gateway_us:>9.0f} "
            f"{row.gateway_us_median:>8.0f} {row.gateway_cores:>8.2f} "
            f"{_split(row.worker_cpu_share, percent=True):>7} {row.upstream_us:>6.0f} "
            f"{row.wrk_us:>6.0f}"
        )
    for row in rows:
        if row.workers > 1:
            during = " ".join(_split(split) for split in row.worker_connections)
            lines.append(
                f"  {row.layout}: wrk's connections per worker {during}; "
                f"{len(row.burst_splits)} bursts of {settings.connections}: "
                f"{imbalance(row.burst_splits)}"
            )
    if verdict.measured is None:
        lines.append("fewer than two cores: no ratio")
        return "\n".join(lines)
    assert verdict.projected is not None and verdict.same_core_cost is not None
    assert verdict.half_load_cost is not None and verdict.machine_cap is not None
    everything = rows[3].gateway_us + rows[3].upstream_us + rows[3].wrk_us
    lines += [
        f"2 workers / 1 worker, as measured: {verdict.measured:.2f}x "
        f"(target >= {TARGET}x: {_met(verdict.measured)} on this machine)",
        f"gateway CPU per request, 2 workers sharing 1 core / 1 worker: "
        f"{verdict.same_core_cost:.2f}x (two processes time-sliced on one core)",
        f"gateway CPU per request, 1 worker at half the connections / at all: "
        f"{verdict.half_load_cost:.2f}x (what each of two workers would carry)",
        f"projected with 2 cores for the gateway alone: {verdict.projected:.2f}x "
        f"(target >= {TARGET}x: {_met(verdict.projected)}): 2 x the CPU per request of one "
        "worker at all the connections over that at half, if the workers split the "
        "connections about evenly (see the splits above) and share nothing else",
        f"this machine allows at most {verdict.machine_cap:.2f}x: its "
        f"{len(os.sched_getaffinity(0))} cores run gateway, upstream and wrk together "
        f"({everything:.0f} us/req), where the 1-worker run had a core for the gateway alone",
    ]
    if rows[0].gateway_cores < SATURATED:
        lines.append(
            f"warning: the 1-worker gateway used {rows[0].gateway_cores:.2f} of its core: "
            "other load held the machine, so req/s and the ratios from them are not the "
            "gateway's limits (CPU per request holds up better; compare several runs)"
        )
    return "\n".join(lines)


def _met(ratio: float) -> str:
    return "met" if ratio >= TARGET else "NOT met"
