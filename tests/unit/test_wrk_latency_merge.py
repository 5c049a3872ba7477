"""The bench's tail figures: wrk's latency grid read back, and slices merged into one run.

The tail targets are judged on p99 over p50 of all of a row's requests, which the bench
measures in interleaved slices. These hold the merge to the percentiles of the pooled
samples, computed directly.
"""

from __future__ import annotations

import math
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.stats import percentile
from benchmarks.wrk import (
    GRID,
    LATENCY_HOOK,
    WrkReport,
    merged_percentile,
    parse_report,
    run_wrk,
)

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:8080/
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.39ms    1.51ms  12.36ms   76.74%
    Req/Sec   627.50     55.86   717.00     75.00%
  Latency Distribution
     50%    3.09ms
     75%    4.04ms
     90%    5.24ms
     99%    8.83ms
  1251 requests in 1.00s, 1.05MB read
Requests/sec:   1249.13
Transfer/sec:      1.05MB
edge-latency 1 755
edge-latency 50 3093
edge-latency 99 8830
edge-latency 99.99 12356
"""


def _report(samples_ms: list[float]) -> WrkReport:
    """A report whose grid is what wrk prints for these samples (nearest rank, in us)."""
    grid = tuple((p, percentile(samples_ms, p / 100)) for p in GRID)
    return WrkReport(
        requests=len(samples_ms),
        seconds=1.0,
        p50_ms=percentile(samples_ms, 0.5),
        p99_ms=percentile(samples_ms, 0.99),
        max_ms=max(samples_ms),
        errors=0,
        grid=grid,
    )


def _step_at(percent: float) -> float:
    """The grid's spacing at ``percent``: how far the merge may overshoot, in percent."""
    return max(b - a for a, b in zip((0, *GRID), GRID, strict=False) if a <= percent <= b)


def test_the_grid_is_read_from_wrks_output() -> None:
    report = parse_report(WRK_OUTPUT)
    assert report.grid == ((1.0, 0.755), (50.0, 3.093), (99.0, 8.83), (99.99, 12.356))
    assert (report.p50_ms, report.p99_ms, report.max_ms) == (3.09, 8.83, 12.36)


def test_a_report_without_the_hook_has_no_grid_and_cannot_be_merged() -> None:
    report = parse_report("\n".join(WRK_OUTPUT.splitlines()[:-4]))
    assert report.grid == ()
    with pytest.raises(ValueError, match="latency grid"):
        merged_percentile([report], 99)


def test_the_hook_asks_wrk_for_every_grid_point_and_not_for_100() -> None:
    assert 100 not in GRID  # wrk answers 0 for it
    assert list(GRID) == sorted(set(GRID))
    assert {50, 99} <= set(GRID)
    assert "function done(summary, latency, requests)" in LATENCY_HOOK
    assert LATENCY_HOOK.count("99.99") == 1


def test_one_report_merged_is_that_report() -> None:
    report = _report([float(n % 97) + n / 1000 for n in range(5000)])
    for percent, latency in report.grid:
        assert merged_percentile([report], percent) == latency


def test_one_slow_slice_sets_the_worst_slices_p99_but_not_the_runs() -> None:
    calm = [_report([5.0 + (n % 10) / 10 for n in range(4000)]) for _ in range(2)]
    # A slice whose slowest 2% waited behind one stall: 40 ms.
    stalled = _report([5.0 + (n % 10) / 10 for n in range(3920)] + [40.0] * 80)
    assert stalled.p99_ms == 40.0
    merged = merged_percentile([*calm, stalled], 99)
    assert merged < 6.0  # 80 of 12,000 requests: under 1%
    assert merged_percentile([*calm, stalled], 99.5) == 40.0


@settings(max_examples=200, deadline=None)
@given(
    slices=st.lists(
        st.lists(st.floats(0.05, 500, allow_nan=False), min_size=1, max_size=400),
        min_size=1,
        max_size=4,
    ),
    percent=st.sampled_from([50.0, 90.0, 99.0, 99.9]),
)
def test_the_merge_is_the_pooled_percentile_within_one_grid_step(
    slices: list[list[float]], percent: float
) -> None:
    rounded = [[round(ms, 3) for ms in samples] for samples in slices]  # wrk prints us
    pooled = [ms for samples in rounded for ms in samples]
    merged = merged_percentile([_report(samples) for samples in rounded], percent)
    # Never below the pooled figure, and never past the next grid step's.
    assert merged >= percentile(pooled, percent / 100)
    ceiling = min(100.0, percent + _step_at(percent) + 1e-9)
    assert merged <= percentile(pooled, ceiling / 100) or math.isclose(
        merged, percentile(pooled, ceiling / 100)
    )


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is scripts/bench's to install")
def test_wrk_prints_the_grid_and_a_scripts_own_done_still_runs(tmp_path: Path) -> None:
    class Quiet(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    marker = tmp_path / "done"
    script = tmp_path / "own.lua"
    script.write_text(
        "function done(summary, latency, requests)\n"
        f'  local out = assert(io.open("{marker}", "w"))\n'
        "  out:write(summary.requests)\n"
        "  out:close()\n"
        "end\n"
    )
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        report = run_wrk(url, seconds=1, connections=2, threads=1, script=script)
    finally:
        server.shutdown()
        server.server_close()
    assert int(marker.read_text()) == report.requests > 0
    assert [p for p, _ in report.grid] == [float(p) for p in GRID]
    latencies = [ms for _, ms in report.grid]
    assert latencies == sorted(latencies) and latencies[-1] <= report.max_ms + 0.01
    assert merged_percentile([report], 50) == dict(report.grid)[50.0]
