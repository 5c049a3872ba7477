"""The breaker layer: one breaker and one in-flight budget per upstream, next to it.

It sits innermost (after auth and limits) so that 401s and 429s never count against an
upstream. An open breaker answers 503 at once with ``Retry-After``, without calling the
upstream; past ``max_requests`` (or ``max_streams``) calls in flight the call is refused
with 503 as Envoy's circuit breakers do. A stream's outcome is recorded when the stream
ends, not when it starts. State changes are logged and kept for the admin endpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from edge.call import Call, Reply
from edge.errors import (
    BadGateway,
    CircuitOpen,
    Overloaded,
    UpstreamStatus,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from edge.pipeline.breaker_core import Breaker, BreakerSpec, BreakerState
from edge.pipeline.chain import Next
from edge.pipeline.events import NO_EVENTS, PipelineEvents
from edge.pipeline.watched_stream import WatchedStream
from edge.policy_config import BreakerConfig
from edge.transcode.status import GRPC_CODE_BY_NUMBER

log = logging.getLogger("edge.breaker")
_UNSET: object = object()


@dataclass(slots=True)
class UpstreamGuard:
    name: str
    breaker: Breaker | None
    max_requests: int | None
    max_streams: int | None
    in_flight: int = 0
    streams: int = 0

    def snapshot(self) -> dict[str, object]:
        breaker = self.breaker
        return {
            "upstream": self.name,  # or the route, for a per-route breaker
            "state": breaker.state.value if breaker else "disabled",
            "in_flight": self.in_flight,
            "streams": self.streams,
            "transitions": [
                {"at": at, "from": old.value, "to": new.value}
                for at, old, new in (breaker.transitions if breaker else [])
            ],
        }


def guard_for(name: str, config: BreakerConfig) -> UpstreamGuard:
    breaker = None
    if config.enabled:
        breaker = Breaker(
            BreakerSpec(
                consecutive_failures=config.consecutive_failures,
                failure_rate=config.failure_rate,
                minimum_calls=config.minimum_calls,
                window=config.window,
                cooldown=config.cooldown,
                unreachable_cooldown=config.unreachable_cooldown,
                probes=config.probes,
            )
        )
    return UpstreamGuard(name, breaker, config.max_requests, config.max_streams)


class BreakerLayer:
    def __init__(
        self,
        guards: Mapping[str, UpstreamGuard],
        failure_codes: frozenset[int],
        clock: Callable[[], float] = time.monotonic,
        route_configs: Sequence[tuple[str, BreakerConfig]] = (),
        events: PipelineEvents = NO_EVENTS,
        route_guards: dict[str, UpstreamGuard | None] | None = None,
    ) -> None:
        self.guards = dict(guards)
        self.events = events
        # per-route breakers: glob -> config; one guard per matching route, made on first use
        self.route_configs = tuple(route_configs)
        # (given: kept over reloads that leave the per-route breakers alone)
        self.route_guards: dict[str, UpstreamGuard | None] = (
            {} if route_guards is None else route_guards
        )
        self.failure_codes = failure_codes
        self.clock = clock

    def is_failure(self, error: BaseException) -> bool | None:
        """True: the upstream failed; False: it answered (a client error); None: no outcome."""
        if isinstance(error, UpstreamStatus):
            if error.grpc_code == 1:  # CANCELLED: the client went away
                return None
            return error.grpc_code in self.failure_codes
        if isinstance(error, BadGateway | UpstreamTimeout | UpstreamUnavailable):
            return True
        return None  # our own errors (a bad client message mid-stream) say nothing

    def _guard(self, call: Call) -> UpstreamGuard | None:
        if self.route_configs:
            route_guard = self.route_guards.get(call.route, _UNSET)
            if route_guard is _UNSET:
                config = next(
                    (c for pattern, c in self.route_configs if fnmatchcase(call.route, pattern)),
                    None,
                )
                route_guard = guard_for(call.route, config) if config else None
                self.route_guards[call.route] = route_guard  # route names are finite
            if route_guard is not None:
                return route_guard  # type: ignore[return-value]
        return self.guards.get(call.upstream)

    async def __call__(self, call: Call, next_: Next) -> Reply:
        guard = self._guard(call)
        if guard is None:
            return await next_(call)
        streaming = call.method is not None and (
            call.method.server_streaming or call.method.client_streaming
        )
        breaker = guard.breaker
        now = self.clock()
        ticket = None
        if breaker is not None:
            prior = breaker.state
            ticket = breaker.admit(now)  # may move open -> half-open
            self._report(guard, breaker, prior)
        if breaker is not None and ticket is None:
            wait = max(1, round(breaker.retry_after(now)))
            raise CircuitOpen(
                f"upstream {guard.name!r} is failing; its circuit breaker is open",
                headers={"retry-after": str(wait)},
            )
        if (guard.max_requests is not None and guard.in_flight >= guard.max_requests) or (
            streaming and guard.max_streams is not None and guard.streams >= guard.max_streams
        ):
            if breaker is not None:
                breaker.release(ticket)
            raise Overloaded(f"too many calls in flight to upstream {guard.name!r}")
        guard.in_flight += 1
        guard.streams += streaming
        try:
            reply = await next_(call)
        except BaseException as error:
            self._finish(
                guard,
                streaming,
                self.is_failure(error),
                ticket,
                unreachable=getattr(error, "unreachable", False),
            )
            raise
        if reply.stream is not None:
            # A probe's verdict is its first message: a long stream taken as the half-open
            # probe would otherwise hold the breaker half-open (everyone else refused) for
            # as long as it lasts. The stream then ends as an ordinary call.
            held = [ticket]

            def first_message() -> None:
                if held[0] == "probe":
                    held[0] = "call"
                    self._verdict(guard, failed=False)

            reply.stream = WatchedStream(
                reply.stream,
                lambda outcome: self._finish(guard, streaming, outcome, held[0]),
                self.is_failure,
                first=first_message if ticket == "probe" else None,
            )
            return reply
        http = reply.http
        if http is not None and http.upgrade is None:
            # a proxied body can still fail (a reset, a stall) after a good status line;
            # the call ends, for the breaker and for max_requests, when the body does; a
            # probe's verdict is its status line, for the reason above
            failed_status = http.status >= 500
            if ticket == "probe":
                self._verdict(guard, failed=failed_status)
                ticket = "call"
            http.body = WatchedStream(
                http.body,
                lambda outcome: self._finish(
                    guard, streaming, True if failed_status else outcome, ticket
                ),
                self.is_failure,
            )
            return reply
        failed = http is not None and http.status >= 500
        self._finish(guard, streaming, failed, ticket)
        return reply

    def _verdict(self, guard: UpstreamGuard, *, failed: bool) -> None:
        """A half-open probe's outcome, given before its call ends (a stream, a body)."""
        breaker = guard.breaker
        assert breaker is not None
        prior = breaker.state
        breaker.record(self.clock(), failed=failed, ticket="probe")
        self._report(guard, breaker, prior)

    def _finish(
        self,
        guard: UpstreamGuard,
        streaming: bool,
        failed: bool | None,
        ticket: str | None,
        *,
        unreachable: bool = False,
    ) -> None:
        guard.in_flight -= 1
        guard.streams -= streaming
        breaker = guard.breaker
        if breaker is None:
            return
        prior = breaker.state
        if failed is None:
            breaker.release(ticket)
        else:
            breaker.record(self.clock(), failed=failed, ticket=ticket, unreachable=unreachable)
        self._report(guard, breaker, prior)

    def _report(self, guard: UpstreamGuard, breaker: Breaker, prior: BreakerState) -> None:
        """Report and log a transition once: where the breaker moved, not per call in flight.

        Comparing with the state at the start of each call counted one real trip once per
        call that was in flight across it (thirty concurrent failures, thirty "transitions").
        """
        if breaker.state is not prior:
            self.events.breaker_changed(guard.name, prior, breaker.state)
            log.warning(
                "circuit breaker for upstream %r: %s -> %s",
                guard.name,
                prior.value,
                breaker.state.value,
            )


def failure_code_numbers(names: list[str]) -> frozenset[int]:
    by_name = {code.name: number for number, code in GRPC_CODE_BY_NUMBER.items()}
    return frozenset(by_name[name] for name in names)
