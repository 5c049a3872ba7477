"""Keeping the garbage collector's full collections off the request path.

A worker holds about 90,000 objects that live as long as its config does: descriptor
pools, message classes, compiled routes and JSON printers, the pipeline. CPython scans
its oldest generation whole whenever enough objects have survived into it, and under
load enough do (the objects of the requests in flight at each young collection): at
2,500 transcoded POSTs a second a worker ran a full collection every 5-10 s, and each one
paused the event loop for 45 ms on an idle machine and 75-260 ms on a busy one, with every
request in flight waiting behind it. That pause was the whole of the gateway's
maximum latency (``benchmarks/README.md``, "Tail latency").

``gc.freeze()`` moves every object alive into a permanent generation that collections
skip, so a full collection scans only what was made since: 1.4 ms instead of 45. Objects
in it are still freed by reference counting; only reference *cycles* among them wait for
the next ``settle()``, which unfreezes, collects everything and freezes again. That
happens once the gateway has started, when a reload swaps in a new generation, and when
the replaced one is released (its channels, message classes and pools become garbage
then, and some of them are cycles). Each settle is one full collection on the event loop:
tens of milliseconds, at start-up and at each reload, instead of at random under load.

Only ``edge serve`` turns this on (``enable``): a test process running many gateways
in one interpreter must keep collecting its own cycles, and embedding applications own
their process's collector.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

from edge.observability import metrics

log = logging.getLogger(__name__)

_enabled = False
_started_at = 0.0
_pauses: dict[int, Any] = {}  # the histogram's child per generation, found once
# Pauses measured but not yet in the histogram, as (generation, seconds): see
# ``_time_collection`` for why the callback only notes them. Bounded: a loop too busy to
# flush them loses the newest figures, never memory.
_pending: list[tuple[int, float]] = []
PENDING_KEPT = 10_000
FLUSH_SECONDS = 1.0


def enable() -> None:
    """Freeze after start-up and each reload, and time every collection into the metrics."""
    global _enabled
    if _enabled:
        return
    _enabled = True
    _pauses.update({g: metrics.GC_PAUSE_SECONDS.labels(str(g)) for g in range(3)})
    gc.callbacks.append(_time_collection)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # no loop here: pauses reach the histogram at each settle
    loop.call_later(FLUSH_SECONDS, _flush_every, loop)


def _flush_every(loop: asyncio.AbstractEventLoop) -> None:
    flush()
    loop.call_later(FLUSH_SECONDS, _flush_every, loop)


def flush() -> None:
    """Put the pauses noted since the last flush into the histogram (on the event loop)."""
    count = len(_pending)
    batch = _pending[:count]
    del _pending[:count]  # a collection during this flush appends after them: kept
    for generation, seconds in batch:
        _pauses[generation].observe(seconds)


def enabled() -> bool:
    return _enabled


def settle(reason: str) -> None:
    """Collect everything, then freeze what is left (no-op unless ``enable`` was called).

    Called where the long-lived heap has just changed, so the objects frozen are the ones
    that will stay: after start-up, after a reload's swap, after a generation's release.
    """
    if not _enabled:
        return
    flush()
    began = time.perf_counter()
    gc.unfreeze()
    collected = gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    metrics.GC_FROZEN_OBJECTS.set(frozen)
    log.info(
        "heap settled (%s): %d objects frozen, %d collected, in %.1f ms",
        reason,
        frozen,
        collected,
        (time.perf_counter() - began) * 1e3,
    )


def _time_collection(phase: str, info: dict[str, Any]) -> None:
    """gc's callback: the pause of each collection, by generation, noted for ``flush``.

    Never into the histogram from here. A collection runs wherever an allocation happens
    to trigger it, and that can be inside prometheus_client while it holds its lock: with
    several workers (multiprocess metrics) one lock guards every value, and making a
    labelled child allocates under it. Observing there waited on that lock for ever: a
    worker deadlocked on its first requests and never accepted again (seen in
    ``benchmarks/scaling.py``'s bursts, three runs in ten).
    """
    global _started_at
    if phase == "start":
        _started_at = time.perf_counter()
    elif len(_pending) < PENDING_KEPT:
        _pending.append((info["generation"], time.perf_counter() - _started_at))
