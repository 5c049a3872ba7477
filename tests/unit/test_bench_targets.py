"""The bench's target table: every target read back from the files the run's own modules
wrote, judged at its line, and never a verdict from a file an earlier run left.

The documents are written by the modules' own writers (``report.write_json``,
``go_compare.write_json``, ``scaling_report.verdict_document``, ``MemoryFigures.as_json``),
so a change to a report's layout that the table cannot read fails here, not in a
15-minute run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks import go_compare, run, targets
from benchmarks.memory import TARGET_SOCKETS, MemoryFigures, Sample
from benchmarks.report import Figures, write_json
from benchmarks.scaling_report import Verdict, verdict_document

SCENARIOS = (
    "gateway POST (transcoded)",
    "gateway GET (transcoded)",
    "bare Hypercorn POST",
    "bare Hypercorn GET",
    "gateway POST, canned upstream",
    "gateway POST (grpc.aio client)",
    "proxy POST (plain HTTP)",
    "proxy GET (plain HTTP)",
    "gateway gRPC-Web unary",
    "gateway Connect unary",
    "gateway POST + pipeline (memory)",
    "gateway POST + pipeline (redis)",
    run.PLAIN_WITH_TOKEN,
)


def _figures(
    cpu: dict[str, float],
    p50: float = 5.0,
    p99: float = 10.0,
    scenarios: tuple[str, ...] = SCENARIOS,
) -> list[Figures]:
    """Every scenario ``run._ratios`` reads, at 100 us a request unless ``cpu`` says."""
    return [
        Figures(
            scenario=name,
            driver="wrk",
            requests=1000,
            seconds=10.0,
            rps=100.0,
            p50_ms=p50,
            p99_ms=p99,
            max_ms=20.0,
            errors=0,
            server_cpu_us=cpu.get(name, 100.0),
            server_cores=1.0,
            upstream_cpu_us=None,
            client_cpu_us=None,
        )
        for name in scenarios
    ]


def _write_run(directory: Path, figures: list[Figures]) -> None:
    write_json(directory / "latest.json", {}, figures, run._ratios(figures), run._tails(figures))


def _rows(directory: Path, since: float | None = None) -> dict[str, targets.TargetRow]:
    return {row.figure: row for row in targets.target_rows(targets.load(directory, since))}


def test_each_cpu_target_is_judged_at_its_line(tmp_path: Path) -> None:
    # bare 100 us: the POST exactly at 1.5x passes, the GET just over 1.6x misses
    cpu = {
        "gateway POST (transcoded)": 150.0,
        "gateway GET (transcoded)": 161.0,
        # judged against the same requests with the pipeline off (the token's own bytes in
        # both): 1.1x of those, and 1.17x of the tokenless POST, judged apart
        run.PLAIN_WITH_TOKEN: 160.0,
        "gateway POST + pipeline (memory)": 160.0 * 1.1,
        "proxy POST (plain HTTP)": 181.0,
        "gateway Connect unary": 149.0,
    }
    _write_run(tmp_path, _figures(cpu))
    rows = _rows(tmp_path)
    assert rows["transcoded POST CPU vs bare Hypercorn"].verdict == "PASS"
    assert rows["transcoded POST CPU vs bare Hypercorn"].measured.startswith("1.50x")
    assert rows["transcoded GET CPU vs bare Hypercorn"].verdict == "MISS"
    assert rows["policy pipeline CPU vs the plain gateway, same requests"].verdict == "PASS"
    tokenless = rows["policy pipeline CPU vs the plain gateway's tokenless POST"]
    assert tokenless.verdict == "MISS" and tokenless.measured.startswith("1.17x")
    assert rows["plain proxy POST CPU vs bare Hypercorn"].verdict == "MISS"
    assert rows["plain proxy GET CPU vs bare Hypercorn"].verdict == "PASS"
    assert rows["Connect unary CPU vs the JSON POST"].verdict == "PASS"


def test_tails_judge_spread_and_slowest(tmp_path: Path) -> None:
    _write_run(tmp_path, _figures({}, p50=5.0, p99=15.5))
    rows = _rows(tmp_path)
    post = rows["tail of the transcoded POST: p99 / p50, slowest"]
    assert post.verdict == "MISS" and post.measured.startswith("3.10x")
    _write_run(tmp_path, _figures({}, p50=5.0, p99=14.5))
    assert _rows(tmp_path)["tail of the transcoded GET: p99 / p50, slowest"].verdict == "PASS"


def test_a_file_older_than_the_run_gives_no_verdict(tmp_path: Path) -> None:
    _write_run(tmp_path, _figures({}))
    stale = (tmp_path / "latest.json").stat().st_mtime - 60
    os.utime(tmp_path / "latest.json", (stale, stale))
    rows = targets.target_rows(targets.load(tmp_path, since=stale + 30))
    assert not any(row.verdict in ("PASS", "MISS") for row in rows)
    assert any("older than the run" in row.verdict for row in rows)
    assert sum("not measured: no" in row.verdict for row in rows) == 3  # the other three


def test_streams_from_go_compare(tmp_path: Path) -> None:
    def row(scenario: str, seconds: float, gateway_cpu: float) -> go_compare.StreamRow:
        return go_compare.StreamRow(scenario, "curl", 100_000, seconds, gateway_cpu, 1.0, 0.5)

    streams = [
        row("grpc-gateway NDJSON stream", 2.0, 1.8),
        row("edge NDJSON stream", 3.9, 3.7),  # 0.51x the rate, 2.06x the CPU: a MISS
        row("edge WebSocket bridge", 3.9, 3.5),
    ]
    unary = _figures(
        {"edge POST (transcoded)": 151.0},
        p50=5.0,
        p99=15.0,
        scenarios=(
            "edge POST (transcoded)",
            "edge GET (transcoded)",
            "bare Hypercorn POST",
            "grpc-gateway POST (transcoded)",
            "grpc-gateway GET (transcoded)",
        ),
    )
    go_compare.write_json(
        tmp_path / "go_compare.json",
        {},
        unary,
        go_compare.unary_ratios(unary),
        streams,
        go_compare.stream_verdicts(streams),
    )
    rows = _rows(tmp_path)
    post = rows["transcoded POST CPU vs bare Hypercorn, Go upstream"]
    assert (post.verdict, post.measured) == ("MISS", "1.51x (151 / 100 us)")
    assert rows["tail of the transcoded GET, Go upstream"].verdict == "PASS"  # 3.00x
    ndjson = rows["server stream over NDJSON vs grpc-gateway: rate, CPU per message"]
    bridge = rows["server stream over WebSocket bridge vs grpc-gateway: rate, CPU per message"]
    assert (ndjson.verdict, ndjson.measured) == ("MISS", "0.51x, 2.06x")
    assert (bridge.verdict, bridge.measured) == ("PASS", "0.51x, 1.94x")


@pytest.mark.parametrize(
    ("measured", "cap", "projected", "first", "second"),
    [
        (1.41, 1.52, 1.93, "MISS: the machine's ceiling is under the target", "PASS"),
        (1.85, 2.0, 1.9, "PASS", "PASS"),
        (1.7, 2.0, 1.75, "MISS", "MISS"),
    ],
)
def test_workers_measured_beside_the_machines_ceiling(
    tmp_path: Path, measured: float, cap: float, projected: float, first: str, second: str
) -> None:
    verdict = Verdict(measured, 1.0, 1.0, projected, cap)
    (tmp_path / "scaling.json").write_text(json.dumps({"verdict": verdict_document(verdict)}))
    rows = [
        row for row in targets.target_rows(targets.load(tmp_path, None)) if "workers" in row.figure
    ]
    assert [row.verdict for row in rows] == [first, second]
    assert f"this machine allows {cap:.2f}x" in rows[0].measured


def test_memory_target_and_per_stream_figures(tmp_path: Path) -> None:
    def figures(scenario: str, n: int, after_kib: int) -> dict[str, object]:
        return MemoryFigures(
            scenario, n, Sample(40_000, 10, 5, 0), Sample(after_kib, n, n, 0), 1.0
        ).as_json()

    document = {
        "figures": [
            figures("ws-idle", TARGET_SOCKETS, 300 * 1024 + 1),  # one KiB over 300 MiB
            figures("ws-stream", 100, 40_000 + 3_000),
            figures("http-stream", 100, 40_000 + 2_600),
        ]
    }
    (tmp_path / "memory.json").write_text(json.dumps(document))
    rows = _rows(tmp_path)
    assert rows[f"RSS of one worker with {TARGET_SOCKETS:,} idle WebSockets"].verdict == "MISS"
    assert rows["RSS per open server stream"].measured == "WebSocket 30.0 KiB, NDJSON 26.0 KiB"


def test_a_report_in_another_layout_is_named_not_read(tmp_path: Path) -> None:
    (tmp_path / "latest.json").write_text(json.dumps({"ratios": [], "tails": []}))
    (tmp_path / "scaling.json").write_text("not json")
    rows = targets.target_rows(targets.load(tmp_path, None))
    verdicts = [row.verdict for row in rows]
    assert any(v.startswith("unreadable: KeyError") for v in verdicts)
    assert "not measured: scaling.json is not JSON" in verdicts
    assert "PASS" not in verdicts


def test_the_table_prints_every_row(tmp_path: Path) -> None:
    _write_run(tmp_path, _figures({}))
    rows = targets.target_rows(targets.load(tmp_path, None))
    table = targets.format_rows(rows).splitlines()
    assert len(table) == len(rows) + 2
    assert table[0].split()[:1] == ["target"]
