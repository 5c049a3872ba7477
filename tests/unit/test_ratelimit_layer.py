"""The rate-limit layer's one-limit path against its general path (no network).

A route with one limit and the memory store is decided in one pass (``_limited``'s first
branch: the key, the store, the fields written out in place). The general path is the one
every other case takes: several limits, Redis, or decisions made before the chain (a
WebSocket handshake's ``precheck``). Here each step is asked of two layers over two stores
on one clock, the second through ``precheck`` so that it takes the general path; their
replies' fields, and their refusals with their fields, must be the same.
"""

from __future__ import annotations

import asyncio
from typing import Any
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from recorded_events import RecordedEvents

from edge.call import Call, Reply
from edge.errors import RateLimited
from edge.observability.pipeline_events import PrometheusPipelineEvents
from edge.pipeline.limiter_store import MemoryLimiterStore
from edge.pipeline.policy import PolicyIndex
from edge.pipeline.ratelimit import RateLimitLayer
from edge.policy_config import PolicyConfig

LIMITS: list[dict[str, Any]] = [
    {"algorithm": "token_bucket", "limit": 3, "period": 1.0},
    {"algorithm": "token_bucket", "limit": 2, "period": 10.0, "burst": 4, "name": "burst"},
    {"algorithm": "sliding_window", "limit": 3, "period": 1.0},
    {"algorithm": "sliding_log", "limit": 3, "period": 1.0},
    {"algorithm": "leaky_bucket", "limit": 3, "period": 1.0},
    # queue mode holds a call for its delay (a real sleep): kept short
    {"algorithm": "leaky_bucket", "limit": 50, "period": 1.0, "mode": "queue", "max_delay": 0.03},
]


def layer(limit: dict[str, Any], clock: Any, policy_header: bool) -> RateLimitLayer:
    policy = PolicyConfig.model_validate({"match": ["*"], "rate_limits": [limit]})
    index = PolicyIndex([policy], PolicyConfig())
    store = MemoryLimiterStore(clock=clock)
    return RateLimitLayer(index, store, (), fail_open=False, policy_header=policy_header)


async def terminal(call: Call) -> Reply:
    return Reply()


async def outcome(limiter: RateLimitLayer, client: str, general: bool) -> tuple[str, Any]:
    call = Call(upstream="kitchen", route="edgetest.v1.Kitchen/Echo", metadata=[], timeout=None)
    call.client = client
    try:
        if general:
            await limiter.precheck(call)
        reply = await limiter(call, terminal)
    except RateLimited as refused:
        return "refused", refused.headers
    assert isinstance(reply, Reply)
    return "allowed", list(call.reply_headers)


@settings(max_examples=60, deadline=None)
@given(
    limit=st.sampled_from(LIMITS),
    policy_header=st.booleans(),
    steps=st.lists(
        st.tuples(st.sampled_from([0.0, 0.0, 0.01, 0.2, 0.7, 3.0]), st.integers(0, 2)),
        min_size=1,
        max_size=25,
    ),
)
def test_one_limit_in_memory_answers_as_the_general_path(
    limit: dict[str, Any], policy_header: bool, steps: list[tuple[float, int]]
) -> None:
    now = [100.0]

    def clock() -> float:
        return now[0]

    one_pass = layer(limit, clock, policy_header)
    general = layer(limit, clock, policy_header)

    async def run() -> None:
        for wait, which in steps:
            now[0] += wait
            client = f"198.51.100.{which}"
            fast = await outcome(one_pass, client, general=False)
            assert fast == await outcome(general, client, general=True)
            if fast[0] == "allowed":
                assert len(fast[1]) == 3 + policy_header
        assert one_pass.refused == general.refused

    asyncio.run(run())


def test_queue_mode_holds_each_call_as_the_general_path_does() -> None:
    """A leaky bucket in queue mode shapes instead of refusing: both paths hold the same
    calls for the same delays (recorded, not slept)."""
    now = [100.0]
    queue = {"algorithm": "leaky_bucket", "limit": 10, "period": 1.0, "mode": "queue",
             "max_delay": 1.0}  # fmt: skip
    held: dict[bool, list[float]] = {False: [], True: []}
    path = [False]

    async def record(delay: float) -> None:
        held[path[0]].append(delay)

    async def run() -> None:
        limiters = {
            False: layer(queue, lambda: now[0], True),
            True: layer(queue, lambda: now[0], True),
        }
        for _ in range(6):  # six calls at one instant: each queued behind the last
            for general in (False, True):
                path[0] = general
                assert (await outcome(limiters[general], "198.51.100.1", general))[0] == "allowed"

    with patch("edge.pipeline.ratelimit.asyncio.sleep", record):
        asyncio.run(run())
    assert held[False] == held[True]
    assert len(held[False]) == 5 and held[False][0] > 0  # the first goes at once


def test_the_policy_fields_list_every_limit_in_order() -> None:
    """``RateLimit-Policy`` names every limit of the route, and a socket's message limits
    have a label of their own."""
    policy = PolicyConfig.model_validate(
        {
            "match": ["*"],
            "rate_limits": [
                {"algorithm": "token_bucket", "limit": 10, "period": "1s", "name": "burst"},
                {"algorithm": "sliding_window", "limit": 100, "period": "60s"},
            ],
            "limit_messages": [{"algorithm": "token_bucket", "limit": 5, "period": "1s"}],
        }
    )
    route = PolicyIndex([policy], PolicyConfig()).for_route("edgetest.v1.Kitchen/Echo")
    assert route.policy_field == (b"ratelimit-policy", b"burst, 100;w=60")
    assert route.message_limits_label == b"5;w=1"
    assert [limit.limit_field for limit in route.limits] == [
        (b"ratelimit-limit", b"10"),
        (b"ratelimit-limit", b"100"),
    ]


def test_every_decision_is_reported_once_on_either_path() -> None:
    now = [100.0]
    limit = {"algorithm": "token_bucket", "limit": 2, "period": 10.0}
    for general in (False, True):
        recorder = RecordedEvents()
        policy = PolicyConfig.model_validate({"match": ["*"], "rate_limits": [limit]})
        limiter = RateLimitLayer(
            PolicyIndex([policy], PolicyConfig()),
            MemoryLimiterStore(clock=lambda: now[0]),
            (),
            fail_open=False,
            events=recorder,
        )

        async def run(limiter: RateLimitLayer = limiter, general: bool = general) -> list[str]:
            return [(await outcome(limiter, "198.51.100.1", general))[0] for _ in range(3)]

        assert asyncio.run(run()) == ["allowed", "allowed", "refused"]
        assert recorder.seen == ["allowed", "allowed", "refused"], general


def test_the_prometheus_counters_count_each_decision() -> None:
    now = [100.0]
    limit = {"algorithm": "token_bucket", "limit": 1, "period": 10.0}
    policy = PolicyConfig.model_validate({"match": ["*"], "rate_limits": [limit]})
    limiter = RateLimitLayer(
        PolicyIndex([policy], PolicyConfig()),
        MemoryLimiterStore(clock=lambda: now[0]),
        (),
        fail_open=False,
        events=PrometheusPipelineEvents(),
    )

    def count(result: str) -> float:
        value = REGISTRY.get_sample_value("edge_ratelimit_decisions_total", {"result": result})
        return value or 0.0

    before = {result: count(result) for result in ("allowed", "refused")}

    async def run() -> list[str]:
        return [(await outcome(limiter, "198.51.100.9", False))[0] for _ in range(2)]

    assert asyncio.run(run()) == ["allowed", "refused"]
    assert count("allowed") == before["allowed"] + 1
    assert count("refused") == before["refused"] + 1
