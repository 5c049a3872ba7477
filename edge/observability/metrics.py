"""Prometheus metrics, correct across Hypercorn workers.

With several workers each process counts on its own; prometheus-client's multiprocess
mode (``PROMETHEUS_MULTIPROC_DIR``, which ``edge serve --workers N`` sets up) writes the
counts to shared files that ``/metrics`` sums, so a scrape reports the instance's totals
whichever worker answers it. Label values are bounded: routes are route *names* (gRPC
methods, proxy prefixes, or ``unmatched``), never raw paths.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

try:  # the library's one-process value class, for ``counting``; without it, its own inc
    from prometheus_client.values import MutexValue as _MutexValue

    _LOCKED_FLOAT: type | None = _MutexValue
except ImportError:  # pragma: no cover - a prometheus-client that moved it
    _LOCKED_FLOAT = None

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter("edge_requests", "Requests answered", ["route", "method", "status", "protocol"])
REQUEST_SECONDS = Histogram(
    "edge_request_duration_seconds",
    "Time to answer a request",
    ["route", "protocol"],
    buckets=_BUCKETS,
)
IN_FLIGHT = Gauge(
    "edge_in_flight_requests", "Requests being answered", ["protocol"], multiprocess_mode="livesum"
)
UPSTREAM_CALLS = Counter("edge_upstream_calls", "Upstream calls by result", ["upstream", "code"])
UPSTREAM_SECONDS = Histogram(
    "edge_upstream_duration_seconds", "Upstream call time", ["upstream"], buckets=_BUCKETS
)
STREAMS = Gauge(
    "edge_streams_in_flight", "Streaming calls open", ["upstream"], multiprocess_mode="livesum"
)
WEBSOCKETS = Gauge(
    "edge_websocket_connections", "Open gRPC-over-WebSocket sockets", multiprocess_mode="livesum"
)
LIMITER_DECISIONS = Counter("edge_ratelimit_decisions", "Rate limit decisions", ["result"])
LIMITER_ERRORS = Counter("edge_ratelimit_backend_errors", "Rate limit store failures")
BREAKER_STATE = Gauge(
    "edge_breaker_state",
    "Breaker state: 0 closed, 1 half-open, 2 open",
    ["name"],
    multiprocess_mode="max",
)
BREAKER_TRANSITIONS = Counter("edge_breaker_transitions", "Breaker state changes", ["name", "to"])
RELOADS = Counter(
    "edge_config_reload", "Reloads of the config and descriptors, by result", ["result"]
)
# edge serve only (edge.heap): what the garbage collector costs the event loop
GC_PAUSE_SECONDS = Histogram(
    "edge_gc_pause_seconds",
    "Event-loop pauses for garbage collection, by generation (2 is a full collection)",
    ["generation"],
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
GC_FROZEN_OBJECTS = Gauge(
    "edge_gc_frozen_objects",
    "Objects the collector skips (frozen after start-up and each reload)",
    multiprocess_mode="max",
)


_CHILDREN: dict[tuple[object, tuple[str, ...]], Any] = {}


def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: ``labels()`` validates and locks on every
    call (~10 us each, several per request); the labelled child is the same object every
    time, so the hot path looks it up in a dict instead."""
    key = (metric, labels)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*labels)
    return found


def counting(counter: Any) -> Callable[[], None]:
    """A labelled counter child's increment by one, without prometheus-client's checks.

    ``Counter.inc`` checks on every call that the counter is a labelled child and that the
    amount is not negative, then increments its value object (a locked float, or the
    worker's shared file in multiprocess mode): three Python calls before the one that
    counts. For a child made once and an amount of one, both checks hold by construction,
    so this goes to the value object's own ``inc``; a prometheus-client without one gets
    ``Counter.inc``. In one process the value is a float behind a lock (``MutexValue``),
    and the lock guards against other threads counting at the same moment: edge counts
    only on its event loop's thread, so the float is added to directly, one Python call
    in all (the lock's enter and exit cost twice the addition). The scrape reads it under
    the lock, and a float is read whole. ``tests/unit/test_metrics_counting.py`` holds
    all three forms to ``Counter.inc``.
    """
    value = getattr(counter, "_value", None)
    if (
        _LOCKED_FLOAT is not None
        and type(value) is _LOCKED_FLOAT
        and type(getattr(value, "_value", None)) is float
    ):
        return partial(_add_one, value)
    inc = getattr(value, "inc", None)
    if inc is None or not callable(inc):
        return counter.inc  # type: ignore[no-any-return]
    return partial(inc, 1)


def _add_one(value: Any) -> None:
    value._value += 1.0


def render() -> tuple[bytes, str]:
    """The exposition for ``/metrics``: this process's, or every worker's when shared."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Drop a finished worker's live gauges (multiprocess mode)."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        _multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
