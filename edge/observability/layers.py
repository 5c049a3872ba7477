"""The innermost pipeline layer when metrics are on: upstream call counts and latency."""

from __future__ import annotations

import time

from edge.call import Call, Reply
from edge.errors import EdgeError
from edge.observability import metrics
from edge.pipeline.chain import Next


def _record(call: Call, start: float, code: str) -> None:
    metrics.child(metrics.UPSTREAM_SECONDS, call.upstream).observe(time.perf_counter() - start)
    metrics.child(metrics.UPSTREAM_CALLS, call.upstream, code).inc()


async def upstream_metrics(call: Call, next_: Next) -> Reply:
    """Codes are gRPC code numbers ("0" is OK), or ``http_5xx`` and the like for proxies."""
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
    return reply
