"""Liveness and readiness probes.

``/healthz`` says the process is up. ``/readyz`` says this instance should get traffic:
routes are loaded, every gRPC upstream in use answers (the standard
``grpc.health.v1.Health/Check``; an upstream without it counts as reachable, since it
answered), and Redis answers when the limiter uses it. Results are cached for a moment
so a busy probe cannot load the upstreams.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc
import grpc.aio
import orjson
from quart import Blueprint, Response, current_app

from edge.state import StateHolder
from edge.upstream.grpc import GrpcTerminal

log = logging.getLogger("edge.health")
health = Blueprint("edge_health", __name__)

CACHE_SECONDS = 2.0
CHECK_TIMEOUT = 1.0
_SERVING = b"\x08\x01"  # HealthCheckResponse{status: SERVING}


def _identity(data: bytes) -> bytes:
    return data


async def check_upstream(channel: grpc.aio.Channel) -> tuple[bool, str]:
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=_identity,
        response_deserializer=_identity,
    )
    try:
        answer = await check(b"", timeout=CHECK_TIMEOUT)  # HealthCheckRequest{service: ""}
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            return True, "reachable (no health service)"
        # /readyz is public: the code only; the details (addresses) go to the log
        log.warning("readiness check failed: %s: %s", exc.code().name, exc.details())
        return False, exc.code().name
    if answer == _SERVING:
        return True, "serving"
    return False, "not serving"


async def readiness() -> tuple[bool, dict[str, Any]]:
    holder: StateHolder = current_app.extensions["edge.state"]
    state = holder.current
    terminal, pipeline, routes = state.terminal, state.pipeline, state.routes
    checks: dict[str, Any] = {"routes": len(routes.routes)}
    ready = bool(routes.routes) or bool(state.config.proxy_routes)
    shutdown = current_app.extensions.get("edge.shutdown")
    if shutdown is not None and shutdown.is_set():
        checks["draining"] = True  # take this instance out of the load balancer first
        return False, checks
    if isinstance(terminal, GrpcTerminal):
        names = sorted({upstream for upstream, _ in routes.upstream_methods()})
        channels = [(name, terminal.channel(name)) for name in names]
        results = await asyncio.gather(
            *(check_upstream(channel) for _, channel in channels if channel is not None)
        )
        for (name, _), (ok, detail) in zip(
            [c for c in channels if c[1] is not None], results, strict=True
        ):
            checks[f"upstream:{name}"] = detail
            ready = ready and ok
    store = pipeline.ratelimit.store if pipeline.ratelimit is not None else None
    ping = getattr(store, "ping", None)
    if ping is not None:
        ok = await ping()
        checks["redis"] = "reachable" if ok else "unreachable"
        ready = ready and ok
    return ready, checks


@health.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', content_type="application/json")


@health.get("/readyz")
async def readyz() -> Response:
    cache = current_app.extensions.setdefault("edge.readiness", {})
    now = time.monotonic()
    shutdown = current_app.extensions.get("edge.shutdown")
    if cache.get("until", 0.0) < now or (shutdown is not None and shutdown.is_set()):
        cache["result"] = await readiness()
        cache["until"] = now + CACHE_SECONDS
    ready, checks = cache["result"]
    body = orjson.dumps({"status": "ready" if ready else "not ready", "checks": checks})
    return Response(body, status=200 if ready else 503, content_type="application/json")
