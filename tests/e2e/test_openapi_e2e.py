"""/openapi.json and /docs from a running gateway, and ``edge openapi`` as a user runs it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import DEMO_PROTOS, ROOT, TEST_PROTOS, Stack, make_config
from openapi_spec_validator import validate

from edge.openapi import build_openapi
from edge.routes import load_routes

pytestmark = pytest.mark.e2e
StackFactory = Callable[..., AbstractAsyncContextManager[Stack]]


async def test_openapi_json_describes_the_served_routes(stack: Stack) -> None:
    async with stack.client() as client:
        response = await client.get("/openapi.json")
        again = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    validate(document)
    assert "/v1/kitchen/{string_value}" in document["paths"]
    assert document == build_openapi(load_routes(stack.gateway.config), stack.gateway.config)
    assert again.content == response.content


async def test_openapi_json_follows_a_routes_swap(stack: Stack) -> None:
    """A reload swaps the routes object; the next fetch documents the new routes."""
    async with stack.client() as client:
        before = (await client.get("/openapi.json")).json()
        holder = stack.gateway.app.extensions["edge.state"]
        demo = load_routes(make_config(stack.upstream_port, protos=DEMO_PROTOS))
        holder.current = dataclasses.replace(holder.current, routes=demo)
        after = (await client.get("/openapi.json")).json()
    assert "/v1/kitchen/{string_value}" in before["paths"]
    assert "/v1/shelves/{shelf}/books" in after["paths"]
    assert "/v1/kitchen/{string_value}" not in after["paths"]


async def test_docs_page_and_its_bundled_assets(stack: Stack) -> None:
    assets = ROOT / "edge" / "docs_assets"
    async with stack.client() as client:
        page = await client.get("/docs")
        bundle = await client.get("/docs/swagger-ui-bundle.js")
        css = await client.get("/docs/swagger-ui.css")
        starter = await client.get("/docs/edge-docs.js")
        missing = await client.get("/docs/LICENSE")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert 'src="docs/swagger-ui-bundle.js' in page.text
    assert "http" not in page.text.replace('lang="en"', "")  # nothing from elsewhere
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert bundle.content == (assets / "swagger-ui-bundle.js").read_bytes()
    assert css.headers["content-type"].startswith("text/css")
    assert "validatorUrl: null" in starter.text  # no call to Swagger's online validator
    assert missing.status_code == 404


async def test_docs_can_be_switched_off(stack_factory: StackFactory) -> None:
    async with stack_factory(openapi={"enabled": False}) as running, running.client() as client:
        assert (await client.get("/openapi.json")).status_code == 404
        assert (await client.get("/docs")).status_code == 404


def test_edge_openapi_writes_the_same_document(tmp_path: Path) -> None:
    config_file = tmp_path / "edge.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "descriptors": {"proto_paths": [str(TEST_PROTOS)]},
                "upstreams": {"kitchen": {"address": "127.0.0.1:1"}},
                "services": {"*": {"upstream": "kitchen"}},
                "openapi": {"title": "Kitchen", "version": "3"},
            }
        )
    )
    out = tmp_path / "openapi.json"
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "openapi", "--config", str(config_file), "-o", str(out)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    document: dict[str, Any] = json.loads(out.read_text())
    validate(document)
    assert document["info"] == {"title": "Kitchen", "version": "3"}
    config = make_config(1, extra={"openapi": {"title": "Kitchen", "version": "3"}})
    assert document == build_openapi(load_routes(config), config)
