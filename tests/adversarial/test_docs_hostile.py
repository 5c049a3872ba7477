"""/docs and /openapi.json against hostile visitors and hostile proto comments.

``/openapi.json`` is public. Building it for a large descriptor set takes seconds of CPU;
on the event loop, any anonymous client could stall every request that long, again after
every reload. It is built in a worker thread, once per descriptor set: a reload that
changes nothing does not build it again.

Proto comments become the page's Markdown, and whoever writes a proto is not always whom
the docs' readers trust: ``![](https://tracker/pixel.png)`` in a comment must not make
every reader's browser call out. /docs is served with a strict Content-Security-Policy
(and nosniff, no framing, no referrer); in headless Chromium the page renders with no
violation but the blocked image, and the tracker hears nothing.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import Page, chromium, open_page
from conftest import TEST_PROTOS, make_config, run_gateway

from edge.openapi import views

pytestmark = pytest.mark.e2e

HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def protos(tmp_path: Path, extra: dict[str, str] | None = None) -> Path:
    folder = tmp_path / "protos"
    shutil.copytree(TEST_PROTOS, folder)
    for name, text in (extra or {}).items():
        (folder / name).write_text(text)
    return folder


async def test_docs_and_its_assets_carry_the_security_headers(stack: Any) -> None:
    async with stack.client() as client:
        answers = {
            path: await client.get(path)
            for path in (
                "/docs",
                "/docs/swagger-ui-bundle.js",
                "/docs/swagger-ui.css",
                "/docs/edge-docs.js",
                "/docs/favicon-32x32.png",
                "/docs/nothing-here.js",
                "/openapi.json",
            )
        }
    for path, answer in answers.items():
        assert answer.status_code == (404 if "nothing" in path else 200), path
        assert answer.headers["content-security-policy"] == POLICY, path
        for name, value in HEADERS.items():
            assert answer.headers[name] == value, (path, name)


# -- built off the event loop, once per descriptor set ------------------------------------


@pytest.fixture
def counted_builds(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every build of the document, each taking 1.2 s more (a large descriptor set)."""
    builds: list[float] = []
    real = views.build_openapi

    def slow(*args: Any, **kwargs: Any) -> Any:
        builds.append(time.monotonic())
        time.sleep(1.2)
        return real(*args, **kwargs)

    monkeypatch.setattr(views, "build_openapi", slow)
    return builds


async def test_the_document_is_built_off_the_event_loop(
    kitchen_upstream: Any, counted_builds: list[float]
) -> None:
    port, _ = kitchen_upstream
    async with run_gateway(make_config(port)) as gateway, gateway.client() as client:
        document = asyncio.create_task(client.get("/openapi.json"))
        while not counted_builds:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        health = await client.get("/healthz")
        echoed = await client.get("/v1/kitchen/meanwhile")
        waited = time.monotonic() - started
        assert not document.done()  # still building while the others were answered
        assert (await document).status_code == 200
    assert health.status_code == 200 and echoed.status_code == 200
    assert waited < 0.6  # the build alone takes 1.2 s


async def test_one_build_per_descriptor_set(
    kitchen_upstream: Any, tmp_path: Path, counted_builds: list[float]
) -> None:
    port, _ = kitchen_upstream
    folder = protos(tmp_path)
    config = make_config(port, protos=folder, extra={"descriptors": {"watch": False}})
    async with run_gateway(config) as gateway, gateway.client() as client:
        first = await asyncio.gather(*(client.get("/openapi.json") for _ in range(5)))
        assert len(counted_builds) == 1  # five at once: one build
        assert (await client.post("/admin/reload")).status_code == 200  # nothing changed
        again = await client.get("/openapi.json")
        assert len(counted_builds) == 1
        (folder / "extra.proto").write_text(
            'syntax = "proto3";\npackage extra.v1;\n'
            "message E { string e = 1; }\nservice Extra { rpc Get(E) returns (E); }\n"
        )
        assert (await client.post("/admin/reload")).status_code == 200
        changed = await client.get("/openapi.json")
    assert len(counted_builds) == 2
    assert all(answer.content == first[0].content for answer in [*first, again])
    assert "/extra.v1.Extra/Get" in changed.json()["paths"]


# -- the page in a browser: nothing loads from elsewhere ----------------------------------

_LISTEN = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push([event.violatedDirective, event.blockedURI]);
});
"""
_RENDERED = """
new Promise((resolve, reject) => {
  const started = Date.now();
  (function look() {
    const block = [...document.querySelectorAll(".opblock")].find(
      (b) => b.querySelector(".opblock-summary-path")?.dataset.path === "/v1/tracked");
    if (block) {
      block.querySelector(".opblock-summary-control").click();  // renders its description
      setTimeout(() => resolve(document.body.innerText), 1000);
    } else if (Date.now() - started > 15000) {
      reject(new Error("not rendered: " + document.body.innerText.slice(0, 2000)));
    } else {
      setTimeout(look, 50);
    }
  })();
})
"""


class Tracker:
    """An HTTP server on another port (another origin) that counts who calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.calls += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


@pytest.fixture
async def tracker() -> AsyncIterator[Tracker]:
    found = Tracker()
    found.server = await asyncio.start_server(found.handle, "127.0.0.1", 0)
    try:
        yield found
    finally:
        found.server.close()
        await found.server.wait_closed()


@pytest.fixture(scope="module")
def devtools_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with chromium(tmp_path_factory.mktemp("chromium")) as port:
        yield port


@pytest.fixture
async def page(devtools_port: int) -> AsyncIterator[Page]:
    async with open_page(devtools_port) as opened:
        yield opened


async def test_a_proto_comment_cannot_load_an_image_from_elsewhere(
    page: Page, tracker: Tracker, kitchen_upstream: Any, tmp_path: Path
) -> None:
    port, _ = kitchen_upstream
    pixel = f"http://127.0.0.1:{tracker.port}/pixel.png"
    tracked = f"""syntax = "proto3";
package tracked.v1;
import "google/api/annotations.proto";

// Tracked things. ![pixel]({pixel}?where=service)
service Tracked {{
  // Gets one. ![pixel]({pixel}?where=method) <img src="{pixel}?where=html">
  rpc Get(E) returns (E) {{ option (google.api.http) = {{ get: "/v1/tracked" }}; }}
}}
message E {{}}
"""
    folder = protos(tmp_path, {"tracked.proto": tracked})
    config = make_config(port, protos=folder, extra={"descriptors": {"watch": False}})
    async with run_gateway(config) as gateway:
        await page.call("Page.enable")
        await page.call("Page.addScriptToEvaluateOnNewDocument", {"source": _LISTEN})
        await page.navigate(f"{gateway.base_url}/docs")
        text = await page.evaluate(_RENDERED)
        violations = await page.evaluate("window.__violations")
    assert "Gets one." in text and "Tracked things." in text
    assert tracker.calls == 0
    assert violations, "the images were not even tried: the test shows nothing"
    others = [v for v in violations if not (v[0] == "img-src" and v[1].startswith(pixel))]
    assert not others, json.dumps(others)
