"""The ``edge`` command: serve, check, demo.

``serve`` runs Hypercorn with the app: in this process for one worker; for several, a
small supervisor binds the sockets once and starts N worker processes, each building its
app from the same config. SIGTERM or SIGINT drains (see ``Drain``): listeners close at
once, requests and streams in flight get ``server.graceful_timeout`` to finish and are
cancelled after it (their upstream calls too), WebSockets are closed with 1001 and an
UNAVAILABLE status frame; a second signal cuts the drain short. Exit status 0 after a
drain.
``check`` loads config and descriptors exactly as ``serve`` would and prints the route
table or the problems, exiting 1 on any problem, so CI can gate a proto change on it.
Everything it prints, log lines included, has its URLs redacted (``edge.redaction``): CI
logs are read by more people than the config's secrets are meant for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Coroutine, Iterator
from multiprocessing.connection import wait as wait_for_sentinels
from pathlib import Path
from types import FrameType
from typing import Any

from hypercorn.config import Sockets

from edge import heap
from edge.config import Config, ServerConfig, load_config
from edge.config_diff import route_rows, what_changes
from edge.config_source import ConfigSource
from edge.errors import ConfigError
from edge.ingress.asgi import ASGIApp, Receive, Scope, Send
from edge.ingress.h2_resets import EdgeHypercornConfig
from edge.ingress.websocket_policy import SHUTDOWN_STATE_KEY
from edge.redaction import redact_config, redact_text, redact_url
from edge.routes import load_routes
from edge.workers import ROLLBACK_SIGNAL, WorkerGroup, bump_epoch, listeners_per_worker

_CONFIG_ENV = "EDGE_CONFIG"
SHUTDOWN_EXTENSION = "edge.shutdown"  # app.extensions: the drain's asyncio.Event
# Hypercorn's own drain wait runs this much longer than ours, so ours always cuts first.
_HYPERCORN_MARGIN_SECONDS = 1.0
# A worker can get one stop twice: from its process group (Ctrl-C, systemd) and forwarded
# by the supervisor. Only a signal later than this after the first cuts the drain short.
_SAME_SIGNAL_SECONDS = 1.0

log = logging.getLogger("edge.serve")


def hypercorn_config(config: Config) -> EdgeHypercornConfig:
    server = config.server
    hc = EdgeHypercornConfig()
    hc.h2_reset_burst = server.h2_reset_burst
    hc.h2_reset_rate = server.h2_reset_rate
    hc.bind = list(server.bind)
    if config.admin.bind is not None:
        hc.bind.append(config.admin.bind)
    hc.workers = server.workers
    hc.graceful_timeout = server.graceful_timeout
    if server.certfile is not None:
        hc.certfile = str(server.certfile)
        hc.keyfile = str(server.keyfile) if server.keyfile else None
        hc.ca_certs = str(server.ca_certs) if server.ca_certs else None
    hc.worker_class = server.event_loop
    hc.websocket_max_message_size = config.websocket.max_message_bytes
    hc.websocket_ping_interval = config.websocket.ping_interval
    hc.accesslog = "-" if server.access_log else None
    hc.errorlog = "-"
    return hc


def _config_path(value: str | None) -> Path | None:
    if value:
        return Path(value)
    env = os.environ.get(_CONFIG_ENV)
    return Path(env) if env else None


class Drain:
    """One process's graceful shutdown: a signal the app can see, and a deadline.

    Hypercorn's own shutdown (on its ``shutdown_trigger``) closes the listeners, closes
    idle keep-alive connections, lets requests in flight finish and cancels what is left
    after ``graceful_timeout``. It does not tell WebSocket sessions (they would run on and
    then be dropped without a close frame), and on Python 3.12+ its wait for the listeners
    (``Server.wait_closed``) waits for every connection, so its timeout is never reached
    (pgjones/hypercorn#308). So this wrapper tracks the app's request tasks itself: when
    the drain begins it sets ``started`` (in the lifespan state, where the WebSocket bridge
    finds it, and in ``app.extensions``), and at ``grace`` seconds it cancels the requests
    still running, which cancels their upstream calls and lets Hypercorn's wait end.

    One more thing holds Hypercorn's wait open: the ping loop of each HTTP/2 WebSocket
    (``websocket_ping_interval``; HTTP/1.1 ones are pinged by one timer per worker,
    ``edge.ingress.ws_exchange``, which holds nothing open) only sees its socket closed
    when it next wakes, up to the interval (20 s) later. Once no request is left, those
    loops are cancelled (found by name: Hypercorn 0.18's ``WSStream._send_pings``; were
    it renamed, the drain would still end, at Hypercorn's own timeout).
    """

    def __init__(self, app: ASGIApp, grace: float) -> None:
        self.app = app
        # Quart's own __call__ only calls asgi_app (the gateway's front, set by create_app
        # before this wrapper is made): requests go straight to it
        self.front: ASGIApp = getattr(app, "asgi_app", app)
        self.grace = grace
        self.started = asyncio.Event()
        self.running: set[asyncio.Task[Any]] = set()
        self.began_at: float | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The app's coroutine, its task counted as running until it ends.

        Not a coroutine itself, and Quart's own ``__call__`` (which only calls
        ``asgi_app``, the gateway's front) skipped: a request holds two frames less, and
        an open WebSocket too, for as long as it is open. The server runs each request in
        a task of its own, so the task's end is the request's.
        """
        if scope["type"] == "lifespan":
            state = scope.get("state")
            if state is not None:  # copied into every request's scope["state"] by Hypercorn
                state[SHUTDOWN_STATE_KEY] = self.started
            return self.app(scope, receive, send)
        task = asyncio.current_task()
        assert task is not None
        self.running.add(task)
        task.add_done_callback(self._ended)
        return self.front(scope, receive, send)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self.running.discard(task)
        if not self.running and self.began_at is not None:
            _stop_ping_loops()

    def begin(self) -> None:
        """Start draining (idempotent): WebSockets close now, the rest get ``grace``."""
        if self.started.is_set():
            return
        self.began_at = time.monotonic()
        self.started.set()
        log.info(
            "draining: %d requests/streams in flight, up to %gs", len(self.running), self.grace
        )
        self._deadline = asyncio.get_running_loop().call_later(self.grace, self.cut)
        if not self.running:
            _stop_ping_loops()

    def cut(self) -> None:
        """Cancel every request still running (the deadline, or a second signal)."""
        if self._deadline is not None:
            self._deadline.cancel()
        if self.running:
            log.warning("drain: cancelling %d requests/streams still running", len(self.running))
        for task in self.running:
            task.cancel()


def _stop_ping_loops() -> None:
    """Cancel Hypercorn's WebSocket ping loops (see ``Drain``); only while draining."""
    for task in asyncio.all_tasks():
        if getattr(task.get_coro(), "__qualname__", "") == "WSStream._send_pings":
            task.cancel()


async def serve_in_process(
    config: Config,
    extra: list[object] | None = None,
    sockets: Sockets | None = None,
    source: ConfigSource | None = None,
    group: WorkerGroup | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM, then drain; ``extra`` servers (grpc.aio) stop after.

    ``sockets`` are the listeners a supervisor bound for its workers; without them the
    binds in the config are opened here.
    """
    from hypercorn.app_wrappers import ASGIWrapper
    from hypercorn.asyncio.run import worker_serve

    from edge.app import create_app

    stop = asyncio.Event()
    drain: Drain | None = None
    loop = asyncio.get_running_loop()
    first_signal_at = 0.0

    def on_signal() -> None:
        nonlocal first_signal_at
        if not stop.is_set():
            first_signal_at = loop.time()
            stop.set()
        elif drain is not None and loop.time() - first_signal_at > _SAME_SIGNAL_SECONDS:
            log.warning("second signal: cutting the drain short")
            drain.cut()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    heap.enable()  # freeze the long-lived heap once started (edge.heap)
    app = create_app(config, source=source, group=group)
    drain = Drain(app, config.server.graceful_timeout)  # type: ignore[arg-type]
    app.extensions[SHUTDOWN_EXTENSION] = drain.started

    async def shutdown_trigger() -> None:
        await stop.wait()
        drain.begin()  # before Hypercorn closes anything: sessions are told first

    hc = hypercorn_config(config)
    hc.listener_tls = app.extensions["edge.listener_tls"]  # renewed on reload
    hc.graceful_timeout = config.server.graceful_timeout + _HYPERCORN_MARGIN_SECONDS
    try:
        await worker_serve(
            ASGIWrapper(drain),  # type: ignore[arg-type]
            hc,
            sockets=sockets,
            shutdown_trigger=shutdown_trigger,
        )
    finally:
        for server in extra or ():
            await server.stop(grace=1.0)  # type: ignore[attr-defined]
        if drain.began_at is not None:
            log.info("stopped %.2fs after the signal", time.monotonic() - drain.began_at)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": record.created,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(config: Config) -> None:
    """Level and format from ``observability``; access lines are JSON either way."""
    handler = logging.StreamHandler()
    if config.observability.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=config.observability.log_level, handlers=[handler], force=True)


def _worker(
    config: Config, sockets: Sockets, source: ConfigSource | None, group: WorkerGroup
) -> None:
    """One worker process of ``serve_workers`` (started with the spawn method)."""
    signal.signal(signal.SIGTERM, _exit_before_serving)  # until the loop's handler is in
    configure_logging(config)
    run_with_loop(
        serve_in_process(config, sockets=sockets, source=source, group=group),
        config.server.event_loop,
    )


def _exit_before_serving(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve_workers(config: Config, source: ConfigSource | None = None) -> int:
    """Bind once, run ``server.workers`` worker processes, drain them all on a signal.

    Why not Hypercorn's ``run``: it keeps its copy of the listening sockets open until
    every worker has drained, so the kernel keeps completing handshakes nobody will
    accept; and its workers only poll for the shutdown. Here a signal closes this
    process's listeners at once and is forwarded to every worker, each of which drains as
    a single-worker ``edge serve`` does. A worker that dies on its own stops the rest and
    the exit status is 1, so the supervisor above (systemd, Kubernetes) restarts us whole.
    """
    sockets = hypercorn_config(config).create_sockets()
    shared_metrics = None
    if config.observability.metrics and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # before any worker imports prometheus_client: their counts then add up
        shared_metrics = tempfile.mkdtemp(prefix="edge-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared_metrics
    from edge.observability import metrics

    context = multiprocessing.get_context("spawn")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited; workers install their own
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the handlers below: not fatal
    signal.signal(ROLLBACK_SIGNAL, signal.SIG_IGN)  # (inherited by workers still starting)
    # the workers' shared files: reload epochs and outcomes (edge.workers)
    run_folder = Path(tempfile.mkdtemp(prefix="edge-run-"))
    count = config.server.workers
    listeners = listeners_per_worker(sockets, count)  # one SO_REUSEPORT set per worker
    workers = [
        context.Process(
            target=_worker,
            args=(
                config,
                listeners[index],
                source,
                WorkerGroup(run_folder, index, count, os.getpid()),
            ),
            name=f"edge-worker-{index}",
        )
        for index in range(count)
    ]
    for worker in workers:
        worker.start()
    stopping = False

    def stop(signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        nonlocal stopping
        if not stopping:
            log.info("stopping: closing the listeners, draining %d workers", len(workers))
        stopping = True
        for listener in listeners:
            for sock in (*listener.secure_sockets, *listener.insecure_sockets):
                sock.close()  # our copies; each worker closes its own as its drain begins
        for worker in workers:
            if worker.pid is not None and worker.exitcode is None:
                with contextlib.suppress(ProcessLookupError):  # exited since the check
                    os.kill(worker.pid, signal.SIGTERM)  # a later one cuts their drain short

    def reload(signum: int = signal.SIGHUP, frame: FrameType | None = None) -> None:
        """SIGHUP to the supervisor reloads every worker (each reads the config itself);
        the epoch tells a worker still starting, which cannot take the signal yet."""
        bump_epoch(run_folder)
        for worker in workers:
            if worker.pid is not None and worker.exitcode is None and not stopping:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGHUP)

    def rollback(signum: int = ROLLBACK_SIGNAL, frame: FrameType | None = None) -> None:
        """A rollback asked for by a worker (POST /admin/rollback): passed to every one."""
        for worker in workers:
            if worker.pid is not None and worker.exitcode is None and not stopping:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, ROLLBACK_SIGNAL)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, reload)
    signal.signal(ROLLBACK_SIGNAL, rollback)
    status = 0
    running = list(workers)
    while running:
        wait_for_sentinels([worker.sentinel for worker in running])
        for worker in [w for w in running if w.exitcode is not None]:
            worker.join()
            running.remove(worker)
            if worker.pid is not None:
                metrics.mark_process_dead(worker.pid)
            if worker.exitcode != 0 or not stopping:
                log.error("%s exited with %s", worker.name, worker.exitcode)
                status = 1
                if not stopping:
                    stop()
    if shared_metrics is not None:
        shutil.rmtree(shared_metrics, ignore_errors=True)
    shutil.rmtree(run_folder, ignore_errors=True)
    return status


def _serve(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.bind:
        overrides["bind"] = args.bind
    if args.workers:
        overrides["workers"] = args.workers
    # kept, so that a reload reads the file again as this did (edge.config_source)
    source = ConfigSource(_config_path(args.config), overrides)
    config = source.load()
    configure_logging(config)
    if config.server.workers == 1:
        run_with_loop(serve_in_process(config, source=source), config.server.event_loop)
        return 0
    return serve_workers(config, source)


def run_with_loop(coro: Coroutine[Any, Any, None], loop: str) -> None:
    """Run on the event loop the server section chose (the benchmarks use it too)."""
    if loop == "uvloop":
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)


class _RedactingFormatter(logging.Formatter):
    """Another formatter's lines with their URLs redacted (for ``edge check``'s logs)."""

    def __init__(self, wrapped: logging.Formatter | None) -> None:
        super().__init__()
        self.wrapped = wrapped or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(self.wrapped.format(record))


@contextlib.contextmanager
def _redacted_logs() -> Iterator[None]:
    """While it lasts, the root logger's handlers redact what they print."""
    handlers = list(logging.getLogger().handlers)
    formatters = [handler.formatter for handler in handlers]
    for handler, formatter in zip(handlers, formatters, strict=True):
        handler.setFormatter(_RedactingFormatter(formatter))
    try:
        yield
    finally:
        for handler, formatter in zip(handlers, formatters, strict=True):
            handler.setFormatter(formatter)


def _say(line: str, *, problem: bool = False) -> None:
    """One line of ``edge check``'s output, its URLs redacted, whatever it came from."""
    print(redact_text(line), file=sys.stderr if problem else sys.stdout)


def _check(args: argparse.Namespace) -> int:
    with _redacted_logs():  # what loading logs is output too
        config = load_config(_config_path(args.config))
        routes = load_routes(config)
    width = max((len(r.http_method) for r in routes.routes), default=4)
    for route in sorted(routes.routes, key=lambda r: (r.template, r.http_method)):
        target = f"{route.method.full_name} @ {route.upstream}"
        _say(f"{route.http_method:<{width}} {route.template}  ->  {target}")
    for name, upstream in config.upstreams.items():
        client = "lean" if upstream.lean else "grpcio"
        how = f"client: {upstream.client}" + (f" -> {client}" if upstream.client == "auto" else "")
        addresses = ", ".join(redact_url(address) for address in upstream.all_addresses)
        _say(f"upstream {name}: {addresses}; unary calls by {client} ({how})")
    for name, http in config.http_upstreams.items():  # URLs shown redacted (edge.redaction)
        _say(f"http upstream {name}: {', '.join(redact_url(url) for url in http.all_urls)}")
    for issuer in config.auth.issuers:
        if issuer.jwks_url is not None:
            _say(f"issuer {issuer.issuer}: keys from {redact_url(issuer.jwks_url)}")
    if config.rate_limiting.backend == "redis":
        _say(f"rate limiting: redis at {redact_url(config.rate_limiting.redis_url)}")
    for service in routes.unrouted:
        _say(f"unrouted: {service} (no entry under services, and no '*')")
    for note in routes.notes:
        _say(f"note: {note}")
    for problem in routes.problems:
        _say(f"problem: {problem}", problem=True)
    _say(f"{len(routes.routes)} routes, {len(routes.problems)} problems", problem=True)
    if args.against is not None:
        token = args.admin_token or os.environ.get("EDGE_ADMIN_TOKEN")
        running_config = _admin_json(args.against, "/admin/config", token)
        running_routes = _admin_json(args.against, "/admin/routes", token)
        new_config = redact_config(config.model_dump(mode="json"))
        changes = what_changes(running_config, running_routes, new_config, route_rows(routes))
        _say(f"against {args.against}: " + (f"{len(changes)} changes" if changes else "no changes"))
        for change in changes:
            _say(f"  {change}")
    return 1 if routes.problems else 0


def _admin_json(base: str, path: str, token: str | None) -> Any:
    """One admin endpoint of a running gateway, as ``edge check --against`` reads it."""
    import urllib.error
    import urllib.request

    if not base.startswith(("http://", "https://")):
        raise ConfigError(f"--against needs an http:// or https:// address, not {base!r}")
    request = urllib.request.Request(base.rstrip("/") + path)
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        raise ConfigError(f"{base}{path} answered {exc.code}: is the admin token right?") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {base}{path}: {exc}") from exc


def _openapi(args: argparse.Namespace) -> int:
    """The OpenAPI document /openapi.json would serve, to a file or stdout."""
    import orjson

    from edge.openapi import build_openapi

    config = load_config(_config_path(args.config))
    routes = load_routes(config)
    for problem in routes.problems:
        print(f"problem: {problem}", file=sys.stderr)
    text = orjson.dumps(build_openapi(routes, config), option=orjson.OPT_INDENT_2) + b"\n"
    if args.output in (None, "-"):
        sys.stdout.buffer.write(text)
    else:
        Path(args.output).write_bytes(text)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from edge.config import DEMO_CONFIG, parse_config
    from edge.demo.library import start_library

    async def main() -> None:
        upstream, port = await start_library(f"127.0.0.1:{args.upstream_port}")
        data = dict(DEMO_CONFIG)
        data["upstreams"] = {"demo": {"address": f"127.0.0.1:{port}", "timeout": "10s"}}
        data["server"] = {"bind": [args.bind]}
        if args.protos:
            data["descriptors"] = {"proto_paths": [args.protos]}
        config = parse_config(data, base=Path.cwd())
        print(
            f"demo upstream (gRPC) on 127.0.0.1:{port}; gateway on http://{args.bind}", flush=True
        )
        await serve_in_process(config, extra=[upstream])

    run_with_loop(main(), ServerConfig().event_loop)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help=f"config file (default: ${_CONFIG_ENV}, else the demo)")
    serve.add_argument("--bind", action="append", help="host:port to listen on (repeatable)")
    serve.add_argument("--workers", type=int, help="Hypercorn worker processes")
    check = sub.add_parser("check", help="load config and descriptors, print routes or problems")
    check.add_argument("--config")
    check.add_argument(
        "--against",
        metavar="URL",
        help="a running gateway's admin address: also print what reloading this config "
        "there would change",
    )
    check.add_argument("--admin-token", help="its admin.token (default: $EDGE_ADMIN_TOKEN)")
    openapi = sub.add_parser("openapi", help="write the OpenAPI document for the routes")
    openapi.add_argument("--config")
    openapi.add_argument("-o", "--output", help="file to write (default: stdout)")
    demo = sub.add_parser("demo", help="the demo upstream and the gateway, in the foreground")
    demo.add_argument("--bind", default="127.0.0.1:8080")
    demo.add_argument("--upstream-port", type=int, default=50051)
    demo.add_argument("--protos", help="proto folder (default: ./protos)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    handlers = {"serve": _serve, "check": _check, "openapi": _openapi, "demo": _demo}
    try:
        return handlers[args.command](args)
    except ConfigError as exc:  # shown redacted: it may quote a configured URL
        print(f"edge: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
