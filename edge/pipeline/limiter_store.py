"""Where limiter state lives: in this process (bounded) or in Redis (shared, atomic).

Both stores run the arithmetic of ``limiter_core``; the Redis scripts mirror it line for
line (keeping and returning numbers with 17 significant digits, so a state round-trips
exactly and the decisions are the core's, bit for bit) and take the time from the Redis
server (``TIME``), so instances whose clocks disagree still share one limit. Given a
``clock``, the Redis store sends its time with each call instead: tests compare the
scripts with the cores step by step while time passes, without sleeping. A request's
several limits are decided in one round trip (one pipeline of script calls).

The memory store is bounded twice: at most ``max_keys`` keys and about ``max_bytes`` bytes,
least recently used evicted first, and expired entries at the least recently used end
dropped whenever a key is added or decided afresh (a key seen lately under the same limit
only updates its own entry).
An evicted key starts again with a full allowance; that is the price of never growing
without bound under a flood of distinct keys, and it can only err towards allowing. The
byte count is arithmetic, not measurement: each entry costs its key's length (keys are
ASCII, see ``limit_keys.bounded_part``) plus a fixed overhead per algorithm measured once
with tracemalloc (and re-measured by the tests), plus, for a sliding log, a fixed cost per
timestamp it holds.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, Protocol

from edge.errors import ConfigError
from edge.pipeline.limiter_core import (
    Decision,
    LimitSpec,
    leaky_bucket,
    sliding_log,
    sliding_window,
    token_bucket,
)
from edge.redaction import redact_text, redact_url

_STEPS: dict[str, Callable[[Any, float, LimitSpec, int], tuple[Any, Decision]]] = {
    "token_bucket": token_bucket,
    "sliding_window": sliding_window,
    "sliding_log": sliding_log,
    "leaky_bucket": leaky_bucket,
}


class LimiterStore(Protocol):
    async def decide(
        self, checks: Sequence[tuple[LimitSpec, str]], cost: int = 1
    ) -> list[Decision]: ...

    async def close(self) -> None: ...


# Bytes one entry costs besides its key's characters, measured with tracemalloc on CPython
# 3.11 (64-bit) in a store held at its byte budget by a flood of distinct keys, each
# stepped at its own time (the worst case): the key's string header, the OrderedDict's
# slots and links (with the free slots a churning dict carries), the (state, expiry, spec)
# tuple, the expiry float and the algorithm's state; rounded up. A sliding log's state
# also holds a tuple slot and a float per timestamp. tests/unit/test_limiter_store.py
# measures them again, so a Python whose objects grew fails there rather than in production.
ENTRY_BYTES: dict[str, int] = {
    "token_bucket": 384,
    "sliding_window": 384,
    "sliding_log": 336,  # with no timestamp; plus LOG_TIMESTAMP_BYTES each
    "leaky_bucket": 320,
}
LOG_TIMESTAMP_BYTES = 40
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def entry_bytes(spec: LimitSpec, key: str, state: Any) -> int:
    """What one stored entry costs, approximately, in bytes (integer arithmetic only)."""
    size = len(key) + ENTRY_BYTES[spec.algorithm]
    if spec.algorithm == "sliding_log":
        size += LOG_TIMESTAMP_BYTES * len(state)
    return size


class MemoryLimiterStore:
    """Per-process limiter state; exact for one instance, per instance when there are many.

    Bounded by ``max_keys`` entries and about ``max_bytes`` bytes (see ``entry_bytes``),
    whichever binds first; the newest entry is always kept, even when it alone is over.
    """

    def __init__(
        self,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.max_keys = max_keys
        self.max_bytes = max_bytes
        self.clock = clock
        self._states: OrderedDict[str, tuple[Any, float, LimitSpec]] = OrderedDict()
        self.bytes = 0  # the accounted size of every entry held
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._states)

    def decide_now(self, spec: LimitSpec, key: str, now: float, cost: int = 1) -> Decision:
        states = self._states
        entry = states.pop(key, None)
        if (
            entry is not None
            and entry[2] is spec
            and entry[1] > now
            and spec.algorithm != "sliding_log"
        ):
            # The common case: a key seen lately under this very limit. Its entry keeps
            # its size and the store its length, so no bound can be newly exceeded and
            # there is nothing to account or evict; expired entries at the front wait for
            # the next decision that adds a key or decides one afresh (``_decide``).
            new_state, decision = _STEPS[spec.algorithm](entry[0], now, spec, cost)
            states[key] = (new_state, now + spec.ttl, spec)
            return decision
        return self._decide(spec, key, now, cost, entry)

    def _decide(
        self,
        spec: LimitSpec,
        key: str,
        now: float,
        cost: int,
        entry: tuple[Any, float, LimitSpec] | None,
    ) -> Decision:
        """``decide_now`` for a key new, expired, rebuilt or with a log: accounted, trimmed."""
        algorithm = spec.algorithm
        state = None
        # ``entry_bytes`` inlined (a flood of new keys comes this way): what the entry
        # costs changes only with a sliding log's length, since a key keeps its spec
        size = len(key) + ENTRY_BYTES[algorithm]
        if entry is not None:
            old_state, expires, old_spec = entry
            if old_spec is not spec:  # the limit was rebuilt since (a reload, a sidecar)
                self.bytes -= entry_bytes(old_spec, key, old_state) - size
                if old_spec.algorithm != algorithm:
                    expires = now  # another algorithm's state means nothing to this one
            elif algorithm == "sliding_log":
                self.bytes -= LOG_TIMESTAMP_BYTES * len(old_state)
            if expires > now:
                state = old_state
        else:
            self.bytes += size
        new_state, decision = _STEPS[algorithm](state, now, spec, cost)
        if algorithm == "sliding_log":
            self.bytes += LOG_TIMESTAMP_BYTES * len(new_state)
        self._states[key] = (new_state, now + spec.ttl, spec)
        self._trim(now)
        return decision

    def _trim(self, now: float) -> None:
        states = self._states
        # the front holds the least recently used keys: drop the expired ones there
        for _ in range(4):
            if not states:
                return
            oldest = next(iter(states))
            entry = states[oldest]
            if entry[1] > now:
                break
            del states[oldest]
            self.bytes -= entry_bytes(entry[2], oldest, entry[0])
        if len(states) > self.max_keys or self.bytes > self.max_bytes:
            self._evict()

    def _evict(self) -> None:
        """Drop least recently used entries until both bounds hold (keeping the newest)."""
        states = self._states
        while len(states) > self.max_keys or (self.bytes > self.max_bytes and len(states) > 1):
            key, (state, _, spec) = states.popitem(last=False)
            self.bytes -= entry_bytes(spec, key, state)
            self.evicted += 1

    async def decide(
        self, checks: Sequence[tuple[LimitSpec, str]], cost: int = 1
    ) -> list[Decision]:
        now = self.clock()
        return [self.decide_now(spec, key, now, cost) for spec, key in checks]

    async def close(self) -> None:
        self._states.clear()
        self.bytes = 0


# -- Redis ------------------------------------------------------------------------------

_LUA = resources.files("edge.pipeline") / "lua"


def _script(name: str) -> str:
    """The Lua source of one limiter, shipped beside this module."""
    return (_LUA / f"{name}.lua").read_text()


class RedisUnavailable(Exception):
    """Redis could not be asked; the caller applies its fail-open or fail-closed policy."""


class RedisLimiterStore:
    """Limiter state in Redis: one key per (limit, subject), one round trip per request."""

    def __init__(
        self,
        client: Any,
        prefix: str = "edge:rl:",
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` None (the gateway's choice) lets every script read Redis ``TIME``, so
        instances share one clock; a clock of our own is sent with each script call
        instead, for tests that make time pass without sleeping."""
        self.client = client
        self.prefix = prefix
        self.clock = clock
        self._scripts = {name: client.register_script(_script(name)) for name in _STEPS}

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float = 0.25,
        prefix: str = "edge:rl:",
        clock: Callable[[], float] | None = None,
    ) -> RedisLimiterStore:
        import redis.asyncio as redis

        try:
            client = redis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry_on_timeout=False,
                health_check_interval=30,
            )
        except ValueError as exc:  # a URL redis-py cannot read; never print it whole
            shown = redact_url(url)
            # redis-py's words may quote a piece of the URL (a password split at a "/")
            why = str(exc) if shown == url else "redis-py cannot read it"
            raise ConfigError(f"rate_limiting.redis_url {shown!r}: {why}") from exc
        return cls(client, prefix, clock=clock)

    async def _queue(
        self, pipe: Any, spec: LimitSpec, key: str, cost: int, now: float | None
    ) -> None:
        """Queue one script call on the pipeline (redis-py's async scripts must be awaited)."""
        ttl_ms = math.ceil(spec.ttl * 1000)
        name = self.prefix + key
        keys = [name]
        args: list[Any]
        if spec.algorithm == "token_bucket":
            args = [spec.capacity, spec.rate, cost, ttl_ms]
        elif spec.algorithm == "sliding_window":
            args = [spec.limit, spec.period, cost, ttl_ms]
        elif spec.algorithm == "sliding_log":
            keys.append(name + ":seq")
            args = [spec.limit, spec.period, cost, ttl_ms]
        else:
            args = [spec.rate, spec.capacity, cost, ttl_ms, spec.mode, spec.max_delay]
        if now is not None:
            args.append(now)  # the script's last, optional argument (floats go as repr)
        await self._scripts[spec.algorithm](keys=keys, args=args, client=pipe)

    async def decide(
        self, checks: Sequence[tuple[LimitSpec, str]], cost: int = 1
    ) -> list[Decision]:
        from redis.exceptions import RedisError

        now = None if self.clock is None else self.clock()
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for spec, key in checks:
                    await self._queue(pipe, spec, key, cost, now)
                replies = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            # logged by the rate-limit layer: no credentials of the URL in it, ever
            raise RedisUnavailable(redact_text(str(exc)) or type(exc).__name__) from exc
        decisions = []
        for (spec, _), reply in zip(checks, replies, strict=True):
            allowed, remaining, reset, retry = (_text(item) for item in reply[:4])
            delay = float(_text(reply[4])) if len(reply) > 4 else 0.0
            decisions.append(
                Decision(
                    allowed=int(allowed) == 1,
                    limit=spec.quota,
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
