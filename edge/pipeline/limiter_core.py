"""Rate-limit arithmetic (sans-IO): every algorithm as a pure step over a small state.

Each algorithm takes the stored state for one key (``None`` for a key never seen), the
time ``now`` in seconds and the request's cost, and returns the new state plus a
``Decision``. Nothing here reads a clock or touches a store, so the same arithmetic runs
in the in-memory store, is mirrored line for line by the Redis Lua scripts, and is tested
with exact allow/deny sequences against an injected clock.

The algorithms:

* **token bucket** — ``rate`` tokens per second refill a bucket of ``burst`` tokens; a
  request takes ``cost`` tokens or is refused. Allows bursts up to ``burst``.
* **sliding window (counter approximation)** — counts in the current and previous fixed
  windows, the previous one weighted by how much of it still overlaps the sliding window
  (Cloudflare's approximation; O(1) state, exact when traffic is even).
* **sliding window (log)** — the exact variant: timestamps of the accepted requests in the
  last window. O(limit) state per key.
* **leaky bucket** — as a GCRA meter: each request adds ``1/rate`` seconds to a theoretical
  arrival time. ``reject`` mode refuses a request that would overflow ``burst``; ``queue``
  mode instead *delays* it until it conforms (traffic shaping), refusing only when the
  wait would exceed ``max_delay``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

Algorithm = Literal["token_bucket", "sliding_window", "sliding_log", "leaky_bucket"]


class Decision(NamedTuple):
    """One limit's answer for one request.

    A named tuple, not a frozen dataclass: one is made per limit and request, and a frozen
    dataclass sets each of its six fields through ``object.__setattr__``.
    """

    allowed: bool
    limit: int  # the quota, for RateLimit-Limit
    remaining: int  # for RateLimit-Remaining
    reset: float  # seconds until the quota is whole again, for RateLimit-Reset
    retry_after: float = 0.0  # seconds, when refused
    delay: float = 0.0  # seconds to hold the request first (leaky bucket, queue mode)


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """One limit: ``limit`` requests per ``period`` seconds, with algorithm options."""

    algorithm: Algorithm
    limit: int  # requests per period (the bucket size for the buckets)
    period: float  # seconds
    burst: int | None = None  # token / leaky bucket capacity; defaults to limit
    mode: Literal["reject", "queue"] = "reject"  # leaky bucket only
    max_delay: float = 0.0  # queue mode: the longest a request may be held
    # derived once here, read on every decision
    rate: float = field(init=False, repr=False, compare=False)  # requests per second
    capacity: int = field(init=False, repr=False, compare=False)
    ttl: float = field(init=False, repr=False, compare=False)  # how long a state matters
    # what a decision gives as its ``limit`` (RateLimit-Limit): a bucket's capacity, or a
    # window's limit
    quota: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rate = self.limit / self.period
        capacity = self.burst if self.burst is not None else self.limit
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "capacity", capacity)
        windowed = self.algorithm in ("sliding_window", "sliding_log")
        object.__setattr__(self, "quota", self.limit if windowed else capacity)
        # how long a key's state matters: after this, a fresh state decides the same
        object.__setattr__(
            self, "ttl", max(2 * self.period, capacity / rate + self.max_delay) + 1.0
        )


# -- token bucket ---------------------------------------------------------------------


_new = tuple.__new__  # a named tuple from its values, skipping its Python constructor


# A token bucket's state: (tokens, updated). A plain tuple, not a named one: it is made on
# every limited request and read only here, and a named tuple costs a type call more.
Bucket = tuple[float, float]


def token_bucket(
    state: Bucket | None, now: float, spec: LimitSpec, cost: int = 1
) -> tuple[Bucket, Decision]:
    # Run on every limited request, so written for the interpreter: comparisons where
    # ``min``/``max`` would be calls, the decision made by ``tuple.__new__`` where a named
    # tuple's own constructor is a Python function, and the state a plain tuple. The
    # arithmetic is unchanged (the Redis script mirrors it), and so are the types: a
    # bucket refilled to the brim holds ``capacity`` itself, as ``min`` returned it.
    capacity, rate = spec.capacity, spec.rate
    if state is None:
        tokens: float = capacity
    else:
        tokens = state[0] + (now - state[1]) * rate
        if tokens >= capacity:  # as min(capacity, tokens): the int when equal
            tokens = capacity
        elif tokens < 0.0:
            tokens = 0.0
    if tokens >= cost:
        tokens -= cost
        allowed, retry_after = True, 0.0
    else:
        allowed, retry_after = False, (cost - tokens) / rate
    decision = _new(
        Decision,
        (allowed, capacity, math.floor(tokens), (capacity - tokens) / rate, retry_after, 0.0),
    )
    return (tokens, now), decision


# -- sliding window, counter approximation ----------------------------------------------


class Windows(NamedTuple):
    start: float  # start of the current fixed window
    current: int
    previous: int


def sliding_window(
    state: Windows | None, now: float, spec: LimitSpec, cost: int = 1
) -> tuple[Windows, Decision]:
    period, limit = spec.period, spec.limit
    start = math.floor(now / period) * period
    if state is None or state.start <= start - 2 * period:
        current, previous = 0, 0
    elif state.start == start:
        current, previous = state.current, state.previous
    else:  # exactly one window later
        current, previous = 0, state.current
    elapsed = now - start
    weight = 1.0 - elapsed / period
    estimate = previous * weight + current
    allowed = estimate + cost <= limit
    if allowed:
        current += cost
        estimate += cost
        retry_after = 0.0
    else:
        retry_after = _window_wait(previous, current, elapsed, period, limit, cost)
    remaining = max(0, math.floor(limit - estimate))
    decision = Decision(allowed, limit, remaining, period - elapsed, retry_after)
    return Windows(start, current, previous), decision


def _window_wait(
    previous: int, current: int, elapsed: float, period: float, limit: int, cost: int
) -> float:
    """Seconds until ``cost`` more would fit, as the previous window's weight decays."""
    room = limit - cost - current
    if previous > 0 and room >= 0:
        # previous * (1 - e/period) <= room  <=>  e >= period * (1 - room/previous)
        return max(0.0, period * (1.0 - room / previous) - elapsed)
    # wait for the next window, where this window's count becomes the decaying one
    next_room = limit - cost
    if current == 0 or next_room >= current:
        return period - elapsed
    return period - elapsed + period * (1.0 - next_room / current)


