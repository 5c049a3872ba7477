"""The breaker layer around calls in flight (no network: the next step is a fake upstream)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import REGISTRY

from edge.call import Call, Reply
from edge.errors import UpstreamUnavailable
from edge.observability.pipeline_events import PrometheusPipelineEvents
from edge.pipeline.breaker import BreakerLayer, guard_for
from edge.policy_config import BreakerConfig


def transitions(name: str, to: str) -> float:
    value = REGISTRY.get_sample_value("edge_breaker_transitions_total", {"name": name, "to": to})
    return value or 0.0


async def test_one_trip_is_counted_and_logged_once_however_many_calls_were_in_flight(
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = "in-flight-upstream"
    config = BreakerConfig(consecutive_failures=5, cooldown=60)
    now = [0.0]
    layer = BreakerLayer(
        {name: guard_for(name, config)},
        frozenset({14}),
        clock=lambda: now[0],
        events=PrometheusPipelineEvents(),
    )
    release = asyncio.Event()

    async def failing_upstream(call: Call) -> Reply:
        await release.wait()
        raise UpstreamUnavailable("down")

    before = transitions(name, "open")
    calls = [
        asyncio.create_task(
            layer(Call(upstream=name, route="r", metadata=[], timeout=None), failing_upstream)
        )
        for _ in range(30)
    ]
    await asyncio.sleep(0)  # all thirty admitted while closed
    with caplog.at_level(logging.WARNING, logger="edge.breaker"):
        release.set()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, UpstreamUnavailable) for r in results)
        now[0] = 61.0  # past the cooldown: the next call is a probe (open -> half-open)
        with pytest.raises(UpstreamUnavailable):
            await layer(Call(upstream=name, route="r", metadata=[], timeout=None), failing_upstream)
    assert transitions(name, "open") - before == 2  # the trip, then the failed probe
    assert transitions(name, "half_open") >= 1
    lines = [r.getMessage() for r in caplog.records if name in r.getMessage()]
    assert lines == [
        f"circuit breaker for upstream {name!r}: closed -> open",
        f"circuit breaker for upstream {name!r}: open -> half_open",
        f"circuit breaker for upstream {name!r}: half_open -> open",
    ]
