"""OpenTelemetry spans: one SERVER span per request, one CLIENT span per upstream attempt.

Imported only when ``observability.tracing.exporter`` names an exporter (or a test hands
``create_app`` one), so a gateway without tracing never loads opentelemetry. Three hooks:

- ``Tracing.start`` (from the outermost ASGI middleware) opens the server span, continuing
  the client's ``traceparent`` when it sent a valid one, and makes it current for the
  request's task (and the tasks it creates, such as a WebSocket's call).
- ``Tracing.annotate``, the outermost pipeline layer, names the server span by the route
  and adds the RPC attributes, the gRPC code and (when configured) the user.
- ``Tracing.client_span``, the innermost pipeline layer, opens one client span per upstream
  attempt (so each retry is its own span) and rewrites the upstream ``traceparent`` from
  it: the span id the upstream sees as its parent is the client span's own, so the
  upstream's spans hang under it in the same trace. The middleware's own hop id (made
  when tracing is off) cannot serve here: retries need one id per attempt, and the SDK
  has no supported way to start a span with a chosen id.

A span over a stream ends when the stream does. Status follows the semantic conventions:
a client span is an error for any non-OK gRPC code or HTTP status >= 400; a server span
for HTTP 5xx or the server-fault gRPC codes (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED,
INTERNAL, UNAVAILABLE, DATA_LOSS); a 404 is the client's mistake, not the gateway's.
Spans go through a ``BatchSpanProcessor`` (a worker thread batches and exports them off
the event loop); ``shutdown`` flushes what is left when the server stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableSequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from edge.call import Call, Reply
from edge.config import TracingConfig
from edge.errors import EdgeError
from edge.ingress.asgi import Scope
from edge.pipeline.chain import Layer, Next

# server spans: the codes that mean the server (here, the gateway or its upstream) failed
_SERVER_FAULTS = frozenset({2, 4, 12, 13, 14, 15})
_PROPAGATOR = TraceContextTextMapPropagator()


def make_exporter(config: TracingConfig) -> SpanExporter:
    """The configured exporter; the OTLP one is imported only when chosen."""
    if config.exporter == "console":
        return ConsoleSpanExporter(service_name=config.service_name)
    if config.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=config.endpoint)
    raise ValueError(f"no span exporter for {config.exporter!r}")


class ServerSpan:
    """One request's server span, current in its task until ``finish``."""

    __slots__ = ("_token", "span", "trace_id", "traceparent")

    def __init__(self, span: Span) -> None:
        self.span = span
        context = span.get_span_context()
        self.trace_id = f"{context.trace_id:032x}"
        # what the request carries on from here: the server span as parent
        self.traceparent = f"00-{self.trace_id}-{context.span_id:016x}-{context.trace_flags:02x}"
        self._token = otel_context.attach(trace.set_span_in_context(span))

    def finish(self, status: int, info: dict[str, Any], error: BaseException | None) -> None:
        span = self.span
        try:
            if span.is_recording():
                route = info.get("route", "unmatched")
                if route != "unmatched":
                    span.update_name(route)
                span.set_attribute("http.response.status_code", status)
                # (a failed call's status was set by ``annotate``, WebSockets included)
                if error is not None:
                    span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                elif status >= 500 and _unset(span):
                    span.set_status(Status(StatusCode.ERROR))
        finally:
            span.end()
            otel_context.detach(self._token)


