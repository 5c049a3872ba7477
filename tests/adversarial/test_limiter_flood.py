"""A flood of distinct, huge rate-limit keys against the in-memory limiter (no network).

A limit keyed on a header puts the client's header value into the key. Before key parts
were bounded, 20,000 requests with distinct 60 KB ``X-Tenant`` values kept ~1.2 GB of keys
in a store that ``max_keys: 100000`` allowed to keep five times as many. These tests send
that flood through the real key builder (``limit_key``) into the store the gateway builds
by default, and measure with tracemalloc what it keeps.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator

import pytest

from edge.call import Call
from edge.pipeline.limit_keys import limit_key
from edge.pipeline.limiter_core import LimitSpec
from edge.pipeline.limiter_store import MemoryLimiterStore
from edge.pipeline.policy import Limit

MiB = 1024 * 1024
HEADER_BYTES = 60 * 1024
FLOOD = 20_000
SAMPLE_EVERY = 250  # how often the flood looks at traced memory (and stops when over)

LIMIT = Limit(
    LimitSpec("token_bucket", limit=10, period=1.0),
    ("ip", "header:x-tenant"),
    "p0.0",
    "10;w=1",
)
FILLER = b"t" * HEADER_BYTES


def hostile_calls() -> Iterator[Call]:
    """Calls from one address, each with its own 60 KB tenant header (made one at a time)."""
    for index in range(FLOOD):
        value = b"%08d" % index + FILLER[8:]
        yield Call(
            upstream="u",
            route="r",
            metadata=[],
            timeout=None,
            client="203.0.113.7",
            headers=[(b"x-tenant", value)],
        )


def flood(store: MemoryLimiterStore, bound: int) -> tuple[int, int]:
    """Send the flood; returns (largest traced bytes seen, longest key). Fails once over."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        largest, longest = 0, 0
        for index, call in enumerate(hostile_calls()):
            key = limit_key(LIMIT, call, ())
            longest = max(longest, len(key))
            store.decide_now(LIMIT.spec, key, 1000.0 + index * 1e-6)
            if index % SAMPLE_EVERY == 0 or index == FLOOD - 1:
                largest = max(largest, tracemalloc.get_traced_memory()[0] - base)
                assert largest <= bound, (
                    f"{largest / MiB:.1f} MiB kept after {index + 1} hostile keys "
                    f"(bound {bound / MiB:.1f} MiB)"
                )
        return largest, longest
    finally:
        tracemalloc.stop()


def test_huge_header_values_cost_the_default_store_a_bounded_key_each() -> None:
    """20k distinct 60 KB values: under 512 bytes an entry, where each was 60 KB before."""
    store = MemoryLimiterStore()  # as the gateway builds it: max_keys 100000, 64 MiB
    largest, longest = flood(store, bound=FLOOD * 512)  # ~9.8 MiB; was ~1.2 GB
    assert len(store) == FLOOD  # every key kept (nothing evicted): the keys are just small
    assert longest <= 200  # prefix, address, and a digest for the header (was 60 KB)
    assert largest < 10 * MiB


@pytest.mark.parametrize("budget", [1 * MiB, 4 * MiB])
def test_the_byte_budget_bounds_what_a_flood_keeps(budget: int) -> None:
    """With ``max_bytes`` lower than the flood needs, it binds, and memory follows it."""
    store = MemoryLimiterStore(max_bytes=budget)
    flood(store, bound=budget + budget // 4)  # a resizing dict may briefly hold more
    assert store.bytes <= budget
    assert store.evicted == FLOOD - len(store) > 0
