"""How many streams may be open at once: in the whole gateway process, and per client.

An open stream holds an upstream call and its buffers (up to several MiB while its client
reads slowly; ``server.send_timeout`` ends one whose client stopped reading), so streams
are a resource a client can hoard: two hundred stalled readers once took a worker from
100 MiB to over 1 GiB. ``breakers.max_streams`` bounds them per upstream, to protect the
upstream; this layer bounds them per client, so that one client cannot take them all
(429, RESOURCE_EXHAUSTED: the client's own doing), and in total, to protect the gateway
(503, UNAVAILABLE). A client is its address as the rate limiter sees it (through
``rate_limiting.trusted_proxies``; an IPv6 client by its /64). Counts are per worker
process.

A stream is counted from its call to its end: its last message, its error, or its
client leaving (the ``WatchedStream`` reports every end exactly once). Client streams
answered with one message end when that answer comes.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge.call import Call, Reply
from edge.errors import EdgeError, Overloaded
from edge.pipeline.chain import Next
from edge.pipeline.credentials import Network, client_address
from edge.pipeline.limit_keys import subject_address
from edge.pipeline.watched_stream import WatchedStream


class TooManyStreams(EdgeError):
    """This client already has as many streams open as one client may."""

    grpc_code = 8  # RESOURCE_EXHAUSTED: 429


class StreamCounts:
    """Open streams, in total and per client key (sans-IO: the layer does the I/O)."""

    __slots__ = ("by_client", "per_client", "total", "total_limit")

    def __init__(self, total_limit: int | None, per_client: int | None) -> None:
        self.total_limit = total_limit
        self.per_client = per_client
        self.total = 0
        self.by_client: dict[str, int] = {}

    def take(self, key: str) -> None:
        """Count one more stream for ``key``, or raise without counting it."""
        if self.total_limit is not None and self.total >= self.total_limit:
            raise Overloaded(f"too many streams open in the gateway (at most {self.total_limit})")
        held = self.by_client.get(key, 0)
        if self.per_client is not None and held >= self.per_client:
            raise TooManyStreams(
                f"too many streams open from one client (at most {self.per_client}); "
                "end one before opening another"
            )
        self.total += 1
        self.by_client[key] = held + 1

    def release(self, key: str) -> None:
        self.total -= 1
        held = self.by_client[key] - 1
        if held:
            self.by_client[key] = held
        else:
            del self.by_client[key]  # the dict holds only clients with streams open


class StreamLimitLayer:
    def __init__(self, counts: StreamCounts, trusted: Sequence[Network]) -> None:
        self.counts = counts
        self.trusted = tuple(trusted)

    async def __call__(self, call: Call, next_: Next) -> Reply:
        method = call.method
        if method is None or not (method.server_streaming or method.client_streaming):
            return await next_(call)
        key = subject_address(client_address(call.client, call.headers, self.trusted))
        counts = self.counts
        counts.take(key)
        try:
            reply = await next_(call)
        except BaseException:
            counts.release(key)
            raise
        if reply.stream is None:
            counts.release(key)
            return reply
        reply.stream = WatchedStream(reply.stream, lambda _: counts.release(key), _no_verdict)
        return reply

    def snapshot(self) -> dict[str, object]:
        counts = self.counts
        return {
            "open": counts.total,
            "clients": len(counts.by_client),
            "max_streams": counts.total_limit,
            "max_streams_per_client": counts.per_client,
        }


def _no_verdict(error: BaseException) -> bool | None:
    return None
