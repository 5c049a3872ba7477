"""The rate-limit layer's general path, asked directly (no network but a refused port).

The one-limit memory path is held to this one by ``test_ratelimit_layer.py``; this file
holds the general path itself to what a client sees: which limit's fields an allowed call
carries when a route has several, which fields and ``Retry-After`` a refusal carries, how
long queue mode holds a call, what a store that answers late or not at all does under
either ``on_backend_error``, and a WebSocket's per-connection message limits.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from unittest.mock import patch

import pytest
from http_upstream import closed_port
from recorded_events import RecordedEvents

from edge.call import Call, Reply
from edge.errors import RateLimited
from edge.pipeline.credentials import parse_networks
from edge.pipeline.limiter_core import Decision, LimitSpec
from edge.pipeline.limiter_store import LimiterStore, MemoryLimiterStore, RedisLimiterStore
from edge.pipeline.policy import PolicyIndex
from edge.pipeline.ratelimit import LimiterUnavailable, RateLimitLayer, rate_limit_headers
from edge.policy_config import PolicyConfig

ROUTE = "edgetest.v1.Kitchen/Echo"


class LateStore:
    """The memory store's answers, given after a turn of the loop (as Redis gives them):
    not a ``MemoryLimiterStore``, so the layer awaits it."""

    def __init__(self, inner: MemoryLimiterStore) -> None:
        self.inner = inner
        self.asked = 0

    async def decide(
        self, checks: Sequence[tuple[LimitSpec, str]], cost: int = 1
    ) -> list[Decision]:
        self.asked += 1
        await asyncio.sleep(0)
        return await self.inner.decide(checks, cost)

    async def close(self) -> None:
        await self.inner.close()


class Upstream:
    """The chain's end: counts the calls that reached it."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, call: Call) -> Reply:
        assert call.route == ROUTE  # the call itself is handed on, not a stand-in
        self.calls += 1
        return Reply()


def index(limits: list[dict[str, Any]], messages: list[dict[str, Any]] | None = None) -> Any:
    policy = PolicyConfig.model_validate(
        {"match": ["*"], "rate_limits": limits, "limit_messages": messages or []}
    )
    return PolicyIndex([policy], PolicyConfig())


def clock_at(now: list[float]) -> Callable[[], float]:
    return lambda: now[0]


def new_call(client: str = "198.51.100.7") -> Call:
    call = Call(upstream="kitchen", route=ROUTE, metadata=[], timeout=None)
    call.client = client
    return call


def fields(limiter: RateLimitLayer, call: Call | None = None) -> list[tuple[bytes, bytes]]:
    """The response fields a call through ``limiter`` to an ``Upstream`` was given."""
    call = call or new_call()
    run(limiter(call, Upstream()))
    return list(call.reply_headers)


def expected_fields(
    limit: bytes, remaining: bytes, reset: bytes, policy: bytes | None
) -> list[tuple[bytes, bytes]]:
    """The RateLimit-* fields a reply should carry, in their order."""
    fields = [
        (b"ratelimit-limit", limit),
        (b"ratelimit-remaining", remaining),
        (b"ratelimit-reset", reset),
    ]
    return fields if policy is None else [*fields, (b"ratelimit-policy", policy)]


