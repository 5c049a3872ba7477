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
import hashlib
import ipaddress
import logging
import math
from collections.abc import Awaitable, Sequence

from edge.call import Call, Reply
from edge.errors import EdgeError, RateLimited
from edge.pipeline.chain import Next
from edge.pipeline.credentials import Network, client_address, header_value
from edge.pipeline.events import NO_EVENTS, PipelineEvents
from edge.pipeline.limiter_core import Decision, LimitSpec
from edge.pipeline.limiter_store import LimiterStore, MemoryLimiterStore, RedisUnavailable
from edge.pipeline.policy import Limit, PolicyIndex, RoutePolicy

log = logging.getLogger("edge.ratelimit")


class LimiterUnavailable(EdgeError):
    """The shared limiter store is down and the policy is to fail closed."""

    grpc_code = 14


def subject_address(address: str | None) -> str:
    """IPv4 addresses as they are; IPv6 by /64, the block one client usually holds."""
    if address is None:
        return "-"
    if ":" in address:
        try:
            network = ipaddress.ip_network(f"{address}/64", strict=False)
        except ValueError:
            return address
        return str(network)
    return address


MAX_KEY_PART = 64  # longer key parts (ASCII characters) are replaced by their digest
DIGEST_MARK = "#"  # starts every digest, and no part kept as it is


def bounded_part(value: str) -> str:
    """``value`` when it is short, plain ASCII; otherwise ``#`` and a 128-bit digest of it.

    Key parts come from the client (a header, a claim), so a key could be as long as the
    longest header a client may send, and the memory store and Redis would keep every
    byte of it. A part kept as it is is at most ``MAX_KEY_PART`` ASCII characters and
    holds neither the ``|`` separator nor a leading ``#``; every other value (long,
    non-ASCII, or one of those) becomes ``#`` and 32 hex digits (BLAKE2b-128), so a key
    has a bounded length and is ASCII, a client cannot make its value read as another
    key's parts, and a literal value can never equal a digest.
    """
    if (
        len(value) <= MAX_KEY_PART
        and value.isascii()
        and "|" not in value
        and not value.startswith(DIGEST_MARK)
    ):
        return value
    data = value.encode("utf-8", "surrogatepass")  # claims may hold lone surrogates
    return DIGEST_MARK + hashlib.blake2b(data, digest_size=16).hexdigest()


def limit_key(limit: Limit, call: Call, trusted: Sequence[Network]) -> str:
    """The counter a call is counted against: the limit's prefix and the call's parts.

    Parts are joined with ``|`` after ``bounded_part``, so the key of any call is at most
    ``len(prefix) + parts * (MAX_KEY_PART + 1)`` ASCII characters, whatever it sent.
    """
    parts = [limit.key_prefix]
    claims = call.state.get("claims") or {}
    for part in limit.key_parts:
        if part == "ip":
            value = subject_address(client_address(call.client, call.headers, trusted))
        elif part == "route":
            value = call.route
        elif part == "sub":
            value = str(claims.get("sub", "-"))
        elif part == "api_key":
            value = str(call.state.get("api_key", "-"))
        elif part.startswith("claim:"):
            value = str(claims.get(part[6:], "-"))
        else:  # header:<name>
            value = header_value(call.headers, part[7:].lower().encode()) or "-"
        parts.append(bounded_part(value))
    return "|".join(parts)


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
        checks = [
            (limit.spec, f"{limit_key(limit, call, self.trusted)}|conn={connection}")
            for limit in limits
        ]
        await self._decide_checks(checks, policy.message_limits_label)

    async def precheck(self, call: Call) -> None:
        """Decide now (a WebSocket handshake); the chain then does not count the call again."""
        policy = self.index.for_route(call.route)
        if policy.limits:
            call.state["ratelimit.decisions"] = await self.decide(call, policy)

    def __call__(self, call: Call, next_: Next) -> Awaitable[Reply]:
        # not a coroutine itself: a route without limits costs one look-up, no frame
        policy = self.index.for_route(call.route)
        if not policy.limits:
            return next_(call)
        return self._limited(call, next_, policy)

    async def _limited(self, call: Call, next_: Next, policy: RoutePolicy) -> Reply:
        if "ratelimit.decisions" in call.state:
            decisions = call.state["ratelimit.decisions"]
        elif self._memory is not None:  # decided here and now, in one pass
            memory, trusted = self._memory, self.trusted
            now = memory.clock()
            decisions = self._judge(
                [
                    memory.decide_now(limit.spec, limit_key(limit, call, trusted), now)
                    for limit in policy.limits
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
        if delay > 0:
            await asyncio.sleep(delay)  # leaky bucket, queue mode: shape instead of refuse
        reply = await next_(call)
        reply.headers.extend(
            rate_limit_headers(decisions, policy.limits_label if self.policy_header else None)
        )
        return reply

    def _checks(self, call: Call, limits: Sequence[Limit]) -> list[tuple[LimitSpec, str]]:
        trusted = self.trusted
        return [(limit.spec, limit_key(limit, call, trusted)) for limit in limits]

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
                break
        else:
            self.events.limiter_decision("allowed")
            return decisions
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
