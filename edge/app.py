"""Assembling the application Hypercorn serves.

Quart is the application (lifespan, health, anything that is not a gateway route);
the transcoding ingress wraps ``app.asgi_app``, Quart's documented extension point, so
gateway routes skip Quart's per-request machinery. The pipeline is built here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING

from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from edge.admin import admin, on_admin_listener
from edge.call import Terminal
from edge.config import Config
from edge.health import health
from edge.ingress import h2_resets, h11_continue
from edge.ingress.calls import CallFactory
from edge.ingress.compression import Compression
from edge.ingress.connect import ConnectAdapter
from edge.ingress.cors import CorsRules, compile_policy
from edge.ingress.dispatch import Adapter, Dispatch
from edge.ingress.grpc_web import GrpcWebAdapter
from edge.ingress.proxy import ProxyAdapter
from edge.ingress.request_guard import RequestGuardASGI, RequestRules
from edge.ingress.transcoded import TranscodedAdapter
from edge.ingress.websocket import WebSocketAdapter
from edge.ingress.websocket_policy import WebSocketPolicy
from edge.observability.endpoints import metrics_blueprint
from edge.observability.middleware import ObserveASGI
from edge.observability.pipeline_events import PrometheusPipelineEvents
from edge.openapi.views import docs
from edge.pipeline.build import Pipeline, build_pipeline
from edge.pipeline.chain import Layer, build_chain
from edge.pipeline.credentials import parse_networks
from edge.pipeline.events import NO_EVENTS
from edge.reload import Reloader
from edge.routes import Routes, load_routes
from edge.routing.prefix_table import compile_proxy_routes
from edge.state import GatewayState, StateHolder
from edge.transcode.response import status_body
from edge.upstream.grpc import GrpcTerminal
from edge.upstream.headers import HeaderPolicy
from edge.upstream.http_proxy import HttpProxyTerminal
from edge.upstream_settings import upstream_settings

if TYPE_CHECKING:  # opentelemetry is imported only when tracing is configured
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("edge")
_LOOPBACK_BINDS = ("127.", "localhost", "[::1]", "unix:")

# Quart-side errors (unknown paths and the like) in google.rpc.Status terms.
_GRPC_CODE_BY_HTTP_STATUS = {404: 5, 405: 12, 413: 8, 400: 3, 401: 16, 403: 7, 429: 8}


def _json_error(status: int, code: int, message: str) -> Response:
    return Response(status_body(code, message), status=status, content_type="application/json")


def create_app(
    config: Config,
    routes: Routes | None = None,
    layers: Sequence[Layer] | None = None,
    terminal: Terminal | None = None,
    span_exporter: SpanExporter | None = None,
) -> Quart:
    """The gateway application; ``routes`` defaults to loading what the config names.

    ``layers`` defaults to the pipeline the config describes (auth, limits, breakers);
    tests pass their own. ``terminal`` replaces the gRPC terminal step (the benchmarks use
    a canned one to separate the gateway's own cost from the gRPC client's).
    ``span_exporter`` turns tracing on with that exporter whatever the config says (the
    tests pass an in-memory one).
    """
    # whatever Hypercorn serves this app gets the HTTP/2 reset budget and the deferred 100
    h2_resets.install()
    h11_continue.install()
    if routes is None:
        routes = load_routes(config)
    for problem in routes.problems:
        log.warning("route problem: %s", problem)
    if terminal is None:
        terminal = GrpcTerminal(upstream_settings(config))
    pipeline = (
        build_pipeline(
            config,
            sidecar_policies=routes.sidecar_policies,
            events=PrometheusPipelineEvents() if config.observability.metrics else NO_EVENTS,
        )
        if layers is None
        else Pipeline(layers=list(layers))
    )
    tracing = None
    if config.observability.tracing.exporter != "none" or span_exporter is not None:
        from edge.observability.tracing import Tracing  # imports opentelemetry

        tracing = Tracing(config.observability.tracing, span_exporter)
        tracing.install(pipeline.layers)
    layers = pipeline.layers
    calls = CallFactory(
        HeaderPolicy.of(config.headers.forward_request, config.headers.forward_response),
        token_query=config.auth.token_query_parameter,
        token_cookie=config.auth.token_cookie,
        trusted=parse_networks(config.rate_limiting.trusted_proxies),
    )
    websocket_policy = WebSocketPolicy.of(
        config.websocket,
        config.server.send_timeout,
        compile_policy(config.cors) if config.cors is not None else None,
    )
    holder = StateHolder(
        GatewayState(
            routes=routes,
            chain=build_chain(layers, terminal),
            calls=calls,
            max_body_bytes=config.transcoding.max_body_bytes,
            websocket=websocket_policy,
            send_timeout=config.server.send_timeout,
            pipeline=pipeline,
            compression=Compression(
                config.compression,
                [(policy.match, policy.compression) for policy in config.policies],
                config.default_policy.compression,
                max_body_bytes=config.transcoding.max_body_bytes,
            ),
        )
    )
    proxy = HttpProxyTerminal(config.http_upstreams) if config.proxy_routes else None
    app = Quart("edge")
    app.config["MAX_CONTENT_LENGTH"] = config.transcoding.max_body_bytes
    app.extensions["edge.state"] = holder
    app.extensions["edge.pipeline"] = pipeline
    app.extensions["edge.config"] = config
    if (
        config.admin.token is None
        and config.admin.bind is None
        and any(not bind.startswith(_LOOPBACK_BINDS) for bind in config.server.bind)
    ):
        log.warning(
            "admin endpoints answer loopback clients without a token; behind a same-host "
            "proxy that is everyone: set admin.token or admin.bind"
        )
    reloader = Reloader(
        config,
        holder,
        terminal if isinstance(terminal, GrpcTerminal) else None,
        policies=pipeline.index,
    )
    app.extensions["edge.reloader"] = reloader
    app.extensions["edge.terminal"] = terminal
    app.register_blueprint(admin)
    app.register_blueprint(health)
    if config.observability.metrics:
        app.register_blueprint(metrics_blueprint)
    if config.openapi.enabled:
        app.register_blueprint(docs)  # /openapi.json and /docs

    @app.before_serving
    async def open_upstreams() -> None:
        terminal.open(holder.current.routes.upstream_methods())
        if proxy is not None:
            await proxy.open()
        if config.descriptors.watch:
            reloader.start_watching(config.descriptors.watch_interval)
        reloader.start_refreshing()  # reflection, whether or not files are watched
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            # SIGHUP reloads the descriptors (not where signals cannot be handled here)
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGHUP, lambda: reloader.reload_soon("SIGHUP")
            )

    @app.after_serving
    async def close_upstreams() -> None:
        await reloader.stop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        await terminal.close()
        if proxy is not None:
            await proxy.close()
        await pipeline.close()
        if tracing is not None:
            await tracing.shutdown()  # flush the spans still batched

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 405 and request.path.startswith("/admin/") and not on_admin_listener():
            status = 404  # off the admin listener the admin routes do not exist, any method
        code = _GRPC_CODE_BY_HTTP_STATUS.get(status, 2)
        message = "no route for this path" if status == 404 else (error.description or error.name)
        return _json_error(status, code, message)

    @app.errorhandler(Exception)
    async def internal_error(error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        return _json_error(500, 13, "internal error")

    # the front door: each protocol's adapter claims its requests, Quart gets the rest
    # (gRPC-Web and Connect first: on a shared path, their headers tell them apart; the
    # proxy last, so a transcoded route wins over a proxy prefix)
    proxy_adapter = (
        ProxyAdapter(
            compile_proxy_routes(config.proxy_routes, config.http_upstreams),
            build_chain(layers, proxy),  # through the same layers as gRPC calls
            calls,
            pipeline,
            websocket_policy=websocket_policy,
            paths=config.paths,
        )
        if proxy is not None
        else None
    )
    adapters: list[Adapter] = []
    if config.grpc_web.enabled:
        # gRPC-Web at a path no method serves is UNIMPLEMENTED, unless a proxy route takes it
        proxied = (
            (lambda scope, path: proxy_adapter.claim(scope, path) is not None)
            if proxy_adapter is not None
            else None
        )
        adapters.append(GrpcWebAdapter(holder, proxied=proxied))
    if config.connect.enabled:
        adapters.append(ConnectAdapter(holder, config.connect))
    adapters += [TranscodedAdapter(holder), WebSocketAdapter(holder)]
    if proxy_adapter is not None:
        adapters.append(proxy_adapter)
    cors = CorsRules.of(
        config.cors,
        [(policy.match, policy.cors) for policy in config.policies],
        config.default_policy.cors,
    )
    rules = RequestRules(
        merge_slashes=config.paths.merge_slashes,
        underscores=config.headers.underscores,
        body_idle_timeout=config.server.body_idle_timeout,
        body_min_rate=config.server.body_min_rate,
    )
    app.asgi_app = RequestGuardASGI(  # type: ignore[method-assign, assignment]
        Dispatch(adapters, app.asgi_app, cors),  # type: ignore[arg-type]
        rules,
    )
    observed = config.observability
    if observed.metrics or observed.access_log or tracing is not None:
        # outermost: sees 404s and handshakes too
        app.asgi_app = ObserveASGI(  # type: ignore[method-assign, assignment]
            app.asgi_app,  # type: ignore[arg-type]
            access_log_on=observed.access_log,
            metrics_on=observed.metrics,
            tracer=tracing,
        )
    return app
