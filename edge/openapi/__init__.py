"""Live API documentation: the OpenAPI 3.1 document for the loaded routes.

``build_openapi`` is pure (routes and config in, a JSON-ready dict out); the app serves
it at ``/openapi.json`` with a Swagger UI page at ``/docs`` (assets in
``edge/docs_assets``), and ``edge openapi`` writes it to a file.
"""

from __future__ import annotations

from edge.openapi.document import build_openapi, document_key
from edge.openapi.paths import openapi_path

__all__ = ["build_openapi", "document_key", "openapi_path"]
