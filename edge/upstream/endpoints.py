"""Round-robin over an HTTP upstream's endpoints, ejecting failing ones for a while (sans-IO).

An endpoint that fails to connect ``eject_after`` times in a row is skipped for
``eject_for`` seconds, then tried again (one success makes it whole). When every endpoint
is ejected the one whose ejection ends first is used anyway: a gateway that refuses all
traffic because all backends looked bad for a moment is worse than one that tries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(slots=True)
class Endpoint:
    base: str  # scheme://host[:port][/path], no trailing slash
    ws_base: str
    failures: int = 0
    ejected_until: float = 0.0


class EndpointPicker:
    def __init__(self, endpoints: Sequence[Endpoint], eject_after: int, eject_for: float):
        self.endpoints = list(endpoints)
        self.eject_after = eject_after
        self.eject_for = eject_for
        self._next = 0

    def pick(self, now: float) -> Endpoint:
        count = len(self.endpoints)
        for step in range(count):
            endpoint = self.endpoints[(self._next + step) % count]
            if endpoint.ejected_until <= now:
                self._next = (self._next + step + 1) % count
                return endpoint
        return min(self.endpoints, key=lambda e: e.ejected_until)

    def failed(self, endpoint: Endpoint, now: float) -> bool:
        """Record a connect failure; True when it just got the endpoint ejected."""
        endpoint.failures += 1
        if len(self.endpoints) > 1 and endpoint.failures >= self.eject_after:
            endpoint.failures = 0
            endpoint.ejected_until = now + self.eject_for
            return True
        return False

    def succeeded(self, endpoint: Endpoint) -> None:
        endpoint.failures = 0
        endpoint.ejected_until = 0.0
