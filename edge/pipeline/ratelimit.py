"""The rate-limit layer: every limit of the route decided in one store round trip.

Keys are built from the call (client address behind trusted proxies, JWT subject or any
claim, API key name, route, a header), so the same policy limits a REST client, a
WebSocket and a proxied request alike. Allowed calls carry ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` (IETF draft fields) for the most
constrained limit, and ``RateLimit-Policy`` listing them all; refused calls are 429 with
``Retry-After``. When the shared store (Redis) cannot answer, ``on_backend_error``
decides: ``allow`` (fail open) or ``deny`` (fail closed, 503); either way it is logged and
counted, and the next call simply tries the store again.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Sequence
from typing import NoReturn

from edge.call import Call, Reply
from edge.errors import EdgeError, RateLimited
from edge.pipeline.chain import Next
from edge.pipeline.credentials import Network
from edge.pipeline.events import NO_EVENTS, PipelineEvents
from edge.pipeline.limiter_core import Decision, LimitSpec
from edge.pipeline.limiter_store import LimiterStore, MemoryLimiterStore, RedisUnavailable
from edge.pipeline.policy import Limit, PolicyIndex, RoutePolicy

log = logging.getLogger("edge.ratelimit")


class LimiterUnavailable(EdgeError):
    """The shared limiter store is down and the policy is to fail closed."""

    grpc_code = 14


def rate_limit_headers(
    decisions: Sequence[Decision], policy_label: bytes | None
) -> list[tuple[bytes, bytes]]:
    """``RateLimit-*`` for the most constrained decision; ``RateLimit-Policy`` unless None."""
    tightest = decisions[0]
    for decision in decisions[1:]:  # fewest remaining; of those, the latest reset
        if (decision.remaining, -decision.reset) < (tightest.remaining, -tightest.reset):
            tightest = decision
    headers = [
        (b"ratelimit-limit", b"%d" % tightest.limit),
        (b"ratelimit-remaining", b"%d" % tightest.remaining),
        (b"ratelimit-reset", b"%d" % math.ceil(tightest.reset)),
    ]
    if policy_label is not None:
        headers.append((b"ratelimit-policy", policy_label))
    return headers


class RateLimitLayer:
    def __init__(
        self,
        index: PolicyIndex,
        store: LimiterStore,
        trusted: Sequence[Network],
        *,
        fail_open: bool,
        policy_header: bool = True,
        backend: str = "memory",
        events: PipelineEvents = NO_EVENTS,
    ) -> None:
        self.index = index
        self.events = events
        self._count_allowed = events.limiter_counter("allowed")  # asked once, used per call
        self.store = store
        # the memory store answers at once: asked directly, with no coroutine per request
        self._memory = store if isinstance(store, MemoryLimiterStore) else None
        self.trusted = tuple(trusted)
        self.fail_open = fail_open
        self.policy_header = policy_header
        self.backend = backend
        self.backend_errors = 0
        self.refused = 0

    def snapshot(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "on_backend_error": "allow" if self.fail_open else "deny",
            "backend_errors": self.backend_errors,
            "refused": self.refused,
        }

    async def check_message(self, call: Call, connection: str) -> None:
        """A WebSocket client message against the route's per-connection message limits."""
        policy = self.index.for_route(call.route)
        limits = policy.message_limits
        if not limits:
            return
        trusted = self.trusted
        checks = [
            (limit.spec, f"{limit.key_of(call, trusted)}|conn={connection}") for limit in limits
        ]
        await self._decide_checks(checks, policy.message_limits_label)

    async def precheck(self, call: Call) -> None:
        """Decide now (a WebSocket handshake); the chain then does not count the call again."""
        policy = self.index.for_route(call.route)
        if policy.limits:
            call.state["ratelimit.decisions"] = await self.decide(call, policy)

    def __call__(self, call: Call, next_: Next) -> Awaitable[Reply]:
        # not a coroutine itself: a route without limits costs one look-up, and the common
        # limited call (one limit, decided in memory, nothing to wait for) is decided here
        # and hands back the rest of the chain's awaitable, with no frame of its own
        policy = self.index.for_route(call.route)
        limits = policy.limits
        if not limits:
            return next_(call)
        memory = self._memory
        if memory is None or len(limits) != 1 or "ratelimit.decisions" in call.state:
            return self._limited(call, next_, policy)
        limit = limits[0]
        decision = memory.decide_now(limit.spec, limit.key_of(call, self.trusted), memory.clock())
        if not decision.allowed:
            self._refuse([decision], policy.limits_label)
        self._count_allowed()
        fields = (
            limit.limit_field,
            (b"ratelimit-remaining", b"%d" % decision.remaining),
            (b"ratelimit-reset", b"%d" % math.ceil(decision.reset)),
        )
        call.reply_headers += (*fields, policy.policy_field) if self.policy_header else fields
        if decision.delay > 0:
            return self._after(decision.delay, call, next_)  # leaky bucket, queue mode: shape
        return next_(call)

    async def _after(self, delay: float, call: Call, next_: Next) -> Reply:
        await asyncio.sleep(delay)
        return await next_(call)

    async def _limited(self, call: Call, next_: Next, policy: RoutePolicy) -> Reply:
        """Every other limited call: several limits, the shared store, or a socket's
        handshake decided before (``precheck``)."""
        decisions: list[Decision] | None
        limits = policy.limits
        memory = self._memory
        if "ratelimit.decisions" in call.state:
            decisions = call.state["ratelimit.decisions"]
        elif memory is not None:  # decided here and now, in one pass
            trusted = self.trusted
            now = memory.clock()
            decisions = self._judge(
                [
                    memory.decide_now(limit.spec, limit.key_of(call, trusted), now)
                    for limit in limits
                ],
                policy.limits_label,
            )
        else:
            decisions = await self.decide(call, policy)
        if decisions is None:  # the store is down and we fail open
            return await next_(call)
        delay = 0.0
        for decision in decisions:
            if decision.delay > delay:
                delay = decision.delay
        call.reply_headers += tuple(
            rate_limit_headers(decisions, policy.limits_label if self.policy_header else None)
        )
        if delay > 0:
            await asyncio.sleep(delay)  # leaky bucket, queue mode: shape instead of refuse
        return await next_(call)

    def _checks(self, call: Call, limits: Sequence[Limit]) -> list[tuple[LimitSpec, str]]:
        trusted = self.trusted
        return [(limit.spec, limit.key_of(call, trusted)) for limit in limits]

    async def decide(self, call: Call, policy: RoutePolicy) -> list[Decision] | None:
        """Decisions for every limit, or None (fail open); raises RateLimited when refused."""
        return await self._decide_checks(self._checks(call, policy.limits), policy.limits_label)

    async def _decide_checks(
        self, checks: list[tuple[LimitSpec, str]], label: bytes
    ) -> list[Decision] | None:
        try:
            decisions = await self.store.decide(checks)
        except RedisUnavailable as exc:
            self.backend_errors += 1
            self.events.limiter_decision("backend_error")
            log.warning(
                "rate limit store unavailable (%s): failing %s",
                exc,
                "open" if self.fail_open else "closed",
            )
            if self.fail_open:
                return None
            raise LimiterUnavailable("the rate limiter is unavailable") from exc
        return self._judge(decisions, label)

    def _judge(self, decisions: list[Decision], label: bytes) -> list[Decision]:
        """The decisions when all allow; else RateLimited with the refusing ones' headers."""
        for decision in decisions:
            if not decision.allowed:
                self._refuse(decisions, label)
        self._count_allowed()
        return decisions

    def _refuse(self, decisions: list[Decision], label: bytes) -> NoReturn:
        """RateLimited, with the headers of those of ``decisions`` that refused."""
        refused = [d for d in decisions if not d.allowed]
        self.events.limiter_decision("refused")
        self.refused += 1
        wait = max(d.retry_after for d in refused)
        headers = {
            k.decode(): v.decode()
            for k, v in rate_limit_headers(refused, label if self.policy_header else None)
        }
        headers["retry-after"] = str(max(1, math.ceil(wait)))
        raise RateLimited("rate limit exceeded", headers=headers)
