"""``metrics.counting``: a counter child's increment without prometheus-client's checks,
held to ``Counter.inc`` in both of the library's value stores (one process, and the
shared files of multiprocess mode, which ``edge serve --workers N`` uses)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, values
from prometheus_client.multiprocess import MultiProcessCollector

from edge.observability.metrics import counting


def test_it_counts_what_inc_counts_in_one_process() -> None:
    registry = CollectorRegistry()
    counter = Counter("edge_test_decisions", "test", ["result"], registry=registry)
    child = counter.labels("allowed")
    count = counting(child)
    for _ in range(3):
        count()
    child.inc()
    assert registry.get_sample_value("edge_test_decisions_total", {"result": "allowed"}) == 4
    assert registry.get_sample_value("edge_test_decisions_total", {"result": "refused"}) is None


def test_it_counts_in_the_shared_files_of_multiprocess_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    counter = Counter("edge_test_shared", "test", ["result"], registry=None)
    child = counter.labels("allowed")
    count = counting(child)
    for _ in range(5):
        count()
    child.inc()
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    assert registry.get_sample_value("edge_test_shared_total", {"result": "allowed"}) == 6


def test_a_counter_without_a_value_store_gets_its_own_inc() -> None:
    class Plain:
        def __init__(self) -> None:
            self.count = 0

        def inc(self) -> None:
            self.count += 1

    plain = Plain()
    counting(plain)()
    assert plain.count == 1
