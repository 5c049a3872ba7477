"""``PipelineEvents`` for the layers' unit tests: every limiter result kept, in order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge.pipeline.events import LimiterResult


class RecordedEvents:
    """Keeps each limiter result a layer reports, by ``limiter_decision`` or through the
    counters ``limiter_counter`` hands out: the two ways a layer may report one."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def limiter_decision(self, result: LimiterResult) -> None:
        self.seen.append(result)

    def limiter_counter(self, result: LimiterResult) -> Callable[[], None]:
        return lambda: self.seen.append(result)

    def breaker_changed(self, name: str, old: Any, new: Any) -> None:
        return None

    def attempt_layer(self) -> None:
        return None
