"""Driving an HTTP server with ``wrk`` and reading its report.

wrk is a C load generator: it costs far less CPU per request than any Python client, so
more of the two cores are left to the server under test. Its latencies are not corrected
for coordinated omission (that is wrk2), which is fine for a closed-loop comparison where
every target gets the same treatment.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
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


@dataclass(frozen=True)
class WrkReport:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float  # the slowest request of the run
    errors: int  # non-2xx/3xx responses plus socket errors

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
    )


def wrk_path() -> str:
    """Where wrk is; RuntimeError says how to get it (``scripts/bench`` installs it)."""
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk (scripts/bench does this)")
    return path


def run_wrk(
    url: str, *, seconds: int, connections: int, threads: int, script: Path | None = None
) -> WrkReport:
    """One closed-loop run of ``seconds`` against ``url``; ``script`` sets method and body."""
    argv = [wrk_path(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        argv += ["-s", str(script)]
    done = subprocess.run(
        [*argv, url], capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_report(done.stdout)
