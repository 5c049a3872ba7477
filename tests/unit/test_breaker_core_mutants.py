"""edge.pipeline.breaker_core, pinned where mutation testing found the tests loose.

The failure-rate rule at its exact threshold, the rolling window's bucket arithmetic, what
closing resets, the probe accounting with several probes in flight, the transition log's
times and length, and ``retry_after`` outside the open state. Times are multiples of 0.25
so every comparison is exact.
"""

from __future__ import annotations

from edge.pipeline.breaker_core import Breaker, BreakerSpec, BreakerState

CLOSED, OPEN, HALF = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
NEVER_IN_A_ROW = 1000  # consecutive failures that never happen: the rate rule alone


def rate_breaker(minimum_calls: int = 4, window: float = 10.0) -> Breaker:
    return Breaker(
        BreakerSpec(
            consecutive_failures=NEVER_IN_A_ROW,
            failure_rate=0.5,
            minimum_calls=minimum_calls,
            window=window,
            cooldown=5.0,
        )
    )


def feed(breaker: Breaker, now: float, outcomes: str) -> None:
    """Record outcomes at ``now``: F a failure, S a success."""
    for outcome in outcomes:
        ticket = breaker.admit(now)
        breaker.record(now, failed=outcome == "F", ticket=ticket)


def test_the_failure_rate_trips_at_its_threshold_not_below() -> None:
    below = rate_breaker()
    feed(below, 0.0, "SSSF")  # 1 of 4 failed: 25% < 50%
    assert below.state is CLOSED
    at = rate_breaker()
    feed(at, 0.25, "SFSF")  # 2 of 4 failed: 50%
    assert at.state is OPEN
    assert at.transitions == [(0.25, CLOSED, OPEN)]


def test_a_fresh_breaker_has_counted_nothing() -> None:
    breaker = rate_breaker()
    feed(breaker, 0.0, "S" * 20)
    assert breaker.state is CLOSED


def test_buckets_that_expire_count_no_failures() -> None:
    breaker = rate_breaker()
    feed(breaker, 0.5, "S")
    feed(breaker, 5.5, "SSSS")  # buckets 1 to 5 were emptied on the way: still 0 failures
    assert breaker.state is CLOSED


def test_the_rolling_window_forgets_exactly_the_expired_buckets() -> None:
    # window 10 s in ten 1 s buckets; the failures at 0.5 and 1.5 leave at 10.x and 11.x
    breaker = rate_breaker(minimum_calls=4)
    feed(breaker, 0.5, "F")
    feed(breaker, 1.5, "F")
    feed(breaker, 9.5, "S")
    feed(breaker, 10.5, "S")  # the bucket of 0.5 is gone: 1 failure of 3 calls
    assert breaker.state is CLOSED
    feed(breaker, 10.75, "F")  # 2 of 4 (1.5, 9.5, 10.5, 10.75): trips
    assert breaker.state is OPEN


def test_old_failures_still_in_the_window_count_after_a_quiet_spell() -> None:
    breaker = rate_breaker(minimum_calls=4, window=4.0)  # four 1 s buckets
    feed(breaker, 2.25, "FF")
    feed(breaker, 4.75, "S")  # 2 s later: the failures of 2.25 are still in the window
    feed(breaker, 5.0, "S")
    assert breaker.state is OPEN  # 2 of 4


def test_a_window_wider_than_one_second() -> None:
    breaker = rate_breaker(minimum_calls=4, window=40.0)  # ten 4 s buckets
    feed(breaker, 1.0, "FF")
    feed(breaker, 30.0, "SS")  # 29 s later, inside the 40 s window: 2 of 4
    assert breaker.state is OPEN


def trip_and_close(spec: BreakerSpec) -> Breaker:
    breaker = Breaker(spec)
    feed(breaker, 0.0, "F" * spec.consecutive_failures)
    assert breaker.state is OPEN
    feed(breaker, spec.cooldown, "S" * spec.probes)
    assert breaker.state is CLOSED
    return breaker


