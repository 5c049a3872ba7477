"""The ``edge`` command: serve, check, demo.

``serve`` runs Hypercorn with the app (in-process for one worker; Hypercorn's own
multi-process runner for several, each worker building its app from the same config).
``check`` loads config and descriptors exactly as ``serve`` would and prints the route
table or the problems, exiting 1 on any problem, so CI can gate a proto change on it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from hypercorn.config import Config as HypercornConfig

from edge.config import Config, ServerConfig, load_config
from edge.errors import ConfigError
from edge.routes import load_routes

_CONFIG_ENV = "EDGE_CONFIG"


def hypercorn_config(config: Config) -> HypercornConfig:
    server = config.server
    hc = HypercornConfig()
    hc.bind = list(server.bind)
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


def worker_app() -> object:
    """App factory for Hypercorn's multi-process runner (``edge.cli:worker_app()``)."""
    from edge.app import create_app

    return create_app(load_config(_config_path(None)))


async def serve_in_process(config: Config, extra: list[object] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; ``extra`` servers (grpc.aio) are stopped alongside."""
    from hypercorn.asyncio import serve

    from edge.app import create_app

    app = create_app(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve(app, hypercorn_config(config), shutdown_trigger=stop.wait)
    finally:
        for server in extra or ():
            await server.stop(grace=1.0)  # type: ignore[attr-defined]


def _serve(args: argparse.Namespace) -> int:
    path = _config_path(args.config)
    config = load_config(path)
    overrides: dict[str, object] = {}
    if args.bind:
        overrides["bind"] = args.bind
    if args.workers:
        overrides["workers"] = args.workers
    if overrides:
        config = config.model_copy(update={"server": config.server.model_copy(update=overrides)})
    if config.server.workers == 1:
        run_with_loop(serve_in_process(config), config.server.event_loop)
        return 0
    from hypercorn.run import run

    if path is not None:
        os.environ[_CONFIG_ENV] = str(path.resolve())
    hc = hypercorn_config(config)
    hc.application_path = "edge.cli:worker_app()"
    return int(run(hc) or 0)


def run_with_loop(coro: Coroutine[Any, Any, None], loop: str) -> None:
    """Run on the event loop the server section chose (the benchmarks use it too)."""
    if loop == "uvloop":
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)


def _check(args: argparse.Namespace) -> int:
    config = load_config(_config_path(args.config))
    routes = load_routes(config)
    width = max((len(r.http_method) for r in routes.routes), default=4)
    for route in sorted(routes.routes, key=lambda r: (r.template, r.http_method)):
        target = f"{route.method.full_name} @ {route.upstream}"
        print(f"{route.http_method:<{width}} {route.template}  ->  {target}")
    for service in routes.unrouted:
        print(f"unrouted: {service} (no entry under services, and no '*')")
    for note in routes.notes:
        print(f"note: {note}")
    for problem in routes.problems:
        print(f"problem: {problem}", file=sys.stderr)
    print(f"{len(routes.routes)} routes, {len(routes.problems)} problems", file=sys.stderr)
    return 1 if routes.problems else 0


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
    demo = sub.add_parser("demo", help="the demo upstream and the gateway, in the foreground")
    demo.add_argument("--bind", default="127.0.0.1:8080")
    demo.add_argument("--upstream-port", type=int, default=50051)
    demo.add_argument("--protos", help="proto folder (default: ./protos)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    handlers = {"serve": _serve, "check": _check, "demo": _demo}
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"edge: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
