"""Retries of unary calls, only where safe, never amplifying an outage.

A call is retried only when all of these hold: the method is declared idempotent in its
proto (``idempotency_level``) or its policy marks it ``safe``; it is unary (a stream
cannot be replayed); the upstream failed with a configured code (UNAVAILABLE by default)
*before sending any response metadata*; another attempt fits in the call's deadline; and
the retry budget allows it: retries may not exceed ``budget`` times the calls of the last
ten seconds (plus ``min_retries_per_second``), so when an upstream is down retries stop
instead of multiplying the load. Backoff is exponential with full jitter.

The layer sits outside the breaker, so each attempt is seen by it: a failing upstream
trips the breaker sooner, and an open breaker ends the retries at once.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edge.call import Call, Reply
from edge.errors import UpstreamStatus
from edge.pipeline.chain import Next
from edge.pipeline.policy import PolicyIndex


@dataclass(slots=True)
class RetryBudget:
    """Calls and retries per one-second slot over a sliding ``window`` (sans-IO)."""

    ratio: float
    min_per_second: float
    window: int = 10
    calls: list[int] = field(default_factory=list)
    retries: list[int] = field(default_factory=list)
    epoch: int = 0

    def __post_init__(self) -> None:
        self.calls = [0] * self.window
        self.retries = [0] * self.window

    def _advance(self, now: float) -> int:
        slot = math.floor(now)
        for step in range(min(slot - self.epoch, self.window)):
            index = (self.epoch + step + 1) % self.window
            self.calls[index] = 0
            self.retries[index] = 0
        self.epoch = max(self.epoch, slot)
        return self.epoch % self.window

    def record_call(self, now: float) -> None:
        self.calls[self._advance(now)] += 1

    def try_retry(self, now: float) -> bool:
        index = self._advance(now)
        allowed = self.ratio * sum(self.calls) + self.min_per_second * self.window
        if sum(self.retries) + 1 > allowed:
            return False
        self.retries[index] += 1
        return True


class RetryLayer:
    def __init__(
        self,
        index: PolicyIndex,
        budget: RetryBudget,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.index = index
        self.budget = budget
        self.clock = clock
        self.jitter = jitter
        self.retried = 0
        self.budget_refusals = 0

    async def __call__(self, call: Call, next_: Next) -> Reply:
        policy = self.index.for_route(call.route).retry
        method = call.method
        if (
            policy is None
            or method is None
            or method.client_streaming
            or method.server_streaming
            or not (policy.safe or method.idempotent)
        ):
            return await next_(call)
        start = self.clock()
        deadline = start + call.timeout if call.timeout is not None else None
        self.budget.record_call(start)
        attempt = 1
        while True:
            try:
                return await next_(call)
            except UpstreamStatus as error:
                if (
                    attempt >= policy.attempts
                    or error.grpc_code not in policy.codes
                    or error.initial_metadata  # the upstream had started to answer
                ):
                    raise
                delay = self.jitter(
                    0.0, min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1))
                )
                now = self.clock()
                if deadline is not None and now + delay >= deadline:
                    raise
                if not self.budget.try_retry(now):
                    self.budget_refusals += 1
                    raise
                self.retried += 1
                await asyncio.sleep(delay)
                attempt += 1
                if deadline is not None:
                    call.timeout = max(0.001, deadline - self.clock())
