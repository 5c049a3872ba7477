"""The pipeline's events as Prometheus metrics: ``PipelineEvents`` implemented.

The metrics are ``edge.observability.metrics``' own (names and labels are part of the
operations contract): ``edge_ratelimit_decisions{result}`` and
``edge_ratelimit_backend_errors``, ``edge_breaker_transitions{name,to}`` and
``edge_breaker_state{name}``, and through the attempt layer
(``edge.observability.layers.upstream_metrics``) ``edge_upstream_calls{upstream,code}``,
``edge_upstream_duration_seconds{upstream}`` and ``edge_streams_in_flight{upstream}``.
"""

from __future__ import annotations

from collections.abc import Callable

from edge.observability import metrics
from edge.observability.layers import upstream_metrics
from edge.pipeline.breaker_core import BreakerState
from edge.pipeline.chain import Layer
from edge.pipeline.events import LimiterResult

_STATE_NUMBER = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class PrometheusPipelineEvents:
    """Counts what the pipeline reports; ``edge.app`` passes one when metrics are on."""

    def __init__(self) -> None:
        # one labelled child per result, found once: a decision is made on every request
        self._decisions = {
            result: metrics.counting(metrics.child(metrics.LIMITER_DECISIONS, result))
            for result in ("allowed", "refused")
        }
        self._decisions["backend_error"] = self._backend_error
        self._backend_errors = metrics.child(metrics.LIMITER_DECISIONS, "backend_error")

    def limiter_decision(self, result: LimiterResult) -> None:
        self._decisions[result]()

    def limiter_counter(self, result: LimiterResult) -> Callable[[], None]:
        return self._decisions[result]

    def _backend_error(self) -> None:
        metrics.LIMITER_ERRORS.inc()
        self._backend_errors.inc()

    def breaker_changed(self, name: str, old: BreakerState, new: BreakerState) -> None:
        metrics.child(metrics.BREAKER_TRANSITIONS, name, new.value).inc()
        metrics.child(metrics.BREAKER_STATE, name).set(_STATE_NUMBER[new])

    def attempt_layer(self) -> Layer | None:
        return upstream_metrics
