"""The Redis Lua scripts against the sans-IO cores they mirror, step for step, in a real Redis.

Each example is one limit and a sequence of (seconds passing, cost) steps. The steps go to
the algorithm's pure step in ``limiter_core`` (its state carried from step to step) and,
through ``RedisLimiterStore``, to the algorithm's script in a redis-server; the store is
given the test's clock, which the scripts then use instead of Redis ``TIME``, so hours can
pass without sleeping. Every decision must be the same, field for field and bit for bit.
Times start near today's Unix time, where a number printed with Lua's 14 digits is no
longer the number.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.pipeline.limiter_core import (
    Decision,
    LimitSpec,
    leaky_bucket,
    sliding_log,
    sliding_window,
    token_bucket,
)
from edge.pipeline.limiter_store import RedisLimiterStore

pytestmark = pytest.mark.e2e

CORES: dict[str, Any] = {
    "token_bucket": token_bucket,
    "sliding_window": sliding_window,
    "sliding_log": sliding_log,
    "leaky_bucket": leaky_bucket,
}
PERIODS = [0.1, 0.25, 0.3, 1.0, 1.5, 7.0, 60.0]  # 100ms, 300ms: not exact in binary
NOW = 1_750_000_000.123456  # near today's Unix time, with microseconds


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@st.composite
def specs(draw: st.DrawFn, algorithm: str) -> LimitSpec:
    limit = draw(st.integers(1, 12))
    period = draw(st.sampled_from(PERIODS))
    burst = None
    mode = "reject"
    max_delay = 0.0
    if algorithm in ("token_bucket", "leaky_bucket"):
        burst = draw(st.none() | st.integers(1, 12))
    if algorithm == "leaky_bucket" and draw(st.booleans()):
        mode = "queue"
        max_delay = draw(st.sampled_from([0.0, 0.05, 0.5, 2.0]))
    return LimitSpec(algorithm, limit, period, burst, mode, max_delay)  # type: ignore[arg-type]


def steps(max_size: int = 30) -> st.SearchStrategy[list[tuple[float, int]]]:
    """(seconds to let pass first, cost): bursts, small gaps, whole periods and long idles."""
    wait = st.one_of(
        st.just(0.0),
        st.floats(0.0, 0.5, allow_nan=False),
        st.sampled_from([0.1, 0.25, 0.3, 1.0, 1.5, 7.0, 60.0, 3600.0]),
        st.floats(0.0, 120.0, allow_nan=False),
    )
    return st.lists(st.tuples(wait, st.integers(1, 3)), min_size=1, max_size=max_size)


def core_decisions(spec: LimitSpec, start: float, plan: list[tuple[float, int]]) -> list[Decision]:
    step = CORES[spec.algorithm]
    state, now, decisions = None, start, []
    for wait, cost in plan:
        now += wait
        state, decision = step(state, now, spec, cost)
        decisions.append(decision)
    return decisions


async def redis_decisions(
    url: str, spec: LimitSpec, start: float, plan: list[tuple[float, int]]
) -> list[Decision]:
    clock = Clock(start)
    # a generous timeout: this compares arithmetic, and a loaded machine's slow connect
    # (the 250 ms default failed a CI run once) is not what it is about
    store = RedisLimiterStore.from_url(
        url, timeout=5.0, prefix=f"edge-test:{uuid.uuid4().hex}:", clock=clock
    )
    name = store.prefix + "k"
    decisions = []
    try:
        for wait, cost in plan:
            clock.now += wait
            decisions.extend(await store.decide([(spec, "k")], cost))
            # the scripts expire keys in real time; a slow moment of this test (not the
            # test's clock) must not end a state the core still carries
            await store.client.persist(name)
            await store.client.persist(name + ":seq")
    finally:
        await store.client.delete(name, name + ":seq")
        await store.close()
    return decisions


def assert_same(url: str, spec: LimitSpec, start: float, plan: list[tuple[float, int]]) -> None:
    expected = core_decisions(spec, start, plan)
    got = asyncio.run(redis_decisions(url, spec, start, plan))
    for index, (core, lua) in enumerate(zip(expected, got, strict=True)):
        assert lua == core, f"step {index} of {plan}: Redis {lua} != core {core}"


@pytest.mark.parametrize("algorithm", sorted(CORES))
def test_every_script_decides_as_its_core(redis_url: str, algorithm: str) -> None:
    @settings(max_examples=50, deadline=None)
    @given(spec=specs(algorithm), start=st.floats(NOW - 1e6, NOW + 1e6), plan=steps())
    def check(spec: LimitSpec, start: float, plan: list[tuple[float, int]]) -> None:
        assert_same(redis_url, spec, start, plan)

    check()


@pytest.mark.parametrize(
    "spec",
    [
        LimitSpec("token_bucket", limit=2, period=1.0),
        LimitSpec("sliding_window", limit=2, period=1.0),
        LimitSpec("sliding_log", limit=2, period=1.0),
        LimitSpec("leaky_bucket", limit=2, period=1.0),
        LimitSpec("leaky_bucket", limit=2, period=1.0, mode="queue", max_delay=0.5),
    ],
    ids=lambda spec: f"{spec.algorithm}-{spec.mode}",
)
def test_time_passing_gives_the_allowance_back(redis_url: str, spec: LimitSpec) -> None:
    """Exhaust the limit, refused; two periods later (the test's clock), allowed again."""
    plan = [(0.0, 1), (0.0, 1), (0.0, 1), (0.0, 1), (2.0, 1), (0.0, 1), (0.5, 1)]
    expected = core_decisions(spec, NOW, plan)
    assert not all(d.allowed for d in expected[:4])  # the quota runs out at first
    assert expected[4].allowed  # and time brings it back
    assert_same(redis_url, spec, NOW, plan)


def test_a_sub_second_window_counts_its_own_requests(redis_url: str) -> None:
    """A 100 ms window at today's Unix time counts the requests made in it.

    The script kept the window's start with ``tostring`` (14 digits); read back, it was
    another number than the start it computed, so every request took the window for a new
    one and the window admitted all ten of ten requests against a limit of three."""
    spec = LimitSpec("sliding_window", limit=3, period=0.1)
    plan = [(0.0, 1)] * 10
    assert [d.allowed for d in core_decisions(spec, NOW, plan)] == [True] * 3 + [False] * 7
    assert_same(redis_url, spec, NOW, plan)
