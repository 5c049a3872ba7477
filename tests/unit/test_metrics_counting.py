"""``metrics.counting``: a counter child's increment without prometheus-client's checks,
held to ``Counter.inc`` in both of the library's value stores (one process, and the
shared files of multiprocess mode, which ``edge serve --workers N`` uses)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, values
from prometheus_client.multiprocess import MultiProcessCollector

from edge.observability.metrics import counting


def count_then_inc(counter: Counter, times: int) -> None:
    """``times`` counts through ``counting``, then one through the library's own ``inc``."""
    child = counter.labels("allowed")
    count = counting(child)
    for _ in range(times):
        count()
    child.inc()


def test_it_counts_what_inc_counts_in_one_process() -> None:
    registry = CollectorRegistry()
    count_then_inc(Counter("edge_test_decisions", "test", ["result"], registry=registry), 3)
    assert registry.get_sample_value("edge_test_decisions_total", {"result": "allowed"}) == 4
    assert registry.get_sample_value("edge_test_decisions_total", {"result": "refused"}) is None


def test_it_counts_in_the_shared_files_of_multiprocess_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    count_then_inc(Counter("edge_test_shared", "test", ["result"], registry=None), 5)
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
