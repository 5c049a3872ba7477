"""The breaker state machine, driven through every transition with an injected clock."""

from __future__ import annotations

import pytest

from edge.pipeline.breaker_core import TRANSITIONS, Breaker, BreakerSpec, BreakerState

CLOSED, OPEN, HALF = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def test_consecutive_failures_trip_then_cooldown_probe_and_close() -> None:
    breaker = Breaker(BreakerSpec(consecutive_failures=3, cooldown=5.0, probes=2))
    for now in (0.0, 0.1):
        assert breaker.allow(now)
        breaker.record(now, failed=True)
    assert breaker.allow(0.2)
    breaker.record(0.2, failed=False)  # a success resets the run
    for now in (0.3, 0.4, 0.5):
        assert breaker.allow(now)
        breaker.record(now, failed=True)
    assert breaker.state is OPEN
    assert not breaker.allow(1.0)
    assert breaker.retry_after(1.0) == pytest.approx(4.5)
    assert breaker.allow(5.5)  # cooled down: first probe
    assert breaker.state is HALF
    assert breaker.allow(5.5)  # second probe
    assert not breaker.allow(5.5)  # only two at a time
    breaker.record(5.6, failed=False)
    assert breaker.state is HALF
    breaker.record(5.7, failed=False)
    assert breaker.state is CLOSED
    assert [(old, new) for _, old, new in breaker.transitions] == [
        (CLOSED, OPEN),
        (OPEN, HALF),
        (HALF, CLOSED),
    ]


def test_failed_probe_reopens_with_a_fresh_cooldown() -> None:
    breaker = Breaker(BreakerSpec(consecutive_failures=1, cooldown=2.0))
    breaker.allow(0.0)
    breaker.record(0.0, failed=True)
    assert breaker.allow(2.0) and breaker.state is HALF
    breaker.record(2.1, failed=True)
    assert breaker.state is OPEN
    assert not breaker.allow(3.0)
    assert breaker.allow(4.1)


def test_failure_rate_over_the_window_with_a_minimum() -> None:
    spec = BreakerSpec(consecutive_failures=100, failure_rate=0.5, minimum_calls=10, window=10.0)
    breaker = Breaker(spec)
    # 9 calls, 5 failing, interleaved: under the minimum, so no trip
    for index in range(9):
        breaker.allow(float(index) * 0.1)
        breaker.record(index * 0.1, failed=index % 2 == 0)
    assert breaker.state is CLOSED
    breaker.allow(1.0)
    breaker.record(1.0, failed=False)  # 10 calls, 5 failures: 50% -> trip
    assert breaker.state is OPEN


def test_old_failures_leave_the_window() -> None:
    spec = BreakerSpec(consecutive_failures=100, failure_rate=0.5, minimum_calls=7, window=10.0)
    breaker = Breaker(spec)
    for now in (0.0, 0.5, 1.0):
        breaker.record(now, failed=True)
        breaker.record(now, failed=False)
    # 6 calls, 3 failures: one more failure would make 7 calls at 57%...
    breaker.record(21.0, failed=True)
    assert breaker.state is CLOSED  # ...but those six are 20s old, outside the window
    fresh = Breaker(spec)
    for now in (0.0, 0.5, 1.0):
        fresh.record(now, failed=True)
        fresh.record(now, failed=False)
    fresh.record(2.0, failed=True)
    assert fresh.state is OPEN  # the same history inside the window does trip


def test_late_outcomes_while_open_are_ignored_and_release_frees_a_probe() -> None:
    breaker = Breaker(BreakerSpec(consecutive_failures=1, cooldown=1.0, probes=1))
    breaker.record(0.0, failed=True)
    breaker.record(0.1, failed=False)  # a call from before the trip
    assert breaker.state is OPEN
    assert breaker.allow(1.5)
    assert not breaker.allow(1.5)
    breaker.release()  # the probe ended without an outcome (the client went away)
    assert breaker.allow(1.6)


def test_transition_table_is_the_whole_machine() -> None:
    assert set(TRANSITIONS.values()) == {OPEN, HALF, CLOSED}
    assert len(TRANSITIONS) == 4


def test_retry_budget() -> None:
    from edge.pipeline.retry import RetryBudget

    budget = RetryBudget(ratio=0.2, min_per_second=0.0)
    for _ in range(10):
        budget.record_call(100.0)
    assert budget.try_retry(100.0) and budget.try_retry(100.5)  # 20% of 10 calls
    assert not budget.try_retry(100.9)
    assert budget.try_retry(111.0) is False  # the calls left the window too
    floor = RetryBudget(ratio=0.0, min_per_second=0.1)  # one retry per 10 s window
    assert floor.try_retry(5.0) and not floor.try_retry(6.0)


def test_calls_from_before_the_trip_are_not_probes() -> None:
    breaker = Breaker(BreakerSpec(consecutive_failures=1, cooldown=1.0, probes=1))
    slow = breaker.admit(0.0)  # a long call let in while closed
    assert slow == "call"
    assert breaker.admit(0.1) == "call"
    breaker.record(0.2, failed=True, ticket="call")  # trips
    assert breaker.admit(1.5) == "probe"
    breaker.record(1.6, failed=False, ticket=slow)  # the slow call ends: not the probe
    assert breaker.state is HALF
    breaker.record(1.7, failed=False, ticket="probe")
    assert breaker.state is CLOSED
