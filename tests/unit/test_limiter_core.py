"""Exact allow/deny sequences for every limiter algorithm against an injected clock."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.pipeline.limiter_core import (
    Bucket,
    Decision,
    LimitSpec,
    leaky_bucket,
    sliding_log,
    sliding_window,
    token_bucket,
)


def run(step: Any, spec: LimitSpec, times: list[float]) -> list[bool]:
    state = None
    out = []
    for now in times:
        state, decision = step(state, now, spec)
        out.append(decision.allowed)
    return out


def test_token_bucket_bursts_then_refills() -> None:
    spec = LimitSpec("token_bucket", limit=2, period=1.0, burst=3)  # 2/s, burst 3
    #            burst of 3 ok, 4th refused; +0.5s = 1 token; +1.0s = 2 tokens
    times = [0, 0, 0, 0, 0.5, 0.5, 1.5, 1.5, 1.5]
    assert run(token_bucket, spec, times) == [
        True,
        True,
        True,
        False,
        True,
        False,
        True,
        True,
        False,
    ]


def test_token_bucket_headers() -> None:
    spec = LimitSpec("token_bucket", limit=10, period=1.0)
    state, first = token_bucket(None, 100.0, spec)
    assert (first.allowed, first.limit, first.remaining) == (True, 10, 9)
    assert first.reset == pytest.approx(0.1)
    for _ in range(9):
        state, _ = token_bucket(state, 100.0, spec)
    state, refused = token_bucket(state, 100.0, spec)
    assert not refused.allowed and refused.remaining == 0
    assert refused.retry_after == pytest.approx(0.1)
    assert refused.reset == pytest.approx(1.0)


def test_sliding_window_counter_weights_the_previous_window() -> None:
    spec = LimitSpec("sliding_window", limit=4, period=10.0)
    state, decisions = None, []
    for now in [0, 1, 2, 3, 4]:  # 4 allowed in window [0, 10), the 5th refused
        state, decision = sliding_window(state, now, spec)
        decisions.append(decision.allowed)
    assert decisions == [True, True, True, True, False]
    # at t=12.5 the previous window (4) weighs 0.75 -> 3; one more fits, not two
    state, decision = sliding_window(state, 12.5, spec)
    assert decision.allowed and decision.remaining == 0
    state, decision = sliding_window(state, 12.5, spec)
    assert not decision.allowed
    # weight 4*(1-e/10) + 1 + 1 <= 4 once e >= 5: retry at t=15
    assert decision.retry_after == pytest.approx(2.5)
    state, decision = sliding_window(state, 15.0, spec)
    assert decision.allowed
    # two windows later everything is forgotten
    state, decision = sliding_window(state, 31.0, spec)
    assert decision.allowed and decision.remaining == 3


def test_sliding_log_is_exact() -> None:
    spec = LimitSpec("sliding_log", limit=3, period=10.0)
    times = [0, 1, 2, 3, 9.9, 10.0, 10.5, 11.0, 11.5]
    # t=10.0: the 0 entry has expired (t > now - period), t=11 frees the 1 entry
    assert run(sliding_log, spec, times) == [
        True,
        True,
        True,
        False,
        False,
        True,
        False,
        True,
        False,
    ]
    state, _ = sliding_log(None, 0.0, spec)
    state, _ = sliding_log(state, 4.0, spec)
    state, _ = sliding_log(state, 5.0, spec)
    state, refused = sliding_log(state, 6.0, spec)
    assert not refused.allowed and refused.retry_after == pytest.approx(4.0)


def test_leaky_bucket_reject_mode() -> None:
    spec = LimitSpec("leaky_bucket", limit=1, period=1.0, burst=2)  # leaks 1/s, holds 2
    times = [0, 0, 0, 1.0, 1.0, 3.0, 3.0, 3.0]
    assert run(leaky_bucket, spec, times) == [True, True, False, True, False, True, True, False]
    state, _ = leaky_bucket(None, 0.0, spec)
    state, _ = leaky_bucket(state, 0.0, spec)
    _, refused = leaky_bucket(state, 0.0, spec)
    assert refused.retry_after == pytest.approx(1.0)


def test_leaky_bucket_queue_mode_delays_instead_of_refusing() -> None:
    spec = LimitSpec("leaky_bucket", limit=2, period=1.0, mode="queue", max_delay=1.0)
    state, delays, allowed = None, [], []
    for now in [0, 0, 0, 0, 0]:
        state, decision = leaky_bucket(state, now, spec)
        allowed.append(decision.allowed)
        delays.append(decision.delay)
    # 2/s: requests leave at 0, 0.5, 1.0; the 4th would wait 1.5s > max_delay
    assert allowed == [True, True, True, False, False]
    assert delays[:3] == pytest.approx([0.0, 0.5, 1.0])


ALGORITHMS = [
    (token_bucket, LimitSpec("token_bucket", limit=5, period=1.0)),
    (sliding_window, LimitSpec("sliding_window", limit=5, period=1.0)),
    (sliding_log, LimitSpec("sliding_log", limit=5, period=1.0)),
    (leaky_bucket, LimitSpec("leaky_bucket", limit=5, period=1.0)),
]


@pytest.mark.parametrize(("step", "spec"), ALGORITHMS)
@given(gaps=st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=60))
def test_no_algorithm_allows_more_than_limit_plus_burst_in_any_period(
    step: Any, spec: LimitSpec, gaps: list[float]
) -> None:
    """Over any one-period span no algorithm lets through more than twice its quota
    (the approximations may admit a burst at a window edge, never more)."""
    now, state, accepted = 1000.0, None, []
    for gap in gaps:
        now += gap
        state, decision = step(state, now, spec)
        assert decision.remaining >= 0 and decision.reset >= 0 and decision.retry_after >= 0
        if decision.allowed:
            accepted.append(now)
        else:
            assert decision.retry_after > 0
    for start in accepted:
        inside = [t for t in accepted if start <= t < start + spec.period]
        assert len(inside) <= 2 * spec.limit


@pytest.mark.parametrize(("step", "spec"), ALGORITHMS)
def test_refused_then_retry_after_is_honoured(step: Any, spec: LimitSpec) -> None:
    state, now = None, 50.0
    decision = None
    for _ in range(20):
        state, decision = step(state, now, spec)
        if not decision.allowed:
            break
    assert decision is not None and not decision.allowed
    state, later = step(state, now + decision.retry_after + 1e-9, spec)
    assert later.allowed


# -- the token bucket as written for speed, against its plain statement -----------------


def plain_token_bucket(
    state: Bucket | None, now: float, spec: LimitSpec, cost: int = 1
) -> tuple[Bucket, Decision]:
    """The token bucket as first written (and as the Redis script still reads): ``min``,
    ``max`` and the named tuples' own constructors."""
    capacity, rate = spec.capacity, spec.rate
    tokens = capacity if state is None else min(capacity, state[0] + (now - state[1]) * rate)
    tokens = max(tokens, 0.0)
    if tokens >= cost:
        tokens -= cost
        allowed, retry_after = True, 0.0
    else:
        allowed, retry_after = False, (cost - tokens) / rate
    reset = (capacity - tokens) / rate
    decision = Decision(allowed, capacity, math.floor(tokens), reset, retry_after)
    return (tokens, now), decision


