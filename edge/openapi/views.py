"""``/openapi.json`` and the ``/docs`` page, as a Quart blueprint.

The document is built from the routes the gateway serves right now
(``app.extensions["edge.state"].current.routes``), lazily (nothing is built for a gateway
nobody asks) and never on the event loop: building it for 2,000 methods takes seconds of
CPU, which any anonymous client could otherwise spend on every other request's time. The
build runs in a worker thread, one at a time (concurrent first requests wait for the same
build), and its JSON is kept under ``document_key``, the digest of the loaded files and
routes: a reload that changes nothing finds the document already built.

``/docs`` is Swagger UI from ``edge/docs_assets`` (vendored, no CDN). Its links are
relative (``docs/…``, ``openapi.json``) so the page also works behind a proxy that mounts
the gateway under a path prefix. The page and its assets carry a strict
Content-Security-Policy (``docs_headers``): scripts, styles and fonts only from the
gateway, images only from the gateway or ``data:`` (a proto comment's
``![](https://tracker/...)`` does not load), requests only to the gateway and the
configured ``openapi.servers``, no framing; with ``nosniff``, ``X-Frame-Options: DENY`` and
``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from urllib.parse import urlsplit

import orjson
from quart import Blueprint, Response, current_app

from edge.config import Config
from edge.openapi.document import build_openapi, document_key
from edge.routes import Routes
from edge.state import StateHolder

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


@lru_cache(maxsize=8)
def docs_headers(servers: tuple[str, ...] = ()) -> dict[str, str]:
    """The security headers of /docs and its assets (and of /openapi.json).

    Swagger UI 5 needs nothing inline: its styles come from swagger-ui.css and React sets
    element styles through the CSSOM, which ``style-src 'self'`` allows; its icons are
    ``data:`` SVGs. ``connect-src`` adds the origins of ``openapi.servers`` so that "Try
    it out" can reach them.
    """
    origins = []
    for server in servers:
        parts = urlsplit(server)
        if parts.scheme in ("http", "https") and parts.netloc:
            origins.append(f"{parts.scheme}://{parts.netloc}")
    connect = " ".join(["'self'", *dict.fromkeys(origins)])
    policy = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            f"connect-src {connect}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "content-security-policy": policy,
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
    }


def _config() -> Config:
    holder: StateHolder = current_app.extensions["edge.state"]
    return holder.current.config


def _headers() -> dict[str, str]:
    return docs_headers(tuple(_config().openapi.servers))


@dataclass(slots=True)
class OpenApiCache:
    """The document as JSON, built in a worker thread once per descriptor set."""

    routes: Routes | None = None  # the routes object ``body`` was last served for
    key: bytes = b""  # document_key of the routes it was built from
    body: bytes = b""
    builds: int = 0  # how many times the document was built (the tests count them)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def document(self, routes: Routes, config: Config) -> bytes:
        """The JSON for ``routes``: cached, else built (or found by key) off the loop."""
        if routes is self.routes:
            return self.body
        async with self._lock:  # one build at a time; the waiters find it done
            if routes is not self.routes:
                key, body = await asyncio.to_thread(self._build, routes, config)
                self.routes, self.key, self.body = routes, key, body
        return self.body

    def _build(self, routes: Routes, config: Config) -> tuple[bytes, bytes]:
        # the config too: a reload may change the title, the servers, the auth or what
        # the schemas say is accepted, with the same descriptors
        config_digest = hashlib.blake2b(config.model_dump_json().encode(), digest_size=16)
        key = document_key(routes) + config_digest.digest()
        if key == self.key:
            return key, self.body
        body = orjson.dumps(build_openapi(routes, config))
        self.builds += 1
        return key, body


@docs.get("/openapi.json")
async def openapi_json() -> Response:
    holder: StateHolder = current_app.extensions["edge.state"]
    cache: OpenApiCache | None = current_app.extensions.get("edge.openapi")
    if cache is None:
        cache = current_app.extensions["edge.openapi"] = OpenApiCache()
    state = holder.current
    body = await cache.document(state.routes, state.config)
    return Response(
        body,
        content_type="application/json",
        headers={"cache-control": "no-cache", **_headers()},
    )


@docs.get("/docs")
async def docs_page() -> Response:
    return Response(_PAGE, content_type="text/html; charset=utf-8", headers=_headers())


_assets: dict[str, bytes] = {}


@docs.get("/docs/<name>")
async def docs_asset(name: str) -> Response:
    content_type = _ASSET_TYPES.get(name)
    if content_type is None:
        return Response(
            b'{"code":5,"message":"no such file","details":[]}',
            status=404,
            content_type="application/json",
            headers=_headers(),
        )
    body = _assets.get(name)
    if body is None:
        body = _assets[name] = (resources.files("edge") / "docs_assets" / name).read_bytes()
    return Response(
        body,
        content_type=content_type,
        headers={"cache-control": "public, max-age=86400", **_headers()},
    )
