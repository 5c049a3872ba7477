"""The innermost pipeline layer when metrics are on: upstream call counts and latency.

The pipeline does not import it: ``PrometheusPipelineEvents.attempt_layer``
(``pipeline_events.py``) hands it to ``build_pipeline``.
"""

from __future__ import annotations

import time
from typing import Any

from edge.call import Call, Reply
from edge.errors import EdgeError
from edge.observability import metrics
from edge.pipeline.chain import Next
from edge.pipeline.watched_stream import WatchedStream

_RECORDERS: dict[tuple[str, str], tuple[Any, Any]] = {}


def _record(call: Call, start: float, code: str) -> None:
    key = (call.upstream, code)
    found = _RECORDERS.get(key)  # one look-up for both labelled children
    if found is None:
        found = _RECORDERS[key] = (
            metrics.child(metrics.UPSTREAM_SECONDS, call.upstream),
            metrics.child(metrics.UPSTREAM_CALLS, call.upstream, code),
        )
    found[0].observe(time.perf_counter() - start)
    found[1].inc()


def _no_verdict(error: BaseException) -> None:
    return None


async def upstream_metrics(call: Call, next_: Next) -> Reply:
    """Codes are gRPC code numbers ("0" is OK), or ``http_5xx`` and the like for proxies.

    A stream counts as one call when it opens, and sits in ``edge_streams_in_flight``
    until it ends, however it ends (a dropped stream must not leave the gauge high).
    """
    start = time.perf_counter()
    try:
        reply = await next_(call)
    except EdgeError as error:
        _record(call, start, str(error.grpc_code))
        raise
    except BaseException:
        _record(call, start, "cancelled")
        raise
    _record(call, start, f"http_{reply.http.status // 100}xx" if reply.http else "0")
    if reply.stream is not None:
        open_streams = metrics.child(metrics.STREAMS, call.upstream)
        open_streams.inc()
        reply.stream = WatchedStream(reply.stream, lambda _: open_streams.dec(), _no_verdict)
    return reply
