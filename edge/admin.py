"""Admin endpoints: what the gateway serves, why, and with what state.

Loopback clients only, unless ``admin.token`` is set (then any client presenting it);
with ``admin.bind``, only on that listener.

``explain`` is the debugging tool other gateways lack: for a method, path, query and body
it shows which route matches, which fields come from the path, the query and the body,
the request message that would be sent, and the policy that would apply, without calling
anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from quart import Blueprint, Response, current_app, request

from edge.config import Config
from edge.config_diff import route_rows
from edge.errors import EdgeError
from edge.pipeline.jwt_core import same_secret
from edge.redaction import redact_config
from edge.reload import Reloader, ReloadResult
from edge.routing.table import NoRoute, RouteMatch, WrongMethod
from edge.state import StateHolder
from edge.transcode.response import status_body
from edge.workers import WorkerGroup, newer_reports

admin = Blueprint("edge_admin", __name__, url_prefix="/admin")


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status=status, content_type="application/json")


def _config() -> Config:
    return _holder().current.config


def _allowed() -> bool:
    token = _config().admin.token
    if token is not None:
        given = request.headers.get("authorization")
        return given is not None and same_secret(given, f"Bearer {token}")
    return request.remote_addr in ("127.0.0.1", "::1")


def on_admin_listener() -> bool:
    """Whether this request came in on the admin listener (always, without ``admin.bind``)."""
    port = _config().admin.port
    if port is None:
        return True
    server = request.scope.get("server")
    return server is not None and server[1] == port


@admin.before_request
async def _guard() -> Response | None:
    if not on_admin_listener():  # as if there were no such route: nothing to probe
        return Response(
            status_body(5, "no route for this path"),
            status=404,
            content_type="application/json",
        )
    if not _allowed():
        return Response(
            status_body(7, "the admin endpoints need the admin token"),
            status=403,
            content_type="application/json",
        )
    return None


def _holder() -> StateHolder:
    holder: StateHolder = current_app.extensions["edge.state"]
    return holder


@admin.get("/pipeline")
async def pipeline_state() -> Response:
    pipeline = _holder().current.pipeline
    # the worker's asyncio tasks: requests, streams and sockets in flight, and what a leak
    # would leave behind (the soak benchmark watches it)
    return _json({**pipeline.snapshot(), "tasks": len(asyncio.all_tasks())})


@admin.get("/routes")
async def routes() -> Response:
    return _json(route_rows(_holder().current.routes))


@admin.get("/descriptors")
async def descriptors() -> Response:
    current = _holder().current.routes
    reloader: Reloader = current_app.extensions["edge.reloader"]
    return _json(
        {
            "files": current.registry.files,
            "services": sorted(current.registry.services()),
            "unrouted": current.unrouted,
            "problems": current.problems,
            "notes": current.notes,
            "reload": reloader.snapshot(),
        }
    )


@admin.post("/reload")
async def reload() -> Response:
    """Reload now: this worker alone, or with ``--workers N`` every worker, each reported."""
    group: WorkerGroup | None = current_app.extensions.get("edge.workers")
    if group is not None:
        return await _every_worker(group, group.reload_all)
    reloader: Reloader = current_app.extensions["edge.reloader"]
    return _reloaded(await reloader.reload("admin request"))


@admin.post("/rollback")
async def rollback() -> Response:
    """Serve the config served before the last reload again (every worker's), until the
    next reload reads the file again: the way back from a config that was valid but
    wrong, while the file is being fixed."""
    group: WorkerGroup | None = current_app.extensions.get("edge.workers")
    if group is not None:
        return await _every_worker(group, group.rollback_all)
    reloader: Reloader = current_app.extensions["edge.reloader"]
    return _reloaded(await reloader.rollback())


def _reloaded(result: ReloadResult) -> Response:
    return _json(
        {
            "applied": result.applied,
            "problems": list(result.problems),
            "routes": result.routes,
            "restart_needed": list(result.restart_needed),
        },
        200 if result.applied else 409,
    )


async def _every_worker(group: WorkerGroup, ask: Callable[[], None]) -> Response:
    """Ask the supervisor to reload (or roll back) every worker, and wait for each one's
    outcome.

    200 when every worker applied the new config, 409 when any refused it (each worker
    validates on its own; they read the same files, so they agree), 504 when a worker has
    not reported within ``_WORKERS_TIMEOUT`` (one stuck, or just restarted).
    """
    before = await asyncio.to_thread(group.reports)
    ask()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _WORKERS_TIMEOUT
    while True:
        now = await asyncio.to_thread(group.reports)
        fresh = newer_reports(before, now, group.workers)
        if fresh is not None:
            break
        if loop.time() > deadline:
            missing = sorted(set(range(group.workers)) - set(now))
            return _json(
                {
                    "applied": False,
                    "problems": [f"workers {missing or 'some'} did not report a reload in time"],
                    "workers": [now[index] for index in sorted(now)],
                },
                504,
            )
        await asyncio.sleep(0.05)
    reports = [fresh[index] for index in sorted(fresh)]
    applied = all(report["applied"] for report in reports)
    problems = sorted({p for report in reports for p in report["problems"]})
    restart = sorted({k for report in reports for k in report["restart_needed"]})
    return _json(
        {
            "applied": applied,
            "problems": problems,
            "routes": reports[0]["routes"],
            "restart_needed": restart,
            "workers": reports,
        },
        200 if applied else 409,
    )


_WORKERS_TIMEOUT = 30.0  # seconds for every worker to report an admin reload


@admin.get("/config")
async def config() -> Response:
    return _json(redact_config(_config().model_dump(mode="json")))


@admin.route("/explain", methods=["GET", "POST"])
async def explain() -> Response:
    """``?method=GET&path=/v1/...&query=a=1`` (and a POST body to explain a body)."""
    method = request.args.get("method", "GET").upper()
    path = request.args.get("path", "")
    query = request.args.get("query", "")
    raw = await request.get_data() if request.method == "POST" else b""
    body = raw if isinstance(raw, bytes) else raw.encode()
    state = _holder().current
    found = state.routes.table.match(method, path)
    if isinstance(found, NoRoute):
        return _json({"matched": False, "status": 404, "reason": "no route for this path"})
    if isinstance(found, WrongMethod):
        return _json(
            {"matched": False, "status": 405, "reason": "wrong method", "allow": found.allowed}
        )
    assert isinstance(found, RouteMatch)
    route = found.target
    answer: dict[str, Any] = {
        "matched": True,
        "route": {"method": route.http_method, "path": route.template},
        "rpc": route.method.full_name,
        "upstream": route.upstream,
        "timeout": route.timeout,
        "path_fields": {".".join(path_): value for path_, value in found.bindings},
        "body": route.binder.body_description,
        "query_fields": route.binder.query_fields(query),
    }
    pipeline = state.pipeline
    if pipeline.auth is not None or pipeline.ratelimit is not None:
        policy = pipeline.index.for_route(route.method.full_name)
        answer["policy"] = {
            "name": policy.name,
            "auth": policy.require,
            "scopes": sorted(policy.scopes),
            "rate_limits": [limit.label for limit in policy.limits],
        }
    try:
        if route.method.client_streaming:
            answer["request"] = "a stream of messages (NDJSON lines), each bound like this body"
        else:
            message = route.binder.bind(found.bindings, query, body)
            answer["request"] = route.codec.to_dict(message)
        answer["status"] = 200
    except EdgeError as error:
        answer["status"] = error.status
        answer["error"] = {"code": error.grpc_code, "message": error.message}
    return _json(answer)