# -- sliding window, exact log ----------------------------------------------------------


def sliding_log(
    state: tuple[float, ...] | None, now: float, spec: LimitSpec, cost: int = 1
) -> tuple[tuple[float, ...], Decision]:
    period, limit = spec.period, spec.limit
    log = tuple(t for t in (state or ()) if t > now - period)
    allowed = len(log) + cost <= limit
    if allowed:
        log = log + (now,) * cost
        retry_after = 0.0
    else:
        # the oldest entries that must expire before ``cost`` more fit
        index = len(log) + cost - limit - 1
        retry_after = log[index] + period - now if 0 <= index < len(log) else period
    reset = (log[0] + period - now) if log else 0.0
    return log, Decision(allowed, limit, max(0, limit - len(log)), reset, max(0.0, retry_after))


# -- leaky bucket (GCRA) ----------------------------------------------------------------


def leaky_bucket(
    state: float | None, now: float, spec: LimitSpec, cost: int = 1
) -> tuple[float, Decision]:
    """``state`` is the theoretical arrival time (TAT) of the next conforming request."""
    interval = 1.0 / spec.rate
    capacity = spec.capacity
    tat = now if state is None else max(state, now)
    increment = interval * cost
    # in reject mode a burst of ``capacity`` requests may arrive at once
    tolerance = interval * capacity
    new_tat = tat + increment
    if spec.mode == "queue":
        delay = tat - now
        if delay > spec.max_delay:
            retry_after = delay - spec.max_delay
            return tat, Decision(False, capacity, 0, tat - now, retry_after)
        remaining = max(0, math.floor((spec.max_delay - (new_tat - now)) / interval))
        return new_tat, Decision(True, capacity, remaining, new_tat - now, delay=delay)
    if new_tat - now > tolerance:
        retry_after = new_tat - now - tolerance
        remaining = max(0, math.floor((tolerance - (tat - now)) / interval))
        return tat, Decision(False, capacity, remaining, tat - now, retry_after)
    remaining = max(0, math.floor((tolerance - (new_tat - now)) / interval))
    return new_tat, Decision(True, capacity, remaining, new_tat - now)