def test_closing_starts_the_consecutive_count_afresh() -> None:
    breaker = trip_and_close(BreakerSpec(consecutive_failures=3, cooldown=5.0))
    feed(breaker, 6.0, "FF")  # two in a row: one short of the three that trip
    assert breaker.state is CLOSED
    feed(breaker, 6.0, "F")
    assert breaker.state is OPEN


def test_closing_empties_the_rolling_window() -> None:
    spec = BreakerSpec(
        consecutive_failures=3, failure_rate=0.5, minimum_calls=4, window=10.0, cooldown=1.0
    )
    breaker = trip_and_close(spec)  # three failures at 0.0, in the window still
    feed(breaker, 1.0, "SSSS")  # judged on its own: 0 of 4
    assert breaker.state is CLOSED
    again = trip_and_close(spec)
    feed(again, 1.0, "SFSF")  # 2 of 4, not 2 of 4 plus whatever came before
    assert again.state is OPEN


def half_open(probes: int) -> Breaker:
    breaker = Breaker(BreakerSpec(consecutive_failures=1, cooldown=5.0, probes=probes))
    feed(breaker, 0.0, "F")
    return breaker


def test_probes_in_flight_and_passed_share_the_allowance() -> None:
    breaker = half_open(probes=2)
    first = breaker.admit(5.0)
    assert first == "probe" and breaker.state is HALF
    breaker.record(5.0, failed=False, ticket=first)  # one passed, none in flight
    assert breaker.admit(5.0) == "probe"  # 1 passed + 1 in flight = 2
    assert breaker.admit(5.0) is None


def test_each_finished_probe_frees_exactly_one_place() -> None:
    for finish in ("record", "release"):
        breaker = half_open(probes=3)
        tickets = [breaker.admit(5.0), breaker.admit(5.0)]
        assert tickets == ["probe", "probe"]
        if finish == "record":
            breaker.record(5.0, failed=False, ticket=tickets[0])  # 1 passed, 1 in flight
            assert breaker.admit(5.0) == "probe"  # 1 + 2 = 3
        else:
            breaker.release(tickets[0])  # 0 passed, 1 in flight
            assert [breaker.admit(5.0), breaker.admit(5.0)] == ["probe", "probe"]
        assert breaker.admit(5.0) is None, finish


def test_a_call_from_before_the_trip_releasing_frees_no_probe() -> None:
    breaker = Breaker(BreakerSpec(consecutive_failures=1, cooldown=5.0, probes=1))
    early = breaker.admit(0.0)  # let in while closed
    feed(breaker, 0.0, "F")  # another call trips the breaker
    assert breaker.admit(5.0) == "probe"
    breaker.release(early)  # the early call ends with a client error
    assert breaker.admit(5.0) is None  # the probe is still out


def test_transitions_are_logged_with_their_times_and_only_the_last_32_kept() -> None:
    breaker = Breaker(BreakerSpec(consecutive_failures=1, cooldown=1.0))
    feed(breaker, 0.0, "F")
    feed(breaker, 1.0, "S")
    assert breaker.transitions == [(0.0, CLOSED, OPEN), (1.0, OPEN, HALF), (1.0, HALF, CLOSED)]
    now = 1.0
    for _ in range(15):  # 45 more transitions
        now += 1.0
        feed(breaker, now, "F")
        now += 1.0
        feed(breaker, now, "S")
    assert len(breaker.transitions) == 32
    assert breaker.transitions[-1] == (now, HALF, CLOSED)


def test_retry_after_is_zero_unless_open_and_counts_down_to_zero() -> None:
    breaker = Breaker(BreakerSpec(consecutive_failures=1, cooldown=5.0))
    assert breaker.retry_after(0.0) == 0.0  # closed
    feed(breaker, 0.0, "F")
    assert breaker.retry_after(1.25) == 3.75
    assert breaker.retry_after(5.0) == 0.0
    assert breaker.retry_after(7.0) == 0.0  # overdue: never negative
    assert breaker.admit(7.0) == "probe"
    assert breaker.retry_after(7.0) == 0.0  # half-open
