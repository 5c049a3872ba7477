"""The bounded in-memory limiter store (no network): key count and byte budget."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.pipeline.limiter_core import (
    LimitSpec,
    leaky_bucket,
    sliding_log,
    sliding_window,
    token_bucket,
)
from edge.pipeline.limiter_store import (
    ENTRY_BYTES,
    LOG_TIMESTAMP_BYTES,
    MemoryLimiterStore,
    entry_bytes,
)

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


# -- the byte budget --------------------------------------------------------------------

SPECS = {
    "token_bucket": LimitSpec("token_bucket", limit=5, period=1.0),
    "sliding_window": LimitSpec("sliding_window", limit=5, period=1.0),
    "sliding_log": LimitSpec("sliding_log", limit=50, period=10.0),
    "leaky_bucket": LimitSpec("leaky_bucket", limit=5, period=1.0),
}


def accounted(store: MemoryLimiterStore) -> int:
    """What the store's entries cost by ``entry_bytes``, summed from scratch."""
    return sum(entry_bytes(spec, key, state) for key, (state, _, spec) in store._states.items())


def test_a_flood_of_long_keys_stays_within_the_byte_budget() -> None:
    budget = 256 * 1024
    store = MemoryLimiterStore(max_keys=10**9, max_bytes=budget)
    per_entry = 4096 + ENTRY_BYTES["token_bucket"]
    for index in range(5000):
        store.decide_now(SPEC, f"{index:08d}".ljust(4096, "k"), index * 1e-6)
        assert store.bytes <= budget
    assert len(store) == budget // per_entry  # the key bound (10**9) never bound
    assert store.bytes == len(store) * per_entry == accounted(store)
    assert store.evicted == 5000 - len(store)


def test_the_least_recently_used_key_goes_first() -> None:
    per_entry = 8 + ENTRY_BYTES["token_bucket"]
    store = MemoryLimiterStore(max_bytes=3 * per_entry)
    for key in ("a-------", "b-------", "c-------"):
        store.decide_now(SPEC, key, 0.0)
    store.decide_now(SPEC, "a-------", 0.0)  # a is used again: b is now the oldest
    store.decide_now(SPEC, "d-------", 0.0)
    assert list(store._states) == ["c-------", "a-------", "d-------"]
    assert store.bytes == 3 * per_entry


def test_a_sliding_log_is_charged_per_timestamp() -> None:
    spec = LimitSpec("sliding_log", limit=1000, period=60.0)
    store = MemoryLimiterStore()
    for index in range(500):
        store.decide_now(spec, "user", index * 0.01)
    assert store.bytes == 4 + ENTRY_BYTES["sliding_log"] + 500 * LOG_TIMESTAMP_BYTES
    assert store.bytes == accounted(store)
    # a budget below one entry: the newest entry is kept, so the limit still holds
    small = MemoryLimiterStore(max_bytes=1000)
    for index in range(1001):
        decision = small.decide_now(spec, "user", index * 0.01)
    assert len(small) == 1 and not decision.allowed


def test_expired_entries_give_their_bytes_back() -> None:
    store = MemoryLimiterStore()
    for index in range(3):
        store.decide_now(SPEC, f"k{index}", 0.0)
    store.decide_now(SPEC, "late", 100.0)  # long past every ttl: the front is dropped
    assert len(store) == 1
    assert store.bytes == 4 + ENTRY_BYTES["token_bucket"] == accounted(store)


@settings(max_examples=50, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(sorted(SPECS)),
            st.integers(0, 12),  # which key
            st.integers(1, 200),  # its length
            st.floats(0.0, 3.0),  # time passing before the step
            st.integers(1, 3),  # cost
        ),
        max_size=120,
    ),
    budget=st.integers(1, 8000),
    max_keys=st.integers(1, 10),
)
def test_the_byte_count_is_exact_and_bounded(
    steps: list[tuple[str, int, int, float, int]], budget: int, max_keys: int
) -> None:
    """Whatever the mix of algorithms, keys and times: ``bytes`` is the sum over entries,
    and over the budget only when the newest entry alone is."""
    store = MemoryLimiterStore(max_keys=max_keys, max_bytes=budget)
    now = 0.0
    for algorithm, which, length, wait, cost in steps:
        now += wait
        # a key belongs to one limit, as the key prefix makes it in the gateway
        key = f"{algorithm}:{which}".ljust(length, "x")
        store.decide_now(SPECS[algorithm], key, now, cost)
        assert store.bytes == accounted(store)
        assert len(store) <= max_keys
        assert store.bytes <= budget or len(store) == 1


