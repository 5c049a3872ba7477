"""The circuit breaker state machine (sans-IO).

Rules, in prose first:

* **closed** — calls pass. Each outcome is counted. The breaker *trips* (to open) when
  ``consecutive_failures`` failures arrive in a row, or when, over the rolling ``window``,
  at least ``minimum_calls`` calls were made and the share of failures reached
  ``failure_rate``.
* **open** — calls are refused at once, without touching the upstream, until
  ``cooldown`` seconds have passed since the breaker opened; the first call after that
  moves it to half-open. When the failure that opened it was *unreachable* (no
  connection could be made, so nothing reached the upstream), the wait is
  ``unreachable_cooldown`` instead: the probe is then a connect attempt, cheap for both
  sides, and an upstream that comes back is used within that time, not a full cooldown
  later.
* **half_open** — at most ``probes`` calls are let through at a time; the others are
  refused as if open. One failed probe re-opens the breaker (a fresh cooldown);
  ``probes`` successful probes close it, with every count reset.

Only outcomes that say something about the upstream count: the caller decides what is a
failure (connect errors, UNAVAILABLE, timeouts, 5xx) and never reports client errors.
Time is always passed in (``now``), and the transitions live in one table, as in h11.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerEvent(Enum):
    TRIP = "trip"  # too many failures while closed
    COOLED = "cooled"  # cooldown over, a call arrives
    PROBE_FAILED = "probe_failed"
    PROBES_PASSED = "probes_passed"


TRANSITIONS: dict[tuple[BreakerState, BreakerEvent], BreakerState] = {
    (BreakerState.CLOSED, BreakerEvent.TRIP): BreakerState.OPEN,
    (BreakerState.OPEN, BreakerEvent.COOLED): BreakerState.HALF_OPEN,
    (BreakerState.HALF_OPEN, BreakerEvent.PROBE_FAILED): BreakerState.OPEN,
    (BreakerState.HALF_OPEN, BreakerEvent.PROBES_PASSED): BreakerState.CLOSED,
}


@dataclass(frozen=True, slots=True)
class BreakerSpec:
    consecutive_failures: int = 5
    failure_rate: float = 0.5  # 0..1
    minimum_calls: int = 20
    window: float = 10.0  # seconds
    cooldown: float = 5.0  # seconds
    unreachable_cooldown: float = 0.25  # seconds, after a failure that reached nothing
    probes: int = 1
    buckets: int = 10  # resolution of the rolling window


@dataclass(slots=True)
class _Rolling:
    """Call and failure counts over the last ``window`` seconds, in ``buckets`` slices."""

    width: float
    calls: list[int]
    failures: list[int]
    epoch: int = 0  # index of the newest slice, in units of ``width`` since time zero

    def advance(self, now: float) -> None:
        slot = math.floor(now / self.width)
        if slot <= self.epoch:
            return
        for step in range(min(slot - self.epoch, len(self.calls))):
            index = (self.epoch + step + 1) % len(self.calls)
            self.calls[index] = 0
            self.failures[index] = 0
        self.epoch = slot

    def record(self, now: float, failed: bool) -> None:
        self.advance(now)
        index = self.epoch % len(self.calls)
        self.calls[index] += 1
        if failed:
            self.failures[index] += 1

    def totals(self, now: float) -> tuple[int, int]:
        self.advance(now)
        return sum(self.calls), sum(self.failures)

    def clear(self) -> None:
        self.calls = [0] * len(self.calls)
        self.failures = [0] * len(self.failures)


@dataclass(slots=True)
class Breaker:
    spec: BreakerSpec
    state: BreakerState = BreakerState.CLOSED
    opened_at: float = 0.0
    cooldown: float = 0.0  # of the current opening: the spec's, or its unreachable_cooldown
    unreachable: bool = False  # whether the last failure recorded reached nothing
    consecutive: int = 0
    probes_in_flight: int = 0
    probes_passed: int = 0
    rolling: _Rolling = field(init=False)
    transitions: list[tuple[float, BreakerState, BreakerState]] = field(default_factory=list)

    def __post_init__(self) -> None:
        width = self.spec.window / self.spec.buckets
        self.rolling = _Rolling(width, [0] * self.spec.buckets, [0] * self.spec.buckets)

    def _move(self, event: BreakerEvent, now: float) -> None:
        new = TRANSITIONS[(self.state, event)]
        self.transitions.append((now, self.state, new))
        del self.transitions[:-32]  # keep the recent history only
        self.state = new
        if new is BreakerState.OPEN:
            self.opened_at = now
            spec = self.spec
            self.cooldown = (
                min(spec.cooldown, spec.unreachable_cooldown) if self.unreachable else spec.cooldown
            )
        if new is not BreakerState.HALF_OPEN:
            self.probes_in_flight = 0
            self.probes_passed = 0
        if new is BreakerState.CLOSED:
            self.consecutive = 0
            self.rolling.clear()

    def allow(self, now: float) -> bool:
        """May a call go to the upstream now? A True in half-open reserves a probe."""
        return self.admit(now) is not None

    def admit(self, now: float) -> str | None:
        """``"probe"`` (half-open), ``"call"`` (closed), or None (refused).

        The caller hands the ticket back to ``record``/``release``, so that a call let in
        while closed and finishing after a trip is never taken for a probe.
        """
        if self.state is BreakerState.OPEN:
            if now < self.opened_at + self.cooldown:
                return None
            self._move(BreakerEvent.COOLED, now)
        if self.state is BreakerState.HALF_OPEN:
            if self.probes_in_flight + self.probes_passed >= self.spec.probes:
                return None
            self.probes_in_flight += 1
            return "probe"
        return "call"

    def retry_after(self, now: float) -> float:
        """Seconds until the breaker will let a probe through."""
        if self.state is BreakerState.OPEN:
            return max(0.0, self.opened_at + self.cooldown - now)
        return 0.0

    def record(
        self, now: float, *, failed: bool, ticket: str | None = None, unreachable: bool = False
    ) -> None:
        """The outcome of a call that ``allow`` let through (``ticket``: what ``admit`` said).

        ``unreachable``: the call failed without reaching the upstream (no connection).
        """
        self.unreachable = failed and unreachable
        if self.state is BreakerState.HALF_OPEN and ticket == "call":
            return  # a call from before the trip says nothing about the probes
        if self.state is BreakerState.HALF_OPEN:
            self.probes_in_flight = max(0, self.probes_in_flight - 1)
            if failed:
                self._move(BreakerEvent.PROBE_FAILED, now)
            else:
                self.probes_passed += 1
                if self.probes_passed >= self.spec.probes:
                    self._move(BreakerEvent.PROBES_PASSED, now)
            return
        if self.state is BreakerState.OPEN:
            return  # a call from before the trip finishing late says nothing new
        self.rolling.record(now, failed)
        self.consecutive = self.consecutive + 1 if failed else 0
        if self.consecutive >= self.spec.consecutive_failures:
            self._move(BreakerEvent.TRIP, now)
            return
        calls, failures = self.rolling.totals(now)
        if calls >= self.spec.minimum_calls and failures >= self.spec.failure_rate * calls:
            self._move(BreakerEvent.TRIP, now)

    def release(self, ticket: str | None = None) -> None:
        """A let-through call ended without an outcome worth counting (a client error)."""
        if self.state is BreakerState.HALF_OPEN and ticket != "call":
            self.probes_in_flight = max(0, self.probes_in_flight - 1)
