"""The Redis limiter store against a real redis-server: same arithmetic, shared state."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from edge.pipeline.limiter_core import LimitSpec
from edge.pipeline.limiter_store import RedisLimiterStore, RedisUnavailable

pytestmark = pytest.mark.e2e


def prefix() -> str:
    return f"edge-test:{uuid.uuid4().hex}:"


@pytest.mark.parametrize(
    "spec",
    [
        LimitSpec("token_bucket", limit=1, period=60.0, burst=5),
        LimitSpec("sliding_window", limit=5, period=60.0),
        LimitSpec("sliding_log", limit=5, period=60.0),
        LimitSpec("leaky_bucket", limit=1, period=60.0, burst=5),
    ],
    ids=lambda spec: spec.algorithm,
)
async def test_each_algorithm_allows_its_quota_then_refuses(
    redis_url: str, spec: LimitSpec
) -> None:
    store = RedisLimiterStore.from_url(redis_url, prefix=prefix())
    try:
        decisions = [(await store.decide([(spec, "k")]))[0] for _ in range(7)]
    finally:
        await store.close()
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert decisions[0].limit == 5
    assert decisions[0].remaining == 4
    assert decisions[4].remaining == 0
    assert decisions[5].retry_after > 0


async def test_two_instances_share_one_limit(redis_url: str) -> None:
    """Two stores (two gateway instances) hammering one key admit exactly the quota."""
    shared = prefix()
    spec = LimitSpec("sliding_log", limit=50, period=60.0)
    first = RedisLimiterStore.from_url(redis_url, prefix=shared)
    second = RedisLimiterStore.from_url(redis_url, prefix=shared)

    async def hammer(store: RedisLimiterStore) -> int:
        allowed = 0
        for _ in range(60):
            allowed += (await store.decide([(spec, "user")]))[0].allowed
        return allowed

    try:
        counts = await asyncio.gather(hammer(first), hammer(second))
    finally:
        await first.close()
        await second.close()
    assert sum(counts) == 50
    assert all(count > 0 for count in counts)


async def test_several_limits_in_one_round_trip(redis_url: str) -> None:
    store = RedisLimiterStore.from_url(redis_url, prefix=prefix())
    burst = LimitSpec("token_bucket", limit=10, period=1.0, burst=3)
    hourly = LimitSpec("sliding_window", limit=1000, period=3600.0)
    try:
        results = [await store.decide([(burst, "u"), (hourly, "u")]) for _ in range(4)]
    finally:
        await store.close()
    assert [r[0].allowed for r in results] == [True, True, True, False]
    assert [r[1].remaining for r in results] == [999, 998, 997, 996]


async def test_unreachable_redis_raises_for_the_policy_to_decide(unused_tcp_port: Any) -> None:
    store = RedisLimiterStore.from_url(f"redis://127.0.0.1:{unused_tcp_port}/0", timeout=0.2)
    try:
        with pytest.raises(RedisUnavailable):
            await store.decide([(LimitSpec("token_bucket", limit=1, period=1.0), "k")])
    finally:
        await store.close()


def limited(redis: str, prefix: str, on_error: str = "allow") -> dict[str, Any]:
    return {
        "rate_limiting": {
            "backend": "redis",
            "redis_url": redis,
            "redis_prefix": prefix,
            "redis_timeout": "200ms",
            "on_backend_error": on_error,
        },
        "policies": [
            {
                "match": ["edgetest.v1.KitchenService.Echo"],
                "rate_limits": [
                    {"algorithm": "sliding_window", "limit": 10, "period": "60s", "key": ["route"]}
                ],
            }
        ],
    }


async def test_two_gateways_enforce_one_global_limit(redis_url: str, kitchen_upstream: Any) -> None:
    from conftest import make_config, run_gateway

    port, _ = kitchen_upstream
    extra = limited(redis_url, prefix())
    # a slow Redis on a loaded machine fails open (allowed): not what this test is about
    extra["rate_limiting"]["redis_timeout"] = "5s"
    # nor a window boundary in mid-test, where the two-window estimate lets one more by
    extra["policies"][0]["rate_limits"][0]["period"] = "3600s"
    async with (
        run_gateway(make_config(port, extra=extra)) as first,
        run_gateway(make_config(port, extra=extra)) as second,
        first.client() as a,
        second.client() as b,
    ):
        statuses = []
        for index in range(16):
            client = a if index % 2 == 0 else b
            statuses.append((await client.get("/v1/kitchen/x")).status_code)
    assert statuses.count(200) == 10  # together, not 10 each
    assert statuses.count(429) == 6


@pytest.mark.parametrize(("policy", "expected"), [("allow", 200), ("deny", 503)])
async def test_redis_down_mid_run_then_back(
    tmp_path: Any, kitchen_upstream: Any, unused_tcp_port: int, policy: str, expected: int
) -> None:
    """One gateway: Redis up, then stopped, then started again on the same port."""
    from conftest import make_config, redis_server, run_gateway

    port, _ = kitchen_upstream
    url = f"redis://127.0.0.1:{unused_tcp_port}/0"
    extra = limited(url, prefix(), policy)
    async with run_gateway(make_config(port, extra=extra)) as gateway, gateway.client() as client:
        with redis_server(tmp_path, unused_tcp_port):
            before = await client.get("/v1/kitchen/x")
        assert before.status_code == 200 and before.headers["ratelimit-remaining"] == "9"
        down = await client.get("/v1/kitchen/x")  # Redis is gone now
        assert down.status_code == expected
        if expected == 200:
            assert "ratelimit-remaining" not in down.headers  # fail open: no decision made
        else:
            assert down.json()["code"] == 14  # fail closed: 503
        snapshot = gateway.app.extensions["edge.state"].current.pipeline.snapshot()
        assert snapshot["rate_limiting"]["backend_errors"] >= 1
        with redis_server(tmp_path, unused_tcp_port):  # an empty Redis comes back
            back = await client.get("/v1/kitchen/x")
        assert back.status_code == 200  # recovered by itself, no restart
        assert back.headers["ratelimit-remaining"] == "9"
