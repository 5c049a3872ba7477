"""``/openapi.json`` and the ``/docs`` page, as a Quart blueprint.

The document is built lazily from the routes the gateway serves right now
(``app.extensions["edge.state"].current.routes``) and cached for that routes object, so
a descriptor reload is documented on the next fetch and nothing is built for a gateway
nobody asks. ``/docs`` is Swagger UI from ``edge/docs_assets`` (vendored, no CDN). Its
links are relative (``docs/…``, ``openapi.json``) so the page also works behind a
proxy that mounts the gateway under a path prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import orjson
from quart import Blueprint, Response, current_app

from edge.config import Config
from edge.ingress.http import StateHolder
from edge.openapi.document import build_openapi
from edge.routes import Routes

SWAGGER_UI_VERSION = "5.35.0"  # npm swagger-ui-dist; see edge/docs_assets/README.md
_ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "edge-docs.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>API documentation</title>
  <link rel="stylesheet" href="docs/swagger-ui.css?v={SWAGGER_UI_VERSION}">
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js?v={SWAGGER_UI_VERSION}"></script>
  <script src="docs/edge-docs.js?v={SWAGGER_UI_VERSION}"></script>
</body>
</html>
""".encode()

docs = Blueprint("edge_docs", __name__)


@dataclass(slots=True)
class _Cached:
    routes: Routes | None = None
    body: bytes = b""


def openapi_bytes(routes: Routes, config: Config, cache: _Cached) -> bytes:
    """The document for ``routes`` as JSON, built once per routes object."""
    if cache.routes is not routes:
        cache.body = orjson.dumps(build_openapi(routes, config))
        cache.routes = routes
    return cache.body


@docs.get("/openapi.json")
async def openapi_json() -> Response:
    holder: StateHolder = current_app.extensions["edge.state"]
    cache: _Cached = current_app.extensions.setdefault("edge.openapi", _Cached())
    body = openapi_bytes(holder.current.routes, current_app.extensions["edge.config"], cache)
    return Response(body, content_type="application/json", headers={"cache-control": "no-cache"})


@docs.get("/docs")
async def docs_page() -> Response:
    return Response(_PAGE, content_type="text/html; charset=utf-8")


_assets: dict[str, bytes] = {}


@docs.get("/docs/<name>")
async def docs_asset(name: str) -> Response:
    content_type = _ASSET_TYPES.get(name)
    if content_type is None:
        return Response(
            b'{"code":5,"message":"no such file","details":[]}',
            status=404,
            content_type="application/json",
        )
    body = _assets.get(name)
    if body is None:
        body = _assets[name] = (resources.files("edge") / "docs_assets" / name).read_bytes()
    return Response(
        body, content_type=content_type, headers={"cache-control": "public, max-age=86400"}
    )
