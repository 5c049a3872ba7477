"""Assembling the application Hypercorn serves.

Quart is the application (lifespan, health, admin, anything that is not a gateway
route); the gateway's front door (``edge.assembly``, rebuilt by every reload) wraps
``app.asgi_app``, Quart's documented extension point, so gateway routes skip Quart's
per-request machinery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING

from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from edge import heap
from edge.admin import admin, on_admin_listener
from edge.assembly import Injected, assemble
from edge.call import Terminal
from edge.config import Config
from edge.config_source import ConfigSource
from edge.health import health
from edge.ingress import h2_resets, h11_continue, keep_alive
from edge.ingress.asgi import ASGIApp
from edge.leases import Lease, Shared
from edge.listener_tls import ListenerTls
from edge.observability.endpoints import metrics_blueprint
from edge.observability.middleware import ObserveASGI
from edge.openapi.views import docs
from edge.pipeline.chain import Layer
from edge.reload import Reloader, retire
from edge.routes import Routes, load_routes
from edge.state import GatewayState, LiveFront, StateHolder
from edge.transcode.response import status_body
from edge.workers import ROLLBACK_SIGNAL, WorkerGroup

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
    source: ConfigSource | None = None,
    group: WorkerGroup | None = None,
) -> Quart:
    """The gateway application; ``routes`` defaults to loading what the config names.

    ``layers`` defaults to the pipeline the config describes (auth, limits, breakers);
    tests pass their own. ``terminal`` replaces the gRPC terminal step (the benchmarks use
    a canned one to separate the gateway's own cost from the gRPC client's).
    ``span_exporter`` turns tracing on with that exporter whatever the config says (the
    tests pass an in-memory one). ``source``: where ``config`` was read from, so a reload
    reads it again (without one, a reload keeps ``config`` and reloads the descriptors).
    ``group``: this worker's place among ``edge serve --workers N`` (``edge.workers``).
    """
    # whatever Hypercorn serves this app gets the HTTP/2 reset budget, the deferred 100
    # and lean HTTP/1.1 exchanges, and keep-alive timeouts on loop timers
    h2_resets.install()
    h11_continue.install()
    keep_alive.install()
    if routes is None:
        routes = load_routes(config)
    for problem in routes.problems:
        log.warning("route problem: %s", problem)
    tracing = None
    if config.observability.tracing.exporter != "none" or span_exporter is not None:
        from edge.observability.tracing import Tracing  # imports opentelemetry

        tracing = Tracing(config.observability.tracing, span_exporter)
    injected = Injected(layers, terminal, tracing)
    app = Quart("edge")
    app.config["MAX_CONTENT_LENGTH"] = config.transcoding.max_body_bytes
    # what every generation's front hands the requests it does not claim
    quart: ASGIApp = app.asgi_app  # type: ignore[assignment]
    shared = Shared()
    first = assemble(config, routes, fallback=quart, lease=shared.lease(), injected=injected)
    holder = StateHolder(first)

    async def build(config: Config, routes: Routes, lease: Lease, generation: int) -> GatewayState:
        state = assemble(
            config, routes, fallback=quart, lease=lease, injected=injected, generation=generation
        )
        await state.start()  # new channels and pools, before the state is swapped in
        return state

    app.extensions["edge.state"] = holder
    if (
        config.admin.token is None
        and config.admin.bind is None
        and any(not bind.startswith(_LOOPBACK_BINDS) for bind in config.server.bind)
    ):
        log.warning(
            "admin endpoints answer loopback clients without a token; behind a same-host "
            "proxy that is everyone: set admin.token or admin.bind"
        )
    observe: ObserveASGI | None = None
    listener_tls = app.extensions["edge.listener_tls"] = ListenerTls()  # (cli.py fills it)

    def applied(new: Config) -> None:
        """The settings that live outside the state: log level, access log, and the
        listener's certificate (its files re-read; a broken pair keeps the running one)."""
        logging.getLogger().setLevel(new.observability.log_level)
        if observe is not None:
            observe.access_log_on = new.observability.access_log
        try:
            listener_tls.renew(new.server.certfile, new.server.keyfile)
        except (OSError, ssl.SSLError) as exc:
            log.error("the listener's certificate was not renewed, the running one stays: %s", exc)

    reloader = Reloader(holder, build, shared, source=source, applied=applied, group=group)
    app.extensions["edge.reloader"] = reloader
    app.extensions["edge.workers"] = group
    app.register_blueprint(admin)
    app.register_blueprint(health)
    if config.observability.metrics:
        app.register_blueprint(metrics_blueprint)
    if config.openapi.enabled:
        app.register_blueprint(docs)  # /openapi.json and /docs

    @app.before_serving
    async def open_upstreams() -> None:
        await holder.current.start()
        heap.settle("start-up")  # what start-up made stays: the collector skips it from now on
        reloader.start()  # the watcher and the reflection refresh, as the config asks
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            # SIGHUP reloads (not where signals cannot be handled here)
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, lambda: reloader.reload_soon("SIGHUP"))
            loop.add_signal_handler(ROLLBACK_SIGNAL, reloader.rollback_soon)
        if group is not None:
            group.report(reloader.outcome())
            if group.missed_reload():  # a SIGHUP came while this worker was starting
                reloader.reload_soon("SIGHUP while starting")

    @app.after_serving
    async def close_upstreams() -> None:
        await reloader.stop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            asyncio.get_running_loop().remove_signal_handler(ROLLBACK_SIGNAL)
        current = holder.current
        await retire(current)  # the last generation (earlier ones let go as they idled)
        if terminal is not None:
            await terminal.close()
        await shared.close()  # what a generation still serving a stream held
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

    # Hypercorn serves the current generation's front door (edge.assembly: the request
    # guard, CORS, and the protocol adapters in their order); Quart gets what none claims
    app.asgi_app = LiveFront(holder)  # type: ignore[method-assign, assignment]
    observed = config.observability
    if observed.metrics or observed.access_log or tracing is not None:
        # outermost: sees 404s and handshakes too
        observe = ObserveASGI(
            app.asgi_app,  # type: ignore[arg-type]
            access_log_on=observed.access_log,
            metrics_on=observed.metrics,
            tracer=tracing,
        )
        app.asgi_app = observe  # type: ignore[method-assign, assignment]
    return app
