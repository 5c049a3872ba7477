"""The memory benchmark, small: it starts its stack, holds its connections, and reports.

A smoke test of ``benchmarks/memory.py`` (the figures themselves are the benchmark's to
print): every scenario's connections are really held open by the gateway (the streams
count matches, the worker's tasks grew with the sockets), and the JSON it writes has a row
per scenario.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_memory_benchmark_holds_its_connections_and_reports(tmp_path: Path) -> None:
    output = tmp_path / "memory.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.memory",
            "--idle",
            "40",
            "--streams",
            "30",
            "--output",
            str(output),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "KiB/conn" in done.stdout
    rows = {row["scenario"]: row for row in json.loads(output.read_text())["figures"]}
    assert set(rows) == {"ws-idle", "ws-floor", "ws-stream", "http-stream"}
    assert rows["ws-idle"]["connections"] == 40
    assert rows["ws-idle"]["after"]["streams"] == 0  # waiting for a first frame: no call yet
    # every socket held (less a descriptor or two the warm-up's closing connections and
    # the worker's own housekeeping may give back meanwhile)
    assert rows["ws-idle"]["after"]["fds"] >= rows["ws-idle"]["before"]["fds"] + 38
    assert rows["ws-idle"]["tasks_per_connection"] >= 1
    for kind in ("ws-stream", "http-stream"):
        assert rows[kind]["connections"] == 30
        assert rows[kind]["after"]["streams"] == 30  # each one open upstream, held
