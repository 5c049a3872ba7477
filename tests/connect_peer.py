"""Real gRPC-Web and Connect clients for the tests: connect-es under Node and in Chromium.

``tests/peers/connect`` holds the clients (see its README.md): ``client.mjs`` makes one
call with ``@connectrpc/connect-node`` and prints one JSON result; ``bundle.js`` (built
from ``browser.mjs`` by esbuild) gives a page ``window.edgeCall(spec)``, the same call with
``@connectrpc/connect-web`` (fetch), or with the official ``grpc-web`` client for
grpc-web-text, which connect-es does not speak. Neither uses generated code: both build
their message types at run time from a binary FileDescriptorSet, which this module makes
from the demo protos with grpcio-tools' protoc and puts in the spec (base64).

The packages are pinned in tests/peers/connect/package-lock.json and installed by
``npm ci`` the first time (again only when the lock changes), then bundle.js is built
(about a second; again when a source is newer). As for the grpc-js peer, scripts/test
installs Debian's nodejs and npm when they are missing, so a machine without them fails
these tests; ``EDGE_SKIP_INTEROP=1`` skips them instead. A failed install fails them.

A result (both sides): ``{"ok", "messages": [proto3 JSON...], "headers", "trailers",
"aborted", "error": None | {"code": "not_found", "numericCode", "message", "details":
[{"type", "value" (base64)}], "metadata", "wire", "cause"}}``. On an error, the response's
headers and trailers are in ``error["metadata"]``. In the browser, only the headers the
server exposes through CORS (Access-Control-Expose-Headers) are seen at all.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from browser import Page
from conftest import DEMO_PROTOS, ROOT
from http_upstream import Message, Receive, Send, serve_asgi

from edge.descriptors.compiler import GOOGLEAPIS_ROOT, WELL_KNOWN_ROOT

PEER = ROOT / "tests" / "peers" / "connect"
CLIENT = PEER / "client.mjs"
BUNDLE = PEER / "bundle.js"
DEMO_SERVICE = "edgedemo.library.v1.LibraryService"
# what bundle.js is built from: a newer one of these rebuilds it
_BUNDLE_SOURCES = ("browser.mjs", "core.mjs", "build.mjs", "package-lock.json")
_STAMP = PEER / "node_modules" / ".edge-installed-lock"

_node: str | None = None
_descriptor_sets: dict[Path, bytes] = {}


# -- installing ----------------------------------------------------------------------


def ensure_installed() -> str:
    """node's path, once node_modules matches package-lock.json and bundle.js is current.

    Blocking (``npm ci`` may take a while the first time): call it from a session fixture,
    not from inside a test's event loop. Skips under ``EDGE_SKIP_INTEROP=1``; fails when
    node or npm is missing or the install or the build fails.
    """
    global _node
    if _node is not None:
        return _node
    if os.environ.get("EDGE_SKIP_INTEROP") == "1":
        pytest.skip("EDGE_SKIP_INTEROP=1: the gRPC-Web and Connect client tests are opted out")
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail(
            "node and npm are needed for the connect-es clients (tests/peers/connect): "
            "scripts/test installs them; set EDGE_SKIP_INTEROP=1 to skip these tests instead"
        )
    lock = hashlib.sha256((PEER / "package-lock.json").read_bytes()).hexdigest()
    installed = False
    if not _STAMP.is_file() or _STAMP.read_text() != lock:
        _run([npm, "ci", "--no-audit", "--no-fund"], "npm ci", timeout=600)
        _STAMP.write_text(lock)
        installed = True
    newest_source = max((PEER / name).stat().st_mtime for name in _BUNDLE_SOURCES)
    if installed or not BUNDLE.is_file() or BUNDLE.stat().st_mtime < newest_source:
        _run([node, "build.mjs"], "the bundle build (node build.mjs)", timeout=120)
    _node = node
    return node


def _run(command: list[str], what: str, *, timeout: float) -> None:
    try:
        done = subprocess.run(
            command, cwd=PEER, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} in tests/peers/connect took more than {timeout:.0f} s")
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-4000:]
        pytest.fail(f"{what} in tests/peers/connect failed ({done.returncode}):\n{output}")


# -- descriptors and specs -------------------------------------------------------------


def descriptor_set_for(root: Path) -> bytes:
    """A binary FileDescriptorSet of every .proto under ``root``, imports included (cached).

    Made by grpcio-tools' protoc directly, not by the gateway's compiler, so the clients'
    idea of the service does not depend on the code under test. google/api comes from
    googleapis-common-protos and the well-known types from grpcio-tools, as for the gateway.
    """
    root = root.resolve()
    cached = _descriptor_sets.get(root)
    if cached is not None:
        return cached
    files = sorted(path.relative_to(root).as_posix() for path in root.rglob("*.proto"))
    with tempfile.TemporaryDirectory(prefix="edge-connect-peer-") as folder:
        out = Path(folder) / "set.binpb"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                "--include_imports",
                f"--descriptor_set_out={out}",
                f"-I{root}",
                f"-I{WELL_KNOWN_ROOT}",
                f"-I{GOOGLEAPIS_ROOT}",
                *files,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"protoc failed on {root}:\n{done.stderr}")
        data = out.read_bytes()
    _descriptor_sets[root] = data
    return data


def descriptor_set_for_demo() -> bytes:
    """The demo's set (protos/edgedemo/library/v1/library.proto and its imports)."""
    return descriptor_set_for(DEMO_PROTOS)


