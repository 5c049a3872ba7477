"""HTTP/2 rapid reset (CVE-2023-44487) and early answers: what Hypercorn lets a client do.

A client may open a stream and cancel it at once (HEADERS then RST_STREAM). A reset
stream no longer counts against ``MAX_CONCURRENT_STREAMS``, so one connection can start
streams as fast as it can write frames: each one spawns an app task, and before this
module each one that got as far as the pipeline started an upstream call. Hypercorn 0.18
only stops such a connection after ``keep_alive_max_requests`` (1,000) streams.

Two rules, applied in Hypercorn's HTTP/2 protocol by a subclass (installed by
``install``, which ``create_app`` calls, so every Hypercorn serving the gateway has it):

- **A stream reset in the same read as its HEADERS is never started.** h2 has already
  closed it; no app task, no upstream call, no request count. A reset that arrives later
  reaches the app as ``http.disconnect``, which cancels the call in flight.
- **A connection has a reset budget**: ``server.h2_reset_burst`` client resets at once,
  refilled at ``server.h2_reset_rate`` per second (a token bucket). A connection that
  overspends it gets GOAWAY with ``ENHANCE_YOUR_CALM`` and is closed; its streams in
  flight see a disconnect. Browsers cancel a few fetches a second at most; an attacker
  cancels thousands.

And one repair: a stream answered before its request body ended may still receive the
rest of that body. Hypercorn no longer knows the stream, drops the data without giving
its bytes back to the connection's flow-control window, and after 64 KiB every stream of
the connection stalls. Here such data is dropped and acknowledged.

What stays Hypercorn's: frame parsing and HPACK (h2) run before either rule sees a frame,
so a flood costs CPU until the budget closes the connection (at the defaults, a few
hundred frames).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h2.errors
import h2.events
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed
from hypercorn.protocol.h2 import H2Protocol

from edge.listener_tls import ListenerTls
from edge.pipeline.limiter_core import Bucket, LimitSpec, token_bucket

DEFAULT_RESET_BURST = 200
DEFAULT_RESET_RATE = 50


class EdgeHypercornConfig(HypercornConfig):
    """Hypercorn's config, our HTTP/2 reset budget (``None``: no budget), and where the
    TLS contexts it makes are kept so a reload can renew their certificate
    (``edge.listener_tls``)."""

    h2_reset_burst: int | None = DEFAULT_RESET_BURST
    h2_reset_rate: int = DEFAULT_RESET_RATE
    listener_tls: ListenerTls | None = None

    def __init__(self) -> None:
        super().__init__()
        self._headers_by_protocol: dict[str, tuple[float, list[tuple[bytes, bytes]]]] = {}

    def response_headers(self, protocol: str) -> list[tuple[bytes, bytes]]:
        """Hypercorn's headers for every response (``date``, ``server``, ``alt-svc``), made
        once per second per protocol instead of once per response: formatting the date
        was 2% of a small request's CPU, and the ``date`` header has a resolution of one
        second anyway (RFC 9110, 5.6.7)."""
        second = time.time() // 1
        cached = self._headers_by_protocol.get(protocol)
        if cached is None or cached[0] != second:
            cached = (second, super().response_headers(protocol))
            self._headers_by_protocol[protocol] = cached
        return list(cached[1])  # a copy: callers add their own

    def create_ssl_context(self) -> ssl.SSLContext | None:
        context = super().create_ssl_context()
        if context is not None and self.listener_tls is not None and self.certfile is not None:
            keyfile = Path(self.keyfile) if self.keyfile is not None else None
            self.listener_tls.keep(context, Path(self.certfile), keyfile)
        return context


def stillborn_streams(events: Iterable[h2.events.Event]) -> set[int]:
    """Streams both opened and reset by the client within one batch of events."""
    opened: set[int] = set()
    reset: set[int] = set()
    for event in events:
        if isinstance(event, h2.events.RequestReceived):
            opened.add(event.stream_id)
        elif isinstance(event, h2.events.StreamReset) and event.remote_reset:
            reset.add(event.stream_id)
    return opened & reset


class ResetBudget:
    """The token bucket of one connection's client resets (sans-IO: ``now`` is given)."""

    __slots__ = ("_spec", "_state")

    def __init__(self, burst: int, rate: int) -> None:
        self._spec = LimitSpec("token_bucket", limit=rate, period=1.0, burst=burst)
        self._state: Bucket | None = None

    def spend(self, now: float) -> bool:
        """One reset; False once the connection has spent more than its budget."""
        self._state, decision = token_bucket(self._state, now, self._spec)
        return decision.allowed


class GuardedH2Protocol(H2Protocol):
    """Hypercorn's HTTP/2 protocol with the two rules of this module."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        burst = getattr(self.config, "h2_reset_burst", DEFAULT_RESET_BURST)
        rate = getattr(self.config, "h2_reset_rate", DEFAULT_RESET_RATE)
        self._budget = ResetBudget(burst, rate) if burst is not None else None
        self.resets_refused = 0  # streams never started because of the first rule

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        stillborn = stillborn_streams(events)
        opened = {e.stream_id for e in events if isinstance(e, h2.events.RequestReceived)}
        kept: list[h2.events.Event] = []
        now = time.monotonic()
        for event in events:
            if isinstance(event, h2.events.StreamReset) and event.remote_reset:
                if self._budget is not None and not self._budget.spend(now):
                    await self._calm_down()
                    return
            stream_id = getattr(event, "stream_id", None)
            if (
                isinstance(event, h2.events.DataReceived)
                and stream_id not in self.streams
                and stream_id not in opened
            ):
                # the rest of a body whose answer has ended (RFC 9113 8.1 lets a server
                # answer early): dropped, but its bytes given back to the connection's
                # window, which Hypercorn left spent, stalling every other stream
                self.connection.acknowledge_received_data(
                    event.flow_controlled_length, event.stream_id
                )
                continue
            if stream_id in stillborn:
                if isinstance(event, h2.events.RequestReceived):
                    self.resets_refused += 1
                elif isinstance(event, h2.events.DataReceived):  # the connection's window
                    self.connection.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                continue  # h2 has closed the stream already; the app never hears of it
            kept.append(event)
        await super()._handle_events(kept)

    async def _calm_down(self) -> None:
        self.connection.close_connection(error_code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        await self._flush()
        await self.send(Closed())


def install() -> None:
    """Make Hypercorn build ``GuardedH2Protocol`` for every HTTP/2 connection.

    Hypercorn's ``ProtocolWrapper`` looks ``H2Protocol`` up in its module when a
    connection turns out to be HTTP/2, so replacing that name is enough (idempotent).
    tests/adversarial/test_h2_rapid_reset.py fails if a Hypercorn upgrade changes that.
    """
    import hypercorn.protocol

    hypercorn.protocol.H2Protocol = GuardedH2Protocol  # type: ignore[attr-defined]
