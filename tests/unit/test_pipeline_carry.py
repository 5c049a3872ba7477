"""A reload keeps the pipeline's state where the settings it was made from did not change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.config import Config, parse_config
from edge.leases import Shared
from edge.pipeline.build import Pipeline, build_pipeline


def config(address: str = "127.0.0.1:1", **extra: Any) -> Config:
    data = {
        "upstreams": {"u": {"address": address}, "v": {"address": "127.0.0.1:2"}},
        "services": {"*": {"upstream": "u"}},
        "breakers": {"default": {"consecutive_failures": 3}},
        **extra,
    }
    return parse_config(data, base=Path("/"), env={})


def build(shared: Shared, cfg: Config) -> Pipeline:
    return build_pipeline(cfg, lease=shared.lease())


def test_unchanged_settings_keep_breakers_limiter_budget_and_stream_counts() -> None:
    shared = Shared()
    old = build(shared, config())
    new = build(shared, config(policies=[{"match": ["*"], "rate_limits": []}]))
    assert old.breakers is not None and new.breakers is not None
    assert new.breakers.guards["u"] is old.breakers.guards["u"]
    assert new.breakers.route_guards is old.breakers.route_guards
    assert old.ratelimit is not None and new.ratelimit is not None
    assert new.ratelimit.store is old.ratelimit.store
    assert old.retry is not None and new.retry is not None
    assert new.retry.budget is old.retry.budget
    assert old.streams is not None and new.streams is not None
    assert new.streams.counts is old.streams.counts


def test_a_moved_upstream_gets_a_fresh_breaker_and_the_others_keep_theirs() -> None:
    shared = Shared()
    old = build(shared, config())
    new = build(shared, config(address="127.0.0.1:9"))
    assert old.breakers is not None and new.breakers is not None
    assert new.breakers.guards["u"] is not old.breakers.guards["u"]
    assert new.breakers.guards["v"] is old.breakers.guards["v"]


def test_changed_limiter_settings_make_a_new_store_and_new_stream_limits_apply() -> None:
    shared = Shared()
    old = build(shared, config())
    new = build(
        shared,
        config(
            rate_limiting={"max_keys": 7}, server={"max_streams": 3, "max_streams_per_client": 1}
        ),
    )
    assert old.ratelimit is not None and new.ratelimit is not None
    assert new.ratelimit.store is not old.ratelimit.store
    assert new.streams is not None and old.streams is not None
    assert new.streams.counts is old.streams.counts  # the streams open now stay counted
    assert (new.streams.counts.total_limit, new.streams.counts.per_client) == (3, 1)
