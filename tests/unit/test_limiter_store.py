"""The bounded in-memory limiter store (no network)."""

from __future__ import annotations

from edge.pipeline.limiter_core import LimitSpec
from edge.pipeline.limiter_store import MemoryLimiterStore

SPEC = LimitSpec("token_bucket", limit=2, period=1.0)


def test_keys_are_independent_and_refill() -> None:
    store = MemoryLimiterStore()
    assert [store.decide_now(SPEC, "a", 0.0).allowed for _ in range(3)] == [True, True, False]
    assert store.decide_now(SPEC, "b", 0.0).allowed
    assert store.decide_now(SPEC, "a", 0.5).allowed


def test_a_flood_of_distinct_keys_stays_bounded() -> None:
    store = MemoryLimiterStore(max_keys=1000)
    for index in range(50_000):
        store.decide_now(SPEC, f"client-{index}", index * 1e-6)
    assert len(store) == 1000
    assert store.evicted == 49_000


def test_expired_state_is_dropped_and_starts_fresh() -> None:
    store = MemoryLimiterStore()
    for _ in range(2):
        store.decide_now(SPEC, "a", 0.0)
    assert not store.decide_now(SPEC, "a", 0.0).allowed
    # long after the state's ttl, old keys at the front are dropped as new ones arrive
    store.decide_now(SPEC, "b", 100.0)
    assert len(store) == 1
    assert store.decide_now(SPEC, "a", 100.0).remaining == 1
