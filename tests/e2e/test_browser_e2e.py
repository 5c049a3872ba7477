"""The browser example of docs/websocket.md, run exactly as written in headless Chromium.

The ```js edge-ws-example block of docs/websocket.md is extracted and evaluated in a real browser
page, driven through the Chrome DevTools protocol over a WebSocket (the ``websockets``
library, no browser-automation dependency), against the demo upstream
(``edge.demo.library``) behind a real gateway serving the demo protos.

The page is ``about:blank``. Its origin is opaque, so Chromium sends ``Origin: null`` on
the handshake; the gateway under test therefore lists ``"null"`` in
``websocket.allowed_origins`` (a test-only setting: sandboxed iframes and ``file:`` pages
send ``null`` too, so never allow it in production). A second gateway with the default
``[same-origin]`` shows the handshake refused and the example's Promise rejected.

Chromium is required (see ``tests/browser.py``, which holds the Chromium and DevTools
helpers): when the ``chromium`` binary is missing the test fails with a clear message,
unless ``EDGE_SKIP_BROWSER=1`` is set, in which case it is skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator

import pytest
from browser import Page, chromium, open_page
from conftest import DEMO_PROTOS, ROOT, Gateway, make_config, run_gateway

from edge.demo.library import start_library

pytestmark = pytest.mark.e2e

_EXAMPLE_BLOCK = re.compile(r"^```js edge-ws-example\n(.*?)^```$", re.M | re.S)


EXAMPLE_DOC = ROOT / "docs" / "websocket.md"


def documented_example() -> str:
    """The one ```js edge-ws-example block of docs/websocket.md, unchanged."""
    blocks = _EXAMPLE_BLOCK.findall(EXAMPLE_DOC.read_text())
    assert len(blocks) == 1, f"{EXAMPLE_DOC.name} needs exactly one js edge-ws-example block"
    return str(blocks[0])


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


def ws_base(gateway: Gateway) -> str:
    return gateway.base_url.replace("http://", "ws://")


async def test_the_documented_example_runs_in_chromium(page: Page, upstream_port: int) -> None:
    """The documented usage: bidi Discuss via /ws/, unary GetBook, and a missing book."""
    config = make_config(
        upstream_port, protos=DEMO_PROTOS, extra={"websocket": {"allowed_origins": ["null"]}}
    )
    async with run_gateway(config) as gateway:
        call = f"\n;tryTheLibrary({json.dumps(ws_base(gateway))});"
        outcome = await page.evaluate(documented_example() + call)

    discussion = outcome["discussion"]
    assert [m["text"] for m in discussion["messages"]] == [
        "The Guns of August, by Barbara W. Tuchman (history, 511 pages), is on shelves/1.",
        "Nothing on shelves/1 by that name; try The Guns of August, by Barbara W. Tuchman.",
        "Closing time: 2 remarks heard. Good night.",
    ]
    assert {m["speaker"] for m in discussion["messages"]} == {"librarian"}
    assert discussion["status"] == {"code": 0, "message": "", "details": []}
    assert discussion["closeCode"] == 1000

    book = outcome["book"]
    assert book["messages"][0]["name"] == "shelves/1/books/2"
    assert book["messages"][0]["title"] == "The Guns of August"
    assert book["status"]["code"] == 0
    assert book["closeCode"] == 1000

    missing = outcome["missing"]
    assert missing["messages"] == []
    assert missing["status"] == {
        "code": 5,
        "message": "shelves/1/books/99 does not exist",
        "details": [],
    }
    assert missing["closeCode"] == 4005
    assert missing["closeReason"] == "shelves/1/books/99 does not exist"


async def test_client_and_server_streaming_from_the_browser(page: Page, upstream_port: int) -> None:
    """The same function drives ImportBooks (client streaming) and StreamBooks."""
    config = make_config(
        upstream_port, protos=DEMO_PROTOS, extra={"websocket": {"allowed_origins": ["null"]}}
    )
    async with run_gateway(config) as gateway:
        base = json.dumps(ws_base(gateway))
        script = documented_example() + (
            "\n;(async (gateway) => {"
            "  const imported = await callOverWebSocket(`${gateway}/v1/shelves/2/books:import`, {"
            "    messages: [{ bookId: 'odyssey', book: { title: 'The Odyssey' } },"
            "               { book: { title: 'Beowulf', genre: 'GENRE_POETRY' } }],"
            "  });"
            "  const seen = [];"
            "  const streamed = await callOverWebSocket(`${gateway}/v1/shelves/2/books:stream`, {"
            "    messages: [{ intervalSeconds: 0.01 }], halfClose: false,"
            "    onMessage: (book) => seen.push(book.title),"
            "  });"
            "  const bad = await callOverWebSocket(`${gateway}/v1/shelves/2/books:import`, {"
            "    messages: [{ book: { author: 'nobody' } }], halfClose: false,"
            "  });"
            "  return { imported, streamed, seen, bad };"
            f"}})({base});"
        )
        outcome = await page.evaluate(script)

    imported = outcome["imported"]
    names = [book["name"] for book in imported["messages"][0]["books"]]
    assert names[0] == "shelves/2/books/odyssey"
    assert names[1].startswith("shelves/2/books/")
    assert imported["closeCode"] == 1000
    assert outcome["seen"] == ["Beowulf", "The Odyssey"]  # sorted by name: 4 < odyssey
    assert outcome["streamed"]["status"]["code"] == 0
    bad = outcome["bad"]
    assert bad["status"]["code"] == 3
    assert bad["status"]["details"][0]["fieldViolations"][0]["field"] == "requests[0].book.title"
    assert bad["closeCode"] == 4003


async def test_a_refused_origin_rejects_the_promise(page: Page, upstream_port: int) -> None:
    """With the default allowed_origins ([same-origin]) the handshake from the page fails."""
    config = make_config(upstream_port, protos=DEMO_PROTOS)
    async with run_gateway(config) as gateway:
        url = json.dumps(f"{ws_base(gateway)}/v1/shelves/1/books/2")
        script = documented_example() + (
            f"\n;callOverWebSocket({url}, {{ messages: [{{}}] }})"
            ".then(() => 'resolved', (error) => error.message);"
        )
        outcome = await page.evaluate(script)
    assert outcome.startswith("WebSocket to ws://")
    assert outcome.endswith("never opened (close code 1006)")


async def test_close_code_survives_a_frame_in_flight(page: Page, upstream_port: int) -> None:
    """A half-close sent after a unary message must not cost the browser the close code."""
    config = make_config(
        upstream_port, protos=DEMO_PROTOS, extra={"websocket": {"allowed_origins": ["null"]}}
    )
    async with run_gateway(config) as gateway:
        url = json.dumps(f"{ws_base(gateway)}/v1/shelves/1/books/99")
        script = documented_example() + (
            "\n;(async () => {"
            "  const codes = [];"
            "  for (let i = 0; i < 40; i++) {"
            f"    const r = await callOverWebSocket({url}, {{ messages: [{{}}] }});"
            "    codes.push(r.closeCode);"
            "  }"
            "  return codes;"
            "})();"
        )
        codes = await page.evaluate(script)
    assert codes == [4005] * 40
