"""The collector's pause histogram is fed from the event loop, never from gc's callback.

A collection runs wherever an allocation triggers it, including inside prometheus_client
while it holds its lock; with multiprocess metrics (several workers) one lock guards every
value, and a callback observing there waited on it for ever: a worker deadlocked on its
first requests and never accepted again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge import heap

REPO = Path(__file__).resolve().parents[2]


class Recorder:
    def __init__(self) -> None:
        self.seen: list[float] = []

    def observe(self, seconds: float) -> None:
        self.seen.append(seconds)


def test_the_callback_only_notes_the_pause_and_flush_records_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorders = {generation: Recorder() for generation in range(3)}
    monkeypatch.setattr(heap, "_pauses", recorders)
    monkeypatch.setattr(heap, "_pending", [])
    heap._time_collection("start", {"generation": 1})
    heap._time_collection("stop", {"generation": 1})
    assert recorders[1].seen == []  # nothing observed inside the collection
    heap.flush()
    assert len(recorders[1].seen) == 1 and recorders[1].seen[0] >= 0
    heap.flush()
    assert len(recorders[1].seen) == 1  # flushed once


def test_what_waits_for_a_flush_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_pending", [])
    for _ in range(heap.PENDING_KEPT + 10):
        heap._time_collection("start", {"generation": 0})
        heap._time_collection("stop", {"generation": 0})
    assert len(heap._pending) == heap.PENDING_KEPT


_COLLECT_UNDER_THE_LOCK = """
import gc
from edge import heap
from edge.observability import metrics
heap.enable()  # no loop here: the callback notes, settle would flush
gc.set_threshold(1, 1, 1)  # a collection at almost every allocation
for index in range(300):  # each new child allocates under prometheus_client's one lock
    metrics.child(metrics.REQUESTS, f"route{index}", "GET", "200", "http").inc()
print("done", len(heap._pending) > 0)
"""


def test_collections_inside_prometheus_lock_do_not_deadlock(tmp_path: Path) -> None:
    env: dict[str, Any] = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", _COLLECT_UNDER_THE_LOCK],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["done", "True"]
