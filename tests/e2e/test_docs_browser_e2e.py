"""The /docs page in headless Chromium: Swagger UI renders the demo's operations offline.

The gateway serves the demo protos; the page is loaded from it over the Chrome DevTools
protocol (``tests/browser.py``) with network events recorded, so the test also shows
that every file the page fetched came from the gateway itself (no CDN).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest
from browser import Page, chromium, open_page
from conftest import DEMO_PROTOS, make_config, run_gateway

from edge.demo.library import start_library

pytestmark = pytest.mark.e2e

# Waits until Swagger UI has rendered the operations, then reads them off the page.
_RENDERED = """
new Promise((resolve, reject) => {
  const started = Date.now();
  (function look() {
    const blocks = [...document.querySelectorAll(".opblock")];
    if (blocks.length >= 10) {
      resolve({
        paths: blocks.map((b) => b.querySelector(".opblock-summary-path").dataset.path),
        methods: blocks.map((b) => b.querySelector(".opblock-summary-method").textContent),
        ids: [...document.querySelectorAll(".opblock-summary-operation-id")]
          .map((e) => e.textContent),
        text: document.body.innerText,
      });
    } else if (Date.now() - started > 15000) {
      reject(new Error("Swagger UI rendered no operations: " + document.body.innerText));
    } else {
      setTimeout(look, 50);
    }
  })();
})
"""


@pytest.fixture(scope="module")
def devtools_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with chromium(tmp_path_factory.mktemp("chromium")) as port:
        yield port


@pytest.fixture
async def page(devtools_port: int) -> AsyncIterator[Page]:
    async with open_page(devtools_port) as opened:
        yield opened


@pytest.fixture
async def upstream_port() -> AsyncIterator[int]:
    server, port = await start_library()
    try:
        yield port
    finally:
        await server.stop(grace=None)


async def test_docs_page_shows_the_demo_operations(page: Page, upstream_port: int) -> None:
    async with run_gateway(make_config(upstream_port, protos=DEMO_PROTOS)) as gateway:
        await page.call("Network.enable")
        await page.navigate(f"{gateway.base_url}/docs")
        rendered = await page.evaluate(_RENDERED)
        await page.call("Network.disable")

    assert "/v1/shelves/{shelf}/books" in rendered["paths"]
    assert "/v1/shelves/{shelf}/books/{book}:publish" in rendered["paths"]
    assert "listBooks" in rendered["ids"]
    assert "ListBooks" in rendered["text"]
    assert "Lists the books on a shelf, a page at a time." in rendered["text"]
    get_books = rendered["paths"].index("/v1/shelves/{shelf}/books")
    assert rendered["methods"][get_books] == "GET"
    fetched = [
        event["params"]["request"]["url"]
        for event in page.events
        if event.get("method") == "Network.requestWillBeSent"
    ]
    assert f"{gateway.base_url}/openapi.json" in fetched
    elsewhere = [  # data: URLs (Swagger UI's inline icons) are no fetch
        url for url in fetched if not url.startswith(("data:", gateway.base_url + "/"))
    ]
    assert not elsewhere, json.dumps(elsewhere)