def demo_spec(
    base_url: str,
    transport: str,
    method: str,
    request: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A spec for one call to the demo's LibraryService; ``extra`` adds or overrides keys.

    ``transport``: "grpc-web" or "connect" (connect-es; ``binary=False`` for JSON), or
    "grpc-web-text" (the official grpc-web client, browser only). Other keys: ``binary``,
    ``headers``, ``timeoutMs``, ``maxMessages``, ``requests`` (client and bidi streaming,
    Node over ``httpVersion="2"`` only), ``httpVersion`` and ``caFile`` (Node).
    """
    spec: dict[str, Any] = {
        "baseUrl": base_url,
        "transport": transport,
        "binary": True,
        "service": DEMO_SERVICE,
        "method": method,
        "request": request or {},
        "descriptorSetBase64": base64.b64encode(descriptor_set_for_demo()).decode(),
    }
    spec.update(extra)
    return spec


def bearer(token: str) -> dict[str, str]:
    """Headers carrying a JWT, for a spec's ``headers``."""
    return {"authorization": f"Bearer {token}"}


# -- Node ----------------------------------------------------------------------------


async def node_call(spec: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
    """Run client.mjs on ``spec`` (sent on stdin) and return its result.

    A spec client.mjs cannot use (no such method, a request that is not proto3 JSON for
    it) fails the test, as does a client that prints nothing or outlives ``timeout``.
    Call ``ensure_installed()`` (from a session fixture) first.
    """
    node = ensure_installed()
    if "descriptorSet" not in spec and "descriptorSetBase64" not in spec:
        spec = {**spec, "descriptorSetBase64": base64.b64encode(descriptor_set_for_demo()).decode()}
    process = await asyncio.create_subprocess_exec(
        node,
        str(CLIENT),
        "-",
        cwd=PEER,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(
            process.communicate(json.dumps(spec).encode()), timeout
        )
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"client.mjs took more than {timeout} s on {_brief(spec)}") from None
    lines = stdout.decode().strip().splitlines()
    if not lines:
        raise AssertionError(
            f"client.mjs printed nothing (exit {process.returncode}) on {_brief(spec)}:\n"
            f"{stderr.decode()[-4000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    if process.returncode != 0:
        raise AssertionError(f"client.mjs refused the spec {_brief(spec)}: {result['error']}")
    return result


def _brief(spec: dict[str, Any]) -> str:
    shown = {k: v for k, v in spec.items() if not k.startswith("descriptorSet")}
    return json.dumps(shown)


# -- the browser ---------------------------------------------------------------------

_PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>edge connect peer</title>
<script src="/bundle.js"></script></head><body>edge connect peer</body></html>
"""


async def _page_app(scope: Message, receive: Receive, send: Send) -> None:
    """Serves the page (any path) and /bundle.js, nothing else."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/bundle.js":
        body, content_type = BUNDLE.read_bytes(), b"text/javascript; charset=utf-8"
    else:
        body, content_type = _PAGE, b"text/html; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", content_type), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def serve_page() -> AsyncIterator[str]:
    """A page that loads bundle.js, on its own port; yields its origin (http://127.0.0.1:N).

    The gateway is on another port, so every call from the page is cross-origin: the
    browser sends a CORS preflight first (see the README for the headers it asks for).
    Call ``ensure_installed()`` first (it builds bundle.js).
    """
    async with serve_asgi(_page_app) as port:
        yield f"http://127.0.0.1:{port}"


async def open_call_page(page: Page, origin: str) -> None:
    """Load the served page in ``page`` and check that window.edgeCall is there."""
    await page.navigate(f"{origin}/")
    kind = await page.evaluate("typeof window.edgeCall")
    assert kind == "function", f"bundle.js did not define window.edgeCall ({kind})"


async def browser_call(page: Page, spec: dict[str, Any]) -> dict[str, Any]:
    """One ``window.edgeCall(spec)`` in the page opened by ``open_call_page``."""
    if "descriptorSetBase64" not in spec:
        spec = {**spec, "descriptorSetBase64": base64.b64encode(descriptor_set_for_demo()).decode()}
    result: dict[str, Any] = await page.evaluate(f"window.edgeCall({json.dumps(spec)})")
    return result
