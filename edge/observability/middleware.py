"""The outermost ASGI layer: request ids, W3C trace context, access logs, request metrics.

A transport concern, so a pure ASGI middleware (like hypercorn's ProxyFixMiddleware)
rather than a pipeline layer: it sees every request, including 404s, 405s and the
WebSocket handshakes the pipeline never gets. It makes sure each request carries an
``X-Request-Id`` (kept if the client sent one, returned in the response) and a
``traceparent`` (continued with a new span id for the hop upstream, or started), so the
header allowlist forwards both upstream. With tracing on, a ``RequestTracer`` opens the
request's server span here instead, and the trace context carried on is that span's
(the tracing layer then gives each upstream attempt its own client span's id). The
ingress fills ``scope["edge"]`` with what only it knows (route name, gRPC code, user)
for the log line and the labels.

Access logs are one JSON line per request; never tokens, never bodies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Awaitable
from typing import Any, Protocol

import orjson

from edge.ingress.asgi import REQUEST_ID, ASGIApp, Message, Receive, Scope, Send
from edge.observability import metrics

access_log = logging.getLogger("edge.access")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def continue_trace(traceparent: str | None, fresh: str) -> tuple[str, str]:
    """(trace id, traceparent for the upstream hop): a new span in the client's trace.

    ``fresh`` is at least 48 random hex digits: the new span id and, when the client sent
    no usable trace, the new trace id (one read of the OS's randomness per request).
    """
    span = fresh[:16]
    if traceparent is not None:
        match = _TRACEPARENT.match(traceparent.strip().lower())
        if match and match.group(1) != "ff" and match.group(2) != "0" * 32:
            return match.group(2), f"00-{match.group(2)}-{span}-{match.group(4)}"
    trace = fresh[16:48]
    return trace, f"00-{trace}-{span}-01"


class RequestSpan(Protocol):
    trace_id: str
    traceparent: str  # the trace context to carry on from here (the span as parent)

    def finish(self, status: int, info: dict[str, Any], error: BaseException | None) -> None: ...


class RequestTracer(Protocol):
    """``edge.observability.tracing.Tracing``, seen from here without importing it."""

    def start(
        self, scope: Scope, traceparent: str | None, tracestate: str | None
    ) -> RequestSpan: ...


class ObserveASGI:
    def __init__(
        self,
        app: ASGIApp,
        *,
        access_log_on: bool,
        metrics_on: bool,
        tracer: RequestTracer | None = None,
    ) -> None:
        self.app = app
        self.access_log_on = access_log_on
        self.metrics_on = metrics_on
        self.tracer = tracer  # None: no spans, and trace context is handled here alone
        # labelled children found once: a request's metrics are then two dict look-ups
        self._in_flight = {p: metrics.child(metrics.IN_FLIGHT, p) for p in ("http", "websocket")}
        self._answered: dict[tuple[str, str, int, str], tuple[Any, Any]] = {}

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            return self.app(scope, receive, send)
        request_id = traceparent = tracestate = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"traceparent":
                traceparent = value.decode("latin-1")
            elif name == b"tracestate":
                tracestate = value.decode("latin-1")
        # one getrandom per request: span id, trace id and request id (was three)
        fresh = os.urandom(32).hex()
        span = None
        if self.tracer is not None:  # the server span continues the client's trace
            span = self.tracer.start(scope, traceparent, tracestate)
            trace_id, upstream_parent = span.trace_id, span.traceparent
        else:
            trace_id, upstream_parent = continue_trace(traceparent, fresh)
        if traceparent is None:
            headers = [*scope["headers"], (b"traceparent", upstream_parent.encode())]
        else:
            headers = [(n, v) for n, v in scope["headers"] if n != b"traceparent"]
            headers.append((b"traceparent", upstream_parent.encode()))
        if request_id is None:
            request_id = fresh[48:]
            headers.append((b"x-request-id", request_id.encode()))
        scope["headers"] = headers
        REQUEST_ID.set(request_id)
        info: dict[str, Any] = {"route": "unmatched"}
        scope["edge"] = info
        protocol = "websocket" if kind == "websocket" else "http"
        seen = _Observed(self, scope, send, span, info, protocol, request_id, trace_id)
        if self.metrics_on:
            self._in_flight[protocol].inc()
        if kind == "websocket" and span is None:
            # Not awaited in a frame of our own: an idle socket would hold that frame for
            # hours (~0.6 KiB). The server runs each socket's app in a task of its own, so
            # the socket is over when that task is, and its line is written then. Not with
            # a span: it must end in the task's own context (OpenTelemetry detaches it
            # there), and with the app's exception, which the server swallows.
            task = asyncio.current_task()
            assert task is not None
            task.add_done_callback(seen.task_done)
            return self.app(scope, receive, seen.send)
        return self._observed(seen, scope, receive)

    async def _observed(self, seen: _Observed, scope: Scope, receive: Receive) -> None:
        failure: BaseException | None = None
        try:
            await self.app(scope, receive, seen.send)
        except BaseException as error:
            failure = error
            raise
        finally:
            seen.finished(failure)


class _Observed:
    """One request between its start and its access log line."""

    __slots__ = (
        "_send",
        "answer_bytes",
        "id_header",
        "info",
        "observer",
        "protocol",
        "request_id",
        "scope",
        "span",
        "start",
        "status",
        "trace_id",
    )

    def __init__(
        self,
        observer: ObserveASGI,
        scope: Scope,
        send: Send,
        span: RequestSpan | None,
        info: dict[str, Any],
        protocol: str,
        request_id: str,
        trace_id: str,
    ) -> None:
        self.observer = observer
        self.scope = scope
        self._send = send
        self.span = span
        self.info = info
        self.protocol = protocol
        self.request_id = request_id
        self.trace_id = trace_id
        self.id_header = (b"x-request-id", request_id.encode())
        self.status = 0
        self.answer_bytes = 0
        self.start = time.perf_counter()

    async def send(self, message: Message) -> None:
        """The app's ``send``: the status and size noted, the request id added."""
        kind = message["type"]
        if kind == "http.response.start" or kind == "websocket.http.response.start":
            self.status = message["status"]
            message = {**message, "headers": [*message.get("headers", ()), self.id_header]}
        elif kind == "http.response.body" or kind == "websocket.http.response.body":
            self.answer_bytes += len(message.get("body", b""))
        elif kind == "websocket.accept":
            self.status = 101
            message = {**message, "headers": [*message.get("headers", ()), self.id_header]}
        await self._send(message)

    def task_done(self, task: asyncio.Task[Any]) -> None:
        # the server logs what the app raised; the task itself ends quietly, or cancelled
        self.finished(None)

    def finished(self, failure: BaseException | None) -> None:
        elapsed = time.perf_counter() - self.start
        protocol, info, scope, observer = self.protocol, self.info, self.scope, self.observer
        status = self.status or (499 if protocol == "http" else 1006)
        if self.span is not None:
            self.span.finish(status, info, failure)
        if observer.metrics_on:
            observer._in_flight[protocol].dec()
            route = info["route"]
            method = scope.get("method", "GET")
            # any token is a method to h11: unknown ones share a label, or a client could
            # mint time series (and memory) at will
            label = method if method in _METHODS else "other"
            # the adapter names its protocol (grpc-web, connect) where the scope cannot
            served = info.get("protocol", protocol)
            key = (route, label, status, served)
            answered = observer._answered.get(key)
            if answered is None:
                answered = observer._answered[key] = (
                    metrics.child(metrics.REQUESTS, route, label, str(status), served),
                    metrics.child(metrics.REQUEST_SECONDS, route, served),
                )
            answered[0].inc()
            answered[1].observe(elapsed)
        if observer.access_log_on:
            client = scope.get("client")
            access_log.info(
                "%s",
                orjson.dumps(
                    {
                        "time": time.time(),
                        "protocol": info.get("protocol", protocol),
                        "method": scope.get("method", "GET"),
                        "path": scope["path"],
                        "route": info["route"],
                        "status": status,
                        "grpc_code": info.get("grpc_code"),
                        "duration_ms": round(elapsed * 1000, 3),
                        "bytes": self.answer_bytes,
                        "client": client[0] if client else None,
                        "user": info.get("user"),
                        "request_id": self.request_id,
                        "trace_id": self.trace_id,
                    }
                ).decode(),
            )
