"""Whole decisions of the limiter cores, not just allow/deny: the rate-limit headers.

Mutation testing (scripts/mutate) found the allow/deny tables blind to the numbers every
answer carries: ``RateLimit-Limit``/``-Remaining``/``-Reset`` and ``Retry-After`` come from
these fields. Each case here is worked out by hand from the algorithm's rule (the
comments show the arithmetic), with times and rates that are exact in binary floating
point, so whole ``Decision`` values compare equal. Steps run at t=10 as well as t=0, so a
formula that adds ``now`` where it should subtract it cannot hide behind zero.
"""

from __future__ import annotations

from typing import Any

import pytest

from edge.pipeline.limiter_core import (
    Decision,
    LimitSpec,
    Windows,
    leaky_bucket,
    sliding_log,
    sliding_window,
    token_bucket,
)


def decisions(step: Any, spec: LimitSpec, calls: list[tuple[float, int]]) -> list[Decision]:
    state = None
    out = []
    for now, cost in calls:
        state, decision = step(state, now, spec, cost)
        out.append(decision)
    return out


# -- token bucket: 2 tokens per second, 2 at most ----------------------------------------


def test_token_bucket_decisions() -> None:
    spec = LimitSpec("token_bucket", limit=2, period=1.0)
    assert decisions(token_bucket, spec, [(10, 1), (10, 2), (10.25, 1)]) == [
        Decision(True, 2, 1, 0.5),  # 1 token left; 1 missing token takes 0.5 s
        Decision(False, 2, 1, 0.5, retry_after=0.5),  # 2 asked, 1 there: (2 - 1) / 2
        Decision(True, 2, 0, 0.75),  # 1 + 0.25 s * 2 = 1.5, minus 1: 0.5 left
    ]


# -- sliding window (counter approximation): 4 per 4 s -----------------------------------

WINDOW = LimitSpec("sliding_window", limit=4, period=4.0)


def test_sliding_window_allowed() -> None:
    state, decision = sliding_window(None, 1.0, WINDOW)
    assert state == Windows(0.0, 1, 0)
    assert decision == Decision(True, 4, 3, 3.0)  # reset: the window ends in 3 s


def test_sliding_window_waits_for_the_previous_window_to_decay() -> None:
    # at 4.5 the previous window's 4 weigh 4 * (1 - 0.5/4) = 3.5: one more makes 4.5 > 4;
    # at 5.0 they weigh 3, and 3 + 1 fits: 0.5 s to wait
    state, decision = sliding_window(Windows(0.0, 4, 0), 4.5, WINDOW)
    assert state == Windows(4.0, 0, 4)
    assert decision == Decision(False, 4, 0, 3.5, retry_after=0.5)


def test_sliding_window_full_current_window_waits_into_the_next() -> None:
    # 4 in this window already: nothing fits before it ends at 4 (3 s away); from then on
    # those 4 decay, and 4 * (1 - e/4) + 1 <= 4 once e >= 1: 3 + 1 = 4 s
    state, decision = sliding_window(Windows(0.0, 4, 0), 1.0, WINDOW)
    assert state == Windows(0.0, 4, 0)
    assert decision == Decision(False, 4, 0, 3.0, retry_after=4.0)


def test_sliding_window_full_current_window_with_a_previous_one() -> None:
    # current 4, previous 2 (weighing 1.5 at 5.0): the current window's 4 must decay
    # first, exactly as above; the previous one is gone by then
    state, decision = sliding_window(Windows(4.0, 4, 2), 5.0, WINDOW)
    assert state == Windows(4.0, 4, 2)
    assert decision == Decision(False, 4, 0, 3.0, retry_after=4.0)


def test_sliding_window_cost_above_the_limit_waits_a_window() -> None:
    # 5 can never fit under 4; the answer is the end of this window, never a crash
    state, decision = sliding_window(None, 1.0, WINDOW, 5)
    assert state == Windows(0.0, 0, 0)
    assert decision == Decision(False, 4, 4, 3.0, retry_after=3.0)


# -- sliding log: 2 per 4 s --------------------------------------------------------------


def test_sliding_log_decisions() -> None:
    spec = LimitSpec("sliding_log", limit=2, period=4.0)
    assert decisions(sliding_log, spec, [(11, 1), (12, 1), (13, 1), (13, 3)]) == [
        Decision(True, 2, 1, 4.0),  # reset: the oldest entry (11) leaves at 15
        Decision(True, 2, 0, 3.0),
        Decision(False, 2, 0, 2.0, retry_after=2.0),  # one must go: 11 leaves at 15
        Decision(False, 2, 0, 2.0, retry_after=4.0),  # 3 never fit under 2: a period
    ]


def test_sliding_log_with_nothing_logged() -> None:
    spec = LimitSpec("sliding_log", limit=2, period=4.0)
    log, decision = sliding_log(None, 10.0, spec, 3)
    assert log == ()
    assert decision == Decision(False, 2, 2, 0.0, retry_after=4.0)


# -- leaky bucket (GCRA): 2 per second (one per 0.5 s), a burst of 2 ---------------------


@pytest.mark.parametrize("start", [0.0, 10.0])
def test_leaky_bucket_reject_mode_decisions(start: float) -> None:
    spec = LimitSpec("leaky_bucket", limit=2, period=1.0)  # tolerance: 2 * 0.5 = 1 s
    calls = [(start, 1), (start, 1), (start, 1), (start + 0.75, 1)]
    assert decisions(leaky_bucket, spec, calls) == [
        Decision(True, 2, 1, 0.5),  # TAT start+0.5: room for one more in the burst
        Decision(True, 2, 0, 1.0),  # TAT start+1: the burst is used up
        Decision(False, 2, 0, 1.0, retry_after=0.5),  # would need TAT start+1.5
        Decision(True, 2, 0, 0.75),  # 0.75 s on, TAT start+1.5 is within 1 s
    ]


def test_leaky_bucket_reject_mode_a_heavy_request() -> None:
    spec = LimitSpec("leaky_bucket", limit=2, period=1.0)
    # one request, then one costing 2 (1 s of the meter): refused, but a light one fits
    assert decisions(leaky_bucket, spec, [(10, 1), (10, 2)]) == [
        Decision(True, 2, 1, 0.5),
        Decision(False, 2, 1, 0.5, retry_after=0.5),
    ]


def test_leaky_bucket_queue_mode_decisions() -> None:
    spec = LimitSpec("leaky_bucket", limit=2, period=1.0, mode="queue", max_delay=1.0)
    assert decisions(leaky_bucket, spec, [(10, 1)] * 4) == [
        Decision(True, 2, 1, 0.5, delay=0.0),
        Decision(True, 2, 0, 1.0, delay=0.5),  # held 0.5 s
        Decision(True, 2, 0, 1.5, delay=1.0),  # held max_delay, the most allowed
        Decision(False, 2, 0, 1.5, retry_after=0.5),  # would wait 1.5 s: 0.5 too long
    ]
