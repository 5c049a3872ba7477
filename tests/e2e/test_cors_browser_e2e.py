"""CORS in a real browser: a page on a second origin calls the gateway, another is refused.

Headless Chromium (``tests/browser.py``) loads a page from one loopback port while the
gateway listens on another, so every call is cross-origin and the browser enforces CORS
itself: a ``fetch()`` POST with JSON and a custom header is preflighted, an
``EventSource`` reads a server stream as Server-Sent Events, and the page reads an
exposed response header. A page on an origin the config does not list gets nothing: the
browser rejects its ``fetch()`` although the gateway served the request.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from browser import Page, chromium, open_page
from conftest import DEMO_PROTOS, Gateway, make_config, run_gateway
from http_upstream import Message, Receive, Send, serve_asgi

from edge.demo.library import start_library

pytestmark = pytest.mark.e2e

_PAGE = b"<!doctype html><html><head><meta charset='utf-8'><title>page</title></head></html>"


async def _page_app(scope: Message, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]}
    )
    await send({"type": "http.response.body", "body": _PAGE})


@pytest.fixture(scope="module")
def devtools_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with chromium(tmp_path_factory.mktemp("chromium")) as port:
        yield port


@pytest.fixture
async def page(devtools_port: int) -> AsyncIterator[Page]:
    async with open_page(devtools_port) as opened:
        yield opened


@pytest.fixture
async def origins() -> AsyncIterator[tuple[str, str]]:
    """Two pages on two loopback ports: the allowed origin and a refused one."""
    async with serve_asgi(_page_app) as allowed, serve_asgi(_page_app) as refused:
        yield f"http://127.0.0.1:{allowed}", f"http://127.0.0.1:{refused}"


@pytest.fixture
async def gateway(origins: tuple[str, str]) -> AsyncIterator[Gateway]:
    server, port = await start_library()
    try:
        config = make_config(
            port, protos=DEMO_PROTOS, extra={"cors": {"allow_origins": [origins[0]]}}
        )
        async with run_gateway(config) as running:
            yield running
    finally:
        await server.stop(grace=None)


async def _run(page: Page, origin: str, script: str) -> Any:
    await page.navigate(f"{origin}/")
    return await page.evaluate(script)


FETCH_POST = """
(async (base) => {
  const answer = await fetch(base + "/v1/shelves/1/books", {
    method: "POST",
    headers: {"content-type": "application/json", "x-request-id": "from-the-page"},
    body: JSON.stringify({title: "Dune", author: "Frank Herbert", genre: "GENRE_FICTION"}),
  });
  const missing = await fetch(base + "/v1/shelves/1/books/99");
  return {
    status: answer.status,
    book: await answer.json(),
    requestId: answer.headers.get("x-request-id"),
    missingStatus: missing.status,
    missing: await missing.json(),
  };
})(%s)
"""

EVENT_SOURCE = """
(async (base) => await new Promise((resolve, reject) => {
  const source = new EventSource(base + "/v1/shelves/1/books:stream");
  const titles = [];
  source.onmessage = (event) => {
    titles.push(JSON.parse(event.data).title);
    if (titles.length === 2) { source.close(); resolve(titles); }
  };
  source.onerror = () => { source.close(); reject(new Error("EventSource failed: " + titles)); };
  setTimeout(() => { source.close(); reject(new Error("timed out: " + titles)); }, 5000);
}))(%s)
"""

REFUSED_FETCH = """
(async (base) => {
  try {
    await fetch(base + "/v1/shelves/1/books", {
      method: "POST", headers: {"content-type": "application/json"}, body: "{}"});
    return "read";
  } catch (error) { return error.name; }
})(%s)
"""


async def test_a_page_on_an_allowed_origin_posts_json_and_reads_exposed_headers(
    page: Page, origins: tuple[str, str], gateway: Gateway
) -> None:
    outcome = await _run(page, origins[0], FETCH_POST % json.dumps(gateway.base_url))
    assert outcome["status"] == 200, outcome
    assert outcome["book"]["title"] == "Dune"
    assert outcome["requestId"] == "from-the-page"  # exposed by default
    assert outcome["missingStatus"] == 404  # an error is readable too
    assert outcome["missing"]["code"] == 5


async def test_an_event_source_on_another_origin_reads_a_server_stream(
    page: Page, origins: tuple[str, str], gateway: Gateway
) -> None:
    titles = await _run(page, origins[0], EVENT_SOURCE % json.dumps(gateway.base_url))
    assert len(titles) == 2 and all(isinstance(t, str) and t for t in titles)


async def test_a_page_on_a_refused_origin_is_blocked_by_the_browser(
    page: Page, origins: tuple[str, str], gateway: Gateway
) -> None:
    assert await _run(page, origins[1], REFUSED_FETCH % json.dumps(gateway.base_url)) == "TypeError"
    # and from the allowed origin the same call is read: the refusal was the origin's
    assert await _run(page, origins[0], REFUSED_FETCH % json.dumps(gateway.base_url)) != "TypeError"