@settings(max_examples=300)
@given(
    limit=st.integers(1, 1000),
    period=st.sampled_from([0.001, 0.5, 1.0, 3.0, 60.0, 86400.0]),
    burst=st.one_of(st.none(), st.integers(1, 2000)),
    steps=st.lists(
        st.tuples(
            # time may even step back a little (another instance's clock, through Redis)
            st.floats(-0.5, 5.0, allow_nan=False),
            st.integers(1, 5),
        ),
        max_size=40,
    ),
)
def test_the_token_bucket_is_its_plain_statement_step_for_step(
    limit: int, period: float, burst: int | None, steps: list[tuple[float, int]]
) -> None:
    """Same decisions, same state, same types (a full bucket holds ``capacity`` itself,
    an int), whatever the times and costs."""
    spec = LimitSpec("token_bucket", limit=limit, period=period, burst=burst)
    fast: Bucket | None = None
    plain: Bucket | None = None
    now = 1000.0
    for gap, cost in steps:
        now += gap
        fast, fast_decision = token_bucket(fast, now, spec, cost)
        plain, plain_decision = plain_token_bucket(plain, now, spec, cost)
        assert fast_decision == plain_decision and fast == plain
        for mine, theirs in zip((*fast, *fast_decision), (*plain, *plain_decision), strict=True):
            assert type(mine) is type(theirs)
        assert type(fast) is tuple and type(fast_decision) is Decision


@pytest.mark.parametrize(
    ("made", "rate", "capacity", "quota", "ttl"),
    [
        # a bucket's quota is its capacity; a window's is its limit, whatever the burst
        ({"algorithm": "token_bucket", "limit": 10, "period": 5.0, "burst": 20}, 2.0, 20, 20, 11.0),
        ({"algorithm": "sliding_window", "limit": 10, "period": 5.0}, 2.0, 10, 10, 11.0),
        (
            {"algorithm": "sliding_window", "limit": 10, "period": 5.0, "burst": 30},
            2.0,
            30,
            10,
            16.0,
        ),
        ({"algorithm": "sliding_log", "limit": 4, "period": 2.0, "burst": 8}, 2.0, 8, 4, 5.0),
        # queue mode: a state matters while its queue drains, past two periods
        (
            {"algorithm": "leaky_bucket", "limit": 10, "period": 1.0, "burst": 5,
             "mode": "queue", "max_delay": 3.0},
            10.0,
            5,
            5,
            4.5,
        ),
    ],
)  # fmt: skip
def test_a_specs_derived_figures(
    made: dict[str, Any], rate: float, capacity: int, quota: int, ttl: float
) -> None:
    """What every decision reads, worked out once: with periods other than one second,
    so a rate upside down (limit * period) or a TTL off by its margin shows. The spec is
    made in the test, not at collection, so a mutation testing run sees it made."""
    spec = LimitSpec(**made)
    assert (spec.rate, spec.capacity, spec.quota, spec.ttl) == (rate, capacity, quota, ttl)


def test_a_bucket_refilled_exactly_to_the_brim_holds_the_int_capacity() -> None:
    """The case the property test above finds only by luck: the refill lands on the
    capacity exactly, where ``min`` gave back the int it was given."""
    spec = LimitSpec("token_bucket", limit=2, period=1.0)  # 2 tokens a second
    state, _ = token_bucket((1, 0.0), 0.5, spec)  # 1 + 0.5 s * 2 = 2.0, the brim
    plain, _ = plain_token_bucket((1, 0.0), 0.5, spec)
    assert state == plain == (1, 0.5)
    assert type(state[0]) is type(plain[0]) is int
