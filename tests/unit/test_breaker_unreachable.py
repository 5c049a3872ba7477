"""The breaker's short cooldown after failures that reached nothing (no connection)."""

from __future__ import annotations

from edge.pipeline.breaker_core import Breaker, BreakerSpec, BreakerState

SPEC = BreakerSpec(consecutive_failures=2, cooldown=5.0, unreachable_cooldown=0.25)


def tripped(*, unreachable: bool) -> Breaker:
    breaker = Breaker(SPEC)
    for _ in range(2):
        assert breaker.admit(0.0) == "call"
        breaker.record(0.0, failed=True, ticket="call", unreachable=unreachable)
    assert breaker.state is BreakerState.OPEN
    return breaker


def test_an_unreachable_upstream_is_probed_after_the_short_cooldown() -> None:
    breaker = tripped(unreachable=True)
    assert breaker.admit(0.2) is None
    assert breaker.retry_after(0.2) == 0.25 - 0.2
    assert breaker.admit(0.25) == "probe"


def test_an_upstream_that_answered_with_failures_gets_the_full_cooldown() -> None:
    breaker = tripped(unreachable=False)
    assert breaker.admit(0.25) is None
    assert breaker.admit(4.9) is None
    assert breaker.admit(5.0) == "probe"


def test_a_probe_that_reaches_an_upstream_which_fails_reopens_for_the_full_cooldown() -> None:
    breaker = tripped(unreachable=True)
    assert breaker.admit(0.3) == "probe"
    breaker.record(0.3, failed=True, ticket="probe", unreachable=False)  # connected, then failed
    assert breaker.state is BreakerState.OPEN
    assert breaker.admit(0.6) is None
    assert breaker.admit(5.3) == "probe"


def test_an_unreachable_probe_reopens_for_the_short_cooldown_again() -> None:
    breaker = tripped(unreachable=True)
    assert breaker.admit(0.3) == "probe"
    breaker.record(0.3, failed=True, ticket="probe", unreachable=True)
    assert breaker.admit(0.5) is None
    assert breaker.admit(0.55) == "probe"
    breaker.record(0.55, failed=False, ticket="probe")
    assert breaker.state is BreakerState.CLOSED


def test_the_short_cooldown_never_lengthens_a_shorter_configured_one() -> None:
    breaker = Breaker(BreakerSpec(consecutive_failures=1, cooldown=0.1, unreachable_cooldown=0.25))
    breaker.admit(0.0)
    breaker.record(0.0, failed=True, ticket="call", unreachable=True)
    assert breaker.admit(0.1) == "probe"