class Tracing:
    """The tracer provider and the hooks the middleware and the pipeline call."""

    def __init__(self, config: TracingConfig, exporter: SpanExporter | None = None) -> None:
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name}),
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
        )
        self.provider.add_span_processor(
            BatchSpanProcessor(exporter if exporter is not None else make_exporter(config))
        )
        # a provider of our own, not the global one: two apps in a process stay apart
        self.tracer = self.provider.get_tracer("edge")
        self.record_user = config.record_user

    def install(self, layers: MutableSequence[Layer]) -> None:
        """Add the pipeline hooks: ``annotate`` outermost, ``client_span`` innermost."""
        layers.insert(0, self.annotate)
        layers.append(self.client_span)

    async def shutdown(self) -> None:
        """Export what is still batched, off the loop (the exporter may block on I/O)."""
        await asyncio.to_thread(self.provider.shutdown)

    # -- the server span (from the ASGI middleware) ------------------------------------

    def start(self, scope: Scope, traceparent: str | None, tracestate: str | None) -> ServerSpan:
        parent = None
        if traceparent is not None:
            carrier = {"traceparent": traceparent}
            if tracestate is not None:
                carrier["tracestate"] = tracestate
            parent = _PROPAGATOR.extract(carrier)
        method = scope.get("method", "GET")
        attributes: dict[str, str | int] = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
        }
        client = scope.get("client")
        if client:
            attributes["network.peer.address"] = client[0]
        span = self.tracer.start_span(
            method, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        return ServerSpan(span)

    # -- the pipeline layers -------------------------------------------------------------

    async def annotate(self, call: Call, next_: Next) -> Reply:
        """Name the server span by the route and add what only the call knows."""
        span = trace.get_current_span()
        if not span.is_recording():
            return await next_(call)
        span.update_name(call.route)
        method = call.method
        if method is not None:
            span.set_attributes(
                {"rpc.system": "grpc", "rpc.service": method.service, "rpc.method": method.name}
            )
        try:
            reply = await next_(call)
        except EdgeError as error:
            if method is not None:
                _server_outcome(span, error)
            elif error.status >= 500:
                span.set_status(Status(StatusCode.ERROR, error.message))
            raise
        finally:
            if self.record_user:
                claims = call.state.get("claims")
                if claims and claims.get("sub") is not None:
                    span.set_attribute("enduser.id", str(claims["sub"]))
        if method is not None:
            if reply.stream is not None:
                reply.stream = _server_stream(reply.stream, span)
            else:
                span.set_attribute("rpc.grpc.status_code", 0)
        return reply

    async def client_span(self, call: Call, next_: Next) -> Reply:
        """One CLIENT span per upstream attempt; its id goes upstream in ``traceparent``."""
        method = call.method
        request = call.request
        if method is not None:
            name = f"{method.service}/{method.name}"
            attributes: dict[str, str | int] = {
                "rpc.system": "grpc",
                "rpc.service": method.service,
                "rpc.method": method.name,
                "edge.upstream": call.upstream,
            }
        else:  # a proxied call: the request is an HttpRequest
            verb = getattr(request, "method", "GET")
            name = f"{verb} {call.route}"
            attributes = {
                "http.request.method": verb,
                "url.path": getattr(request, "path", ""),
                "edge.upstream": call.upstream,
            }
        span = self.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        context = span.get_span_context()
        parent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
        call.metadata = [(k, parent if k == "traceparent" else v) for k, v in call.metadata]
        try:
            reply = await next_(call)
        except BaseException as error:
            _fail(span, error, method is not None)
            span.end()
            raise
        if reply.stream is not None:
            reply.stream = _client_stream(reply.stream, span, method is not None)
            return reply
        http = reply.http
        if http is not None:
            span.set_attribute("http.response.status_code", http.status)
            if http.status >= 400:
                span.set_status(Status(StatusCode.ERROR))
            if http.upgrade is None:  # a relayed WebSocket ends its span at the handshake
                http.body = _client_stream(http.body, span, False)
                return reply
        elif method is not None:
            span.set_attribute("rpc.grpc.status_code", 0)
        span.end()
        return reply


def _unset(span: Span) -> bool:
    status = getattr(span, "status", None)  # an SDK span's; the API type does not promise one
    return status is None or status.status_code is StatusCode.UNSET


def _fail(span: Span, error: BaseException, rpc: bool) -> None:
    if isinstance(error, EdgeError):
        if rpc:
            span.set_attribute("rpc.grpc.status_code", error.grpc_code)
        span.set_status(Status(StatusCode.ERROR, error.message))
    else:
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))


async def _client_stream(stream: AsyncIterator[Any], span: Span, rpc: bool) -> AsyncIterator[Any]:
    """Pass the stream through; the client span ends with it, however it ends."""
    try:
        async for item in stream:
            yield item
        if rpc:
            span.set_attribute("rpc.grpc.status_code", 0)
    except BaseException as error:
        _fail(span, error, rpc)
        raise
    finally:
        span.end()


async def _server_stream(stream: AsyncIterator[Any], span: Span) -> AsyncIterator[Any]:
    """The server span's gRPC code for a stream, known when the stream ends."""
    try:
        async for item in stream:
            yield item
    except EdgeError as error:
        _server_outcome(span, error)
        raise
    span.set_attribute("rpc.grpc.status_code", 0)


def _server_outcome(span: Span, error: EdgeError) -> None:
    span.set_attribute("rpc.grpc.status_code", error.grpc_code)
    if error.grpc_code in _SERVER_FAULTS:
        span.set_status(Status(StatusCode.ERROR, error.message))
