"""Where limiter state lives: in this process (bounded) or in Redis (shared, atomic).

Both stores run the arithmetic of ``limiter_core``; the Redis scripts mirror it line for
line and take the time from the Redis server (``TIME``), so instances whose clocks
disagree still share one limit. A request's several limits are decided in one round trip
(one pipeline of script calls).

The memory store is bounded: at most ``max_keys`` keys, least recently used evicted
first, and entries past their expiry dropped as they are met. An evicted key starts again
with a full allowance; that is the price of never growing without bound under a flood of
distinct keys, and it can only err towards allowing.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, Protocol

from edge.pipeline.limiter_core import (
    Decision,
    LimitSpec,
    leaky_bucket,
    sliding_log,
    sliding_window,
    token_bucket,
)

_STEPS: dict[str, Callable[[Any, float, LimitSpec, int], tuple[Any, Decision]]] = {
    "token_bucket": token_bucket,
    "sliding_window": sliding_window,
    "sliding_log": sliding_log,
    "leaky_bucket": leaky_bucket,
}


def state_ttl(spec: LimitSpec) -> float:
    """How long a key's state matters: after this, a fresh state decides the same."""
    refill = spec.capacity / spec.rate
    return max(2 * spec.period, refill + spec.max_delay) + 1.0


class LimiterStore(Protocol):
    async def decide(
        self, checks: Sequence[tuple[LimitSpec, str]], cost: int = 1
    ) -> list[Decision]: ...

    async def close(self) -> None: ...


class MemoryLimiterStore:
    """Per-process limiter state; exact for one instance, per instance when there are many."""

    def __init__(self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self.max_keys = max_keys
        self.clock = clock
        self._states: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._states)

    def decide_now(self, spec: LimitSpec, key: str, now: float, cost: int = 1) -> Decision:
        entry = self._states.pop(key, None)
        state = entry[0] if entry is not None and entry[1] > now else None
        new_state, decision = _STEPS[spec.algorithm](state, now, spec, cost)
        self._states[key] = (new_state, now + state_ttl(spec))
        self._trim(now)
        return decision

    def _trim(self, now: float) -> None:
        states = self._states
        # the front holds the least recently used keys: drop the expired ones there
        for _ in range(4):
            if not states:
                return
            oldest = next(iter(states))
            if states[oldest][1] > now:
                break
            del states[oldest]
        while len(states) > self.max_keys:
            states.popitem(last=False)
            self.evicted += 1

    async def decide(
        self, checks: Sequence[tuple[LimitSpec, str]], cost: int = 1
    ) -> list[Decision]:
        now = self.clock()
        return [self.decide_now(spec, key, now, cost) for spec, key in checks]

    async def close(self) -> None:
        self._states.clear()


# -- Redis ------------------------------------------------------------------------------

_LUA = resources.files("edge.pipeline") / "lua"


def _script(name: str) -> str:
    """The Lua source of one limiter, shipped beside this module."""
    return (_LUA / f"{name}.lua").read_text()


class RedisUnavailable(Exception):
    """Redis could not be asked; the caller applies its fail-open or fail-closed policy."""


class RedisLimiterStore:
    """Limiter state in Redis: one key per (limit, subject), one round trip per request."""

    def __init__(self, client: Any, prefix: str = "edge:rl:") -> None:
        self.client = client
        self.prefix = prefix
        self._scripts = {name: client.register_script(_script(name)) for name in _STEPS}

    @classmethod
    def from_url(
        cls, url: str, *, timeout: float = 0.25, prefix: str = "edge:rl:"
    ) -> RedisLimiterStore:
        import redis.asyncio as redis

        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry_on_timeout=False,
            health_check_interval=30,
        )
        return cls(client, prefix)

    async def _queue(self, pipe: Any, spec: LimitSpec, key: str, cost: int) -> None:
        """Queue one script call on the pipeline (redis-py's async scripts must be awaited)."""
        ttl_ms = math.ceil(state_ttl(spec) * 1000)
        name = self.prefix + key
        script = self._scripts[spec.algorithm]
        if spec.algorithm == "token_bucket":
            args: list[Any] = [spec.capacity, spec.rate, cost, ttl_ms]
            await script(keys=[name], args=args, client=pipe)
        elif spec.algorithm == "sliding_window":
            await script(keys=[name], args=[spec.limit, spec.period, cost, ttl_ms], client=pipe)
        elif spec.algorithm == "sliding_log":
            keys = [name, name + ":seq"]
            await script(keys=keys, args=[spec.limit, spec.period, cost, ttl_ms], client=pipe)
        else:
            args = [spec.rate, spec.capacity, cost, ttl_ms, spec.mode, spec.max_delay]
            await script(keys=[name], args=args, client=pipe)

    async def decide(
        self, checks: Sequence[tuple[LimitSpec, str]], cost: int = 1
    ) -> list[Decision]:
        from redis.exceptions import RedisError

        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for spec, key in checks:
                    await self._queue(pipe, spec, key, cost)
                replies = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            raise RedisUnavailable(str(exc) or type(exc).__name__) from exc
        decisions = []
        for (spec, _), reply in zip(checks, replies, strict=True):
            allowed, remaining, reset, retry = (_text(item) for item in reply[:4])
            delay = float(_text(reply[4])) if len(reply) > 4 else 0.0
            limit = (
                spec.limit if spec.algorithm in ("sliding_window", "sliding_log") else spec.capacity
            )
            decisions.append(
                Decision(
                    allowed=int(allowed) == 1,
                    limit=limit,
                    remaining=int(float(remaining)),
                    reset=float(reset),
                    retry_after=float(retry),
                    delay=delay,
                )
            )
        return decisions

    async def ping(self) -> bool:
        """Whether Redis answers now (for /readyz)."""
        from redis.exceptions import RedisError

        try:
            return bool(await self.client.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        await self.client.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
