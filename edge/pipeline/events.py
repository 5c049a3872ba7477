"""What the pipeline reports, to whoever listens: the ``PipelineEvents`` seam.

The pipeline does not know about Prometheus, logs or traces; it tells an injected recorder
the few things worth counting, and the observability package implements the recorder
(``observability/pipeline_events.py``, with today's metrics). Nobody listening costs
nothing: ``NO_EVENTS`` does nothing and offers no per-attempt layer, so the chain has one
layer fewer.

The things reported:

* a rate-limit decision: ``allowed``, ``refused``, or ``backend_error`` (the limiter's
  store failed; the call then went through or not as ``on_backend_error`` says);
* a breaker's state change, once per change (not once per call in flight across it);
* each upstream attempt (its latency and outcome, and a stream while it is open): here the
  recorder hands the pipeline a ``Layer`` to put innermost rather than being called per
  attempt, because timing an attempt and watching its stream end is layer work, and a
  recorder that does not count attempts then adds no layer at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

from edge.pipeline.breaker_core import BreakerState
from edge.pipeline.chain import Layer

LimiterResult = Literal["allowed", "refused", "backend_error"]


class PipelineEvents(Protocol):
    """The pipeline's recorder; every method must be cheap and must not raise."""

    def limiter_decision(self, result: LimiterResult) -> None:
        """One rate-limit decision for a call (all of its limits together)."""

    def limiter_counter(self, result: LimiterResult) -> Callable[[], None]:
        """``limiter_decision(result)`` as a call of its own, asked for once: a limited
        route reports an allowed call on every request, and a call less is its cost."""

    def breaker_changed(self, name: str, old: BreakerState, new: BreakerState) -> None:
        """The breaker ``name`` (an upstream, or a route with its own) moved ``old -> new``."""

    def attempt_layer(self) -> Layer | None:
        """The innermost layer, seeing every upstream attempt (retries included), or None."""


class NoPipelineEvents:
    """Nobody listens: nothing is recorded and no attempt layer is added."""

    def limiter_decision(self, result: LimiterResult) -> None:
        return None

    def limiter_counter(self, result: LimiterResult) -> Callable[[], None]:
        return _nothing

    def breaker_changed(self, name: str, old: BreakerState, new: BreakerState) -> None:
        return None

    def attempt_layer(self) -> Layer | None:
        return None


def _nothing() -> None:
    return None


NO_EVENTS: PipelineEvents = NoPipelineEvents()
