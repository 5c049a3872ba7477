"""``/metrics``: the Prometheus exposition (every worker's totals in multiprocess mode)."""

from __future__ import annotations

from quart import Blueprint, Response

from edge.observability import metrics

metrics_blueprint = Blueprint("edge_metrics", __name__)


@metrics_blueprint.get("/metrics")
async def exposition() -> Response:
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)