STEPS = {
    "token_bucket": token_bucket,
    "sliding_window": sliding_window,
    "sliding_log": sliding_log,
    "leaky_bucket": leaky_bucket,
}


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(sorted(SPECS)),
            st.integers(0, 3),  # which key
            st.booleans(),  # the limit rebuilt (an equal spec, another object: a reload)
            st.sampled_from([0.0, 0.0, 0.001, 0.3, 1.0, 5.0, 25.0]),  # time passing
            st.integers(1, 3),  # cost
        ),
        max_size=80,
    )
)
def test_every_decision_is_the_cores_on_the_state_kept(
    steps: list[tuple[str, int, bool, float, int]],
) -> None:
    """Whichever way the store decides (a key seen lately under the same limit, or one
    new, expired, rebuilt or logged), its decision is the core's step on the state a
    plain model keeps: the last state, unless it expired or was another algorithm's."""
    store = MemoryLimiterStore()  # bounds far away: nothing is evicted
    model: dict[str, tuple[Any, float, str]] = {}  # key -> state, expiry, algorithm
    now = 0.0
    for algorithm, which, rebuilt, wait, cost in steps:
        now += wait
        spec = SPECS[algorithm]
        if rebuilt:
            spec = LimitSpec(spec.algorithm, spec.limit, spec.period)
        key = f"k{which}"  # shared across algorithms: a limit rebuilt as another kind
        kept = model.get(key)
        state = None
        if kept is not None and kept[1] > now and kept[2] == algorithm:
            state = kept[0]
        new_state, expected = STEPS[algorithm](state, now, spec, cost)
        model[key] = (new_state, now + spec.ttl, algorithm)
        assert store.decide_now(spec, key, now, cost) == expected
        assert store.bytes == accounted(store)


@pytest.mark.parametrize("algorithm", sorted(SPECS))
def test_a_key_in_steady_use_keeps_its_state_past_its_first_expiry(algorithm: str) -> None:
    """Each decision moves the key's expiry on: a client asking every 0.1 s for longer
    than the ttl is decided on its whole history, never on a fresh state."""
    spec = SPECS[algorithm]
    store = MemoryLimiterStore()
    state = None
    for step in range(int(spec.ttl * 10) + 30):
        now = step * 0.1
        state, expected = STEPS[algorithm](state, now, spec, 1)
        assert store.decide_now(spec, "steady", now) == expected, now


@pytest.mark.parametrize("algorithm", sorted(SPECS))
def test_the_accounting_matches_what_tracemalloc_measures(algorithm: str) -> None:
    """The fixed overheads in ENTRY_BYTES, measured again: a store at its byte budget
    under a flood (the worst case: every entry stepped at its own time) holds about what
    it accounts for. Fails when a Python's objects grew past the constants."""
    spec = SPECS[algorithm]
    budget = 2 * 1024 * 1024
    store = MemoryLimiterStore(max_keys=10**9, max_bytes=budget)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        ratios = []
        for index in range(30_000):
            store.decide_now(spec, f"p0.0|client-{index}", 1000.0 + index * 1e-6)
            if index > 15_000 and index % 1000 == 0:
                ratios.append((tracemalloc.get_traced_memory()[0] - base) / store.bytes)
    finally:
        tracemalloc.stop()
    assert store.evicted > 0
    assert 0.7 < min(ratios) and max(ratios) < 1.05, ratios


def test_a_limit_rebuilt_with_another_algorithm_starts_its_key_afresh() -> None:
    """A reload (a sidecar) may rebuild a limit under the same key prefix with another
    algorithm: the old state means nothing to it (a token bucket's state handed to the
    leaky bucket raised TypeError), and the entry is charged as the new kind."""
    store = MemoryLimiterStore()
    for _ in range(2):
        store.decide_now(SPEC, "p0.0|alice", 0.0)
    leaky = LimitSpec("leaky_bucket", limit=2, period=1.0)
    assert store.decide_now(leaky, "p0.0|alice", 0.0).remaining == 1  # a full allowance
    assert store.bytes == accounted(store) == len("p0.0|alice") + ENTRY_BYTES["leaky_bucket"]
    rebuilt = LimitSpec("leaky_bucket", limit=2, period=1.0)  # equal, but another object
    assert store.decide_now(rebuilt, "p0.0|alice", 0.0).remaining == 0  # the state is kept
    assert store.bytes == accounted(store)
