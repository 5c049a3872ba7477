"""Driving an HTTP server with ``wrk`` and reading its report.

wrk is a C load generator: it costs far less CPU per request than any Python client, so
more of the two cores are left to the server under test. Its latencies are not corrected
for coordinated omission (that is wrk2), which is fine for a closed-loop comparison where
every target gets the same treatment.
"""

from __future__ import annotations

import bisect
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_SUMMARY = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h),")
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
# "    Latency    12.16ms    3.43ms  59.51ms   85.76%": average, stdev, max, +/- stdev
_LATENCY = re.compile(
    r"^\s*Latency\s+[\d.]+\w+\s+[\d.]+\w+\s+([\d.]+)(us|ms|s|m|h)\s", re.MULTILINE
)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
# The percentiles wrk's ``done`` hook prints (LATENCY_HOOK): fine where the tail targets
# look (p50, p99), so slices can be merged into one distribution (``merged_percentile``).
# Not 100: wrk answers 0 for it (the slowest request is in its summary line instead).
GRID = (
    *range(1, 90),
    *(round(90 + i / 10, 1) for i in range(90)),
    *(round(99 + i / 100, 2) for i in range(100)),
)
# A script's own done() (pipeline.py's saves the non-2xx count) still runs, first.
LATENCY_HOOK = (
    "\nlocal edge_script_done = done\n"
    "function done(summary, latency, requests)\n"
    "  if edge_script_done then edge_script_done(summary, latency, requests) end\n"
    "  for _, p in ipairs({" + ", ".join(f"{p:g}" for p in GRID) + "}) do\n"
    '    io.write(string.format("edge-latency %g %d\\n", p, latency:percentile(p)))\n'
    "  end\n"
    "end\n"
)
_GRID_LINE = re.compile(r"^edge-latency ([\d.]+) (\d+)$", re.MULTILINE)


@dataclass(frozen=True)
class WrkReport:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float  # the slowest request of the run
    errors: int  # non-2xx/3xx responses plus socket errors
    # (percentile, latency in ms) at each point of GRID, when the hook printed them
    grid: tuple[tuple[float, float], ...] = field(default=(), repr=False)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def parse_report(text: str) -> WrkReport:
    """Pull the figures out of ``wrk --latency`` output; ValueError names what is missing."""
    summary = _SUMMARY.search(text)
    if summary is None:
        raise ValueError(f"no request summary in wrk output:\n{text}")
    percentiles = {int(p): float(v) * _UNITS[u] for p, v, u in _PERCENTILE.findall(text)}
    if set(percentiles) != {50, 99}:
        raise ValueError(f"no 50%/99% latency in wrk output (was --latency given?):\n{text}")
    latency = _LATENCY.search(text)
    if latency is None:
        raise ValueError(f"no latency line in wrk output:\n{text}")
    errors = sum(int(n) for n in _NON_2XX.findall(text))
    for match in _SOCKET_ERRORS.finditer(text):
        errors += sum(int(n) for n in match.groups())
    return WrkReport(
        requests=int(summary.group(1)),
        seconds=float(summary.group(2)) * _UNITS[summary.group(3)] / 1000,
        p50_ms=percentiles[50],
        p99_ms=percentiles[99],
        max_ms=float(latency.group(1)) * _UNITS[latency.group(2)],
        errors=errors,
        grid=tuple((float(p), int(us) / 1000) for p, us in _GRID_LINE.findall(text)),
    )


def merged_percentile(reports: Sequence[WrkReport], percent: float) -> float:
    """The ``percent`` latency of every request of ``reports`` taken together, in ms.

    Each report's grid gives, for a latency x, a lower bound on the share of its requests
    at or under x (the highest grid percentile whose latency is <= x; the latencies rise
    with the percentile). Weighting those by request counts gives the whole run's share,
    and the answer is the least grid latency whose share reaches ``percent``: never below
    the true figure, and equal to a lone report's own percentile wherever ``percent`` is
    on the grid. Interleaved rows are measured in slices; this is the p99 of the row, not
    of its worst slice.
    """
    total = sum(r.requests for r in reports)
    if total == 0 or any(not r.grid for r in reports):
        raise ValueError("every report needs requests and a latency grid (LATENCY_HOOK)")
    columns = [(r.requests, [ms for _, ms in r.grid], [p for p, _ in r.grid]) for r in reports]
    candidates = sorted({ms for _, latencies, _ in columns for ms in latencies})
    for candidate in candidates:
        share = 0.0
        for requests, latencies, percents in columns:
            within = bisect.bisect_right(latencies, candidate)
            if within:
                share += requests * percents[within - 1]
        if share / total >= percent - 1e-9:
            return candidate
    return candidates[-1]


def wrk_path() -> str:
    """Where wrk is; RuntimeError says how to get it (``scripts/bench`` installs it)."""
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk (scripts/bench does this)")
    return path


def run_wrk(
    url: str, *, seconds: int, connections: int, threads: int, script: Path | None = None
) -> WrkReport:
    """One closed-loop run of ``seconds`` against ``url``; ``script`` sets method and body.

    wrk takes one script, so the latency hook is appended to a copy of ``script``.
    """
    text = (script.read_text() if script is not None else "") + LATENCY_HOOK
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as hooked:
        hooked.write(text)
        hooked.flush()
        argv = [wrk_path(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
        done = subprocess.run(
            [*argv, "-s", hooked.name, url],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_report(done.stdout)