def run(awaitable: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await awaitable

    return asyncio.run(main())


# two token buckets: 10 a second, and 3 a minute (the tighter, after one call)
TWO = [
    {"algorithm": "token_bucket", "limit": 10, "period": "1s", "name": "second"},
    {"algorithm": "token_bucket", "limit": 3, "period": "60s", "name": "minute"},
]


@pytest.mark.parametrize("late", [False, True], ids=["memory", "late store"])
@pytest.mark.parametrize("policy_header", [True, False])
def test_several_limits_answer_with_the_tightest(late: bool, policy_header: bool) -> None:
    now = [100.0]
    memory = MemoryLimiterStore(clock=clock_at(now))
    store: LimiterStore = LateStore(memory) if late else memory
    limiter = RateLimitLayer(index(TWO), store, (), fail_open=False, policy_header=policy_header)
    upstream = Upstream()
    call = new_call()
    run(limiter(call, upstream))
    # the minute's bucket has 2 left and is whole again in 20 s; the second's has 9
    policy = b"second, minute" if policy_header else None
    assert list(call.reply_headers) == expected_fields(b"3", b"2", b"20", policy)
    for _ in range(2):
        run(limiter(new_call(), upstream))
    with pytest.raises(RateLimited) as refused:
        run(limiter(new_call(), upstream))
    assert upstream.calls == 3  # the refused call never reached it
    assert refused.value.headers["ratelimit-limit"] == "3"  # only the refusing limit's
    assert refused.value.headers["ratelimit-remaining"] == "0"
    assert refused.value.headers["retry-after"] == "20"
    assert ("ratelimit-policy" in refused.value.headers) is policy_header
    assert limiter.refused == 1
    assert not late or store.asked == 4  # type: ignore[attr-defined]


@pytest.mark.parametrize("policy_header", [True, False])
def test_a_refusal_on_the_one_limit_path_names_its_policy(policy_header: bool) -> None:
    limits = [{"algorithm": "token_bucket", "limit": 1, "period": "60s", "name": "minute"}]
    limiter = RateLimitLayer(
        index(limits), MemoryLimiterStore(), (), fail_open=False, policy_header=policy_header
    )
    run(limiter(new_call(), Upstream()))
    with pytest.raises(RateLimited) as refused:
        run(limiter(new_call(), Upstream()))
    assert refused.value.headers.get("ratelimit-policy") == ("minute" if policy_header else None)


def test_of_equally_tight_limits_the_later_reset_is_told() -> None:
    now = [100.0]
    limits = [
        {"algorithm": "token_bucket", "limit": 3, "period": "60s"},
        {"algorithm": "token_bucket", "limit": 3, "period": "3s"},
    ]
    for order in (limits, limits[::-1]):
        limiter = RateLimitLayer(
            index(order), MemoryLimiterStore(clock=clock_at(now)), (), fail_open=False
        )
        assert (b"ratelimit-reset", b"20") in fields(limiter)  # not the 3 s bucket's 1


def test_the_fields_name_the_fewest_remaining_before_the_latest_reset() -> None:
    def decision(remaining: int, reset: float) -> Decision:
        return Decision(True, 10, remaining, reset)

    fields = rate_limit_headers([decision(5, 50.0), decision(4, 1.2), decision(4, 0.5)], None)
    assert fields == [
        (b"ratelimit-limit", b"10"),
        (b"ratelimit-remaining", b"4"),
        (b"ratelimit-reset", b"2"),  # 1.2 s rounded up: a client waiting 1 s would be early
    ]
    # a full tie: the first listed (the policy's order), whatever its quota
    tie = [Decision(True, 7, 4, 1.2), Decision(True, 9, 4, 1.2)]
    assert rate_limit_headers(tie, None)[0] == (b"ratelimit-limit", b"7")


def test_retry_after_is_the_longest_wait_of_the_refusing_limits() -> None:
    now = [100.0]
    limits = [
        {"algorithm": "token_bucket", "limit": 1, "period": "2s"},
        {"algorithm": "token_bucket", "limit": 1, "period": "5s"},
    ]
    limiter = RateLimitLayer(
        index(limits), MemoryLimiterStore(clock=clock_at(now)), (), fail_open=False
    )
    run(limiter(new_call(), Upstream()))
    with pytest.raises(RateLimited) as refused:
        run(limiter(new_call(), Upstream()))
    assert refused.value.headers["retry-after"] == "5"  # both refuse: the longer wait
    assert refused.value.grpc_code == 8
    assert refused.value.message == "rate limit exceeded"  # what the client's body says
    now[0] += 3  # the first has a token again, the second not: only it refuses
    with pytest.raises(RateLimited) as again:
        run(limiter(new_call(), Upstream()))
    assert again.value.headers["retry-after"] == "2"
    assert again.value.headers["ratelimit-reset"] == "2"
    assert limiter.refused == 2


def test_retry_after_is_never_under_a_second() -> None:
    now = [100.0]
    limits = [{"algorithm": "token_bucket", "limit": 1, "period": "0.3s"}] * 2
    limiter = RateLimitLayer(
        index(limits), MemoryLimiterStore(clock=clock_at(now)), (), fail_open=False
    )
    run(limiter(new_call(), Upstream()))
    with pytest.raises(RateLimited) as refused:
        run(limiter(new_call(), Upstream()))
    assert refused.value.headers["retry-after"] == "1"  # never "0", which means "now"


def test_queue_mode_holds_the_call_for_the_longest_delay() -> None:
    now = [100.0]
    limits = [
        {"algorithm": "leaky_bucket", "limit": 10, "period": "1s", "mode": "queue",
         "max_delay": "5s"},
        {"algorithm": "leaky_bucket", "limit": 4, "period": "1s", "mode": "queue",
         "max_delay": "5s"},
    ]  # fmt: skip
    held: list[float] = []

    async def record(delay: float) -> None:
        held.append(delay)

    limiter = RateLimitLayer(
        index(limits), MemoryLimiterStore(clock=clock_at(now)), (), fail_open=False
    )
    with patch("edge.pipeline.ratelimit.asyncio.sleep", record):
        for _ in range(3):
            run(limiter(new_call(), Upstream()))
    # the second and third calls at one instant queue behind the first: 1/4 s a call for
    # the slower bucket (1/10 s for the other, which must not be the one waited for)
    assert held == pytest.approx([0.25, 0.5])


def test_one_queued_limit_holds_the_call_itself_then_hands_it_on() -> None:
    """The one-limit memory path in queue mode: held for its delay, then the very call
    goes on (``Upstream`` checks it is the call, not a stand-in)."""
    now = [100.0]
    limits = [{"algorithm": "leaky_bucket", "limit": 4, "period": "1s", "mode": "queue",
               "max_delay": "5s"}]  # fmt: skip
    held: list[float] = []

    async def record(delay: float) -> None:
        held.append(delay)

    limiter = RateLimitLayer(
        index(limits), MemoryLimiterStore(clock=clock_at(now)), (), fail_open=False
    )
    upstream = Upstream()
    with patch("edge.pipeline.ratelimit.asyncio.sleep", record):
        for _ in range(2):
            run(limiter(new_call(), upstream))
    assert held == pytest.approx([0.25]) and upstream.calls == 2


@pytest.mark.parametrize("limits", [TWO[:1], TWO], ids=["one limit", "two limits"])
def test_the_fields_are_added_to_what_the_call_carries(limits: list[dict[str, Any]]) -> None:
    """A layer outside the limiter may have put its own field on the call: it stays."""
    limiter = RateLimitLayer(index(limits), MemoryLimiterStore(), (), fail_open=False)
    call = new_call()
    call.reply_headers = ((b"x-outer", b"1"),)
    run(limiter(call, Upstream()))
    fields = list(call.reply_headers)
    assert fields[0] == (b"x-outer", b"1")
    assert [name for name, _ in fields[1:]] == [
        b"ratelimit-limit",
        b"ratelimit-remaining",
        b"ratelimit-reset",
        b"ratelimit-policy",
    ]


def dead_redis() -> RedisLimiterStore:
    return RedisLimiterStore.from_url(f"redis://127.0.0.1:{closed_port()}/0", timeout=0.2)


def dead_store_layer(fail_open: bool) -> tuple[RedisLimiterStore, RecordedEvents, RateLimitLayer]:
    """A layer over a Redis store nothing answers for, and the events it reports."""
    store, events = dead_redis(), RecordedEvents()
    limiter = RateLimitLayer(
        index(TWO), store, (), fail_open=fail_open, backend="redis", events=events
    )
    return store, events, limiter


def test_a_dead_store_fails_open_when_told(caplog: pytest.LogCaptureFixture) -> None:
    store, events, limiter = dead_store_layer(fail_open=True)
    upstream = Upstream()
    call = new_call()
    with caplog.at_level(logging.WARNING, logger="edge.ratelimit"):
        run(limiter(call, upstream))
    assert upstream.calls == 1
    assert call.reply_headers == ()  # no limit was decided: no fields
    assert limiter.snapshot() == {
        "backend": "redis",
        "on_backend_error": "allow",
        "backend_errors": 1,
        "refused": 0,
    }
    # the store's own reason, logged for the operator
    [record] = [r for r in caplog.records if r.name == "edge.ratelimit"]
    logged = re.fullmatch(
        r"rate limit store unavailable \((.+)\): failing open", record.getMessage()
    )
    assert logged is not None and logged.group(1) not in ("", "None")
    assert events.seen == ["backend_error"]  # counted as an outage, not as allowed
    run(limiter(new_call(), upstream))
    assert limiter.snapshot()["backend_errors"] == 2  # every failed ask is counted
    run(store.close())


def test_a_dead_store_fails_closed_by_default(caplog: pytest.LogCaptureFixture) -> None:
    store, events, limiter = dead_store_layer(fail_open=False)
    upstream = Upstream()
    with caplog.at_level(logging.WARNING, logger="edge.ratelimit"):
        with pytest.raises(LimiterUnavailable) as refused:
            run(limiter(new_call(), upstream))
    assert upstream.calls == 0
    assert refused.value.grpc_code == 14  # UNAVAILABLE: 503, not a 429 the client waits out
    assert refused.value.message == "the rate limiter is unavailable"  # no address, no cause
    assert limiter.snapshot()["on_backend_error"] == "deny"
    assert limiter.snapshot()["backend_errors"] == 1
    assert limiter.refused == 0  # an outage is not a refusal of this client
    assert "failing closed" in caplog.text
    assert events.seen == ["backend_error"]
    run(store.close())


def test_a_handshake_decided_before_the_chain_is_not_counted_again() -> None:
    now = [100.0]
    memory = MemoryLimiterStore(clock=clock_at(now))
    store = LateStore(memory)
    limiter = RateLimitLayer(index(TWO), store, (), fail_open=False)
    call = new_call()
    run(limiter.precheck(call))
    assert (b"ratelimit-remaining", b"2") in fields(limiter, call)
    assert store.asked == 1


def test_a_route_without_limits_is_not_decided() -> None:
    store = LateStore(MemoryLimiterStore())
    limiter = RateLimitLayer(index([]), store, (), fail_open=False)
    call = new_call()
    run(limiter.precheck(call))
    run(limiter.check_message(call, "c1"))
    assert fields(limiter, call) == []
    assert store.asked == 0 and "ratelimit.decisions" not in call.state


def test_message_limits_are_per_connection() -> None:
    now = [100.0]
    messages = [{"algorithm": "token_bucket", "limit": 2, "period": "1s"}]
    store = MemoryLimiterStore(clock=clock_at(now))
    limiter = RateLimitLayer(index([], messages), store, (), fail_open=False)
    call = new_call()

    async def messages_allowed(connection: str, count: int) -> list[bool]:
        allowed = []
        for _ in range(count):
            try:
                await limiter.check_message(call, connection)
                allowed.append(True)
            except RateLimited as refused:
                assert refused.headers["ratelimit-policy"] == "2;w=1"
                allowed.append(False)
        return allowed

    assert run(messages_allowed("c1", 3)) == [True, True, False]
    # the same client on another connection has its own budget
    assert run(messages_allowed("c2", 2)) == [True, True]
    assert limiter.refused == 1


def test_the_defaults_name_the_memory_backend() -> None:
    limiter = RateLimitLayer(index(TWO), MemoryLimiterStore(), (), fail_open=False)
    assert limiter.snapshot() == {
        "backend": "memory",
        "on_backend_error": "deny",
        "backend_errors": 0,
        "refused": 0,
    }


class NoAwaitMemoryStore(MemoryLimiterStore):
    """The memory store, refusing to be awaited: the layer must ask it directly."""

    async def decide(
        self, checks: Sequence[tuple[LimitSpec, str]], cost: int = 1
    ) -> list[Decision]:
        raise AssertionError("the memory store was awaited")


@pytest.mark.parametrize("limits", [TWO[:1], TWO], ids=["one limit", "two limits"])
def test_the_memory_store_is_asked_without_a_coroutine(limits: list[dict[str, Any]]) -> None:
    limiter = RateLimitLayer(index(limits), NoAwaitMemoryStore(), (), fail_open=False)
    assert (b"ratelimit-remaining", b"2" if len(limits) == 2 else b"9") in fields(limiter)


@pytest.mark.parametrize("policy_header", [True, False])
def test_one_limit_in_memory_hands_back_the_chains_own_awaitable(policy_header: bool) -> None:
    """No coroutine of the layer's own waits for the reply: the decision is made, the
    fields are on the call, and what the rest of the chain returns is returned as it is."""
    limiter = RateLimitLayer(
        index(TWO[:1]), MemoryLimiterStore(), (), fail_open=False, policy_header=policy_header
    )
    handed_on = object()
    call = new_call()
    assert limiter(call, lambda seen: handed_on if seen is call else None) is handed_on  # type: ignore[arg-type,return-value]
    policy = b"second" if policy_header else None
    assert list(call.reply_headers) == expected_fields(b"10", b"9", b"1", policy)


PROXY = "192.0.2.10"  # a load balancer in front of edge, trusted to say who the client is


def forwarded_call(client: str) -> Call:
    call = new_call(PROXY)
    call.headers = [(b"x-forwarded-for", client.encode())]
    return call


@pytest.mark.parametrize(
    "limits",
    [
        [{"algorithm": "token_bucket", "limit": 1, "period": "60s", "key": ["ip"]}],
        [
            {"algorithm": "token_bucket", "limit": 1, "period": "60s", "key": ["ip"]},
            {"algorithm": "token_bucket", "limit": 100, "period": "60s", "key": ["route"]},
        ],
    ],
    ids=["one limit", "two limits"],
)
@pytest.mark.parametrize("late", [False, True], ids=["memory", "late store"])
def test_clients_behind_a_trusted_proxy_are_limited_apart(
    limits: list[dict[str, Any]], late: bool
) -> None:
    memory = MemoryLimiterStore()
    store: LimiterStore = LateStore(memory) if late else memory
    limiter = RateLimitLayer(index(limits), store, parse_networks([PROXY]), fail_open=False)
    run(limiter(forwarded_call("198.51.100.1"), Upstream()))
    # another client through the same proxy has a budget of its own
    run(limiter(forwarded_call("198.51.100.2"), Upstream()))
    with pytest.raises(RateLimited):  # the first, again: its one call a minute is spent
        run(limiter(forwarded_call("198.51.100.1"), Upstream()))


def test_message_limits_key_clients_behind_a_trusted_proxy_apart() -> None:
    messages = [{"algorithm": "token_bucket", "limit": 1, "period": "60s", "key": ["ip"]}]
    limiter = RateLimitLayer(
        index([], messages), MemoryLimiterStore(), parse_networks([PROXY]), fail_open=False
    )
    run(limiter.check_message(forwarded_call("198.51.100.1"), "c1"))
    run(limiter.check_message(forwarded_call("198.51.100.2"), "c1"))
    with pytest.raises(RateLimited):
        run(limiter.check_message(forwarded_call("198.51.100.1"), "c1"))
