"""``google.api.HttpBody`` replies over HTTP, with a real upstream and real Hypercorn:
unary and streamed downloads, ``response_body`` naming an HttpBody field, errors before
and after the first piece, and the demo's export and download."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import DEMO_PROTOS, Gateway, make_config, run_gateway
from http_body_upstream import BodyUpstream, body_upstream, piece, write_body_protos

pytestmark = pytest.mark.e2e


@contextlib.asynccontextmanager
async def body_gateway(folder: Path) -> AsyncIterator[tuple[Gateway, BodyUpstream]]:
    async with body_upstream() as (port, upstream):
        config = make_config(port, protos=write_body_protos(folder))
        async with run_gateway(config) as gateway:
            yield gateway, upstream


@pytest.fixture
async def body(tmp_path: Path) -> AsyncIterator[tuple[Gateway, BodyUpstream]]:
    async with body_gateway(tmp_path) as running:
        yield running


async def test_unary_http_body_is_the_response_body_with_its_content_type(body: Any) -> None:
    gateway, _ = body
    async with gateway.client() as client:
        response = await client.get("/v1/body/x?size=1000&contentType=image/png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == piece(0, 1000)  # raw bytes, every value, no JSON or base64
    assert response.headers["content-length"] == "1000"
    assert response.headers["grpc-metadata-x-origin"] == "body-upstream"
    assert response.headers["grpc-trailer-x-checksum"] == "c0ffee"


async def test_content_type_parameters_are_kept_and_an_empty_one_is_octet_stream(
    body: Any,
) -> None:
    gateway, _ = body
    async with gateway.client() as client:
        csv = await client.get(
            "/v1/body/x?size=3", params={"contentType": "text/csv; charset=utf-8"}
        )
        bare = await client.get("/v1/body/x?size=3")
    assert csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert bare.headers["content-type"] == "application/octet-stream"
    assert bare.content == piece(0, 3)


async def test_unary_http_body_error_is_the_usual_status_json(body: Any) -> None:
    gateway, _ = body
    async with gateway.client() as client:
        response = await client.get("/v1/body/x?size=3&failCode=5&failMessage=no%20such%20file")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"code": 5, "message": "no such file", "details": []}


async def test_response_body_naming_an_http_body_field(body: Any) -> None:
    gateway, _ = body
    async with gateway.client() as client:
        unary = await client.get("/v1/wrapped/x?size=10&contentType=text/plain")
        streamed = await client.get("/v1/wrapped-pieces/x?size=4&count=3&contentType=text/plain")
    assert unary.headers["content-type"] == "text/plain"
    assert unary.content == piece(0, 10)  # the field's bytes, not the wrapper's JSON
    assert streamed.headers["content-type"] == "text/plain"
    assert streamed.content == piece(0, 4) + piece(1, 4) + piece(2, 4)


async def test_a_streamed_download_arrives_in_pieces_before_the_stream_ends(body: Any) -> None:
    gateway, _ = body
    loop = asyncio.get_running_loop()
    arrivals: list[tuple[float, bytes]] = []
    url = "/v1/pieces/x?count=4&size=20000&intervalSeconds=0.3&contentType=application/zip"
    async with gateway.client() as client, client.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/zip"
        assert "content-length" not in response.headers  # streamed, not buffered
        async for chunk in response.aiter_raw():
            arrivals.append((loop.time(), chunk))
    assert b"".join(chunk for _, chunk in arrivals) == b"".join(
        piece(index, 20000) for index in range(4)
    )  # no framing, no separators
    # not buffered: the first piece came while the upstream was still producing the rest
    # (0.9 s of pauses); a buffered answer would arrive all at once
    assert arrivals[-1][0] - arrivals[0][0] > 0.6


async def test_the_first_message_content_type_wins(body: Any) -> None:
    gateway, _ = body
    async with gateway.client() as client:
        response = await client.get("/v1/pieces/x?count=2&size=5&contentType=text/csv")
    assert response.headers["content-type"] == "text/csv"
    assert response.content == piece(0, 5) + piece(1, 5)


async def test_an_empty_stream_is_an_empty_octet_stream(body: Any) -> None:
    gateway, _ = body
    async with gateway.client() as client:
        response = await client.get("/v1/pieces/x?count=0&contentType=text/csv")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == b""


async def test_a_stream_failing_before_its_first_piece_gets_its_status(body: Any) -> None:
    gateway, _ = body
    async with gateway.client() as client:
        response = await client.get("/v1/pieces/x?count=3&size=5&failCode=7&failAfter=0")
    assert response.status_code == 403
    assert response.json()["code"] == 7


async def test_a_late_error_without_trailers_cuts_an_http1_download(body: Any) -> None:
    """HTTP/1.1 has no trailers here: the connection is dropped before the last chunk, so
    the client sees a broken download, never a short one that looks complete."""
    gateway, _ = body
    received = b""
    url = "/v1/pieces/x?count=5&size=1000&failCode=14&failAfter=2&contentType=text/plain"
    async with gateway.client() as client:
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            async with client.stream("GET", url) as response:
                assert response.status_code == 200
                async for chunk in response.aiter_raw():
                    received += chunk
        assert received == piece(0, 1000) + piece(1, 1000)  # no error text in the file
        after = await client.get("/v1/body/x?size=2")  # the gateway serves on
    assert after.content == piece(0, 2)


async def test_leaving_a_download_cancels_the_upstream(body: Any) -> None:
    gateway, upstream = body
    url = "/v1/pieces/x?count=1000&size=100&intervalSeconds=0.05"
    async with gateway.client() as client, client.stream("GET", url) as response:
        async for _ in response.aiter_raw():
            break
    await asyncio.wait_for(upstream.cancelled.wait(), 5)
    assert upstream.sent < 100


async def test_the_demo_exports_a_shelf_as_csv_and_downloads_a_book() -> None:
    from edge.demo.library import start_library

    server, port = await start_library()
    try:
        async with run_gateway(make_config(port, protos=DEMO_PROTOS)) as gateway:
            async with gateway.client() as client:
                export = await client.get("/v1/shelves/1/books:export")
                download = await client.get(
                    "/v1/shelves/1/books/3:download", params={"pagesPerPiece": 100}
                )
                missing = await client.get("/v1/shelves/1/books/99:download")
                stream = await client.get("/v1/shelves/1/books:stream")  # JSON as before
    finally:
        await server.stop(grace=None)
    assert export.headers["content-type"] == "text/csv; charset=utf-8"
    rows = export.text.splitlines()
    assert rows[0] == "name,title,author,genre,page_count,tags"
    assert "shelves/1/books/3,The Double Helix,James D. Watson,GENRE_SCIENCE,256," in rows
    assert download.headers["content-type"] == "text/plain; charset=utf-8"
    text = download.text
    assert text.startswith("The Double Helix\nby James D. Watson\n\nPage 1 of The Double Helix.\n")
    assert text.endswith("Page 256 of The Double Helix.\n")
    assert text.count("\n") == 3 + 256
    assert missing.status_code == 404
    assert missing.json()["code"] == 5
    assert stream.headers["content-type"] == "application/x-ndjson"
    assert stream.text.count('"result"') == 3


async def test_the_demo_exports_and_counts_a_genre_it_does_not_know() -> None:
    """proto3 enums are open: a client may store any int32 as a genre, and the demo's
    export, stats and download then show its number instead of failing (Schemathesis
    found the export answering 500 with the servicer's ValueError in its message)."""
    from edge.demo.library import start_library

    server, port = await start_library()
    try:
        async with run_gateway(make_config(port, protos=DEMO_PROTOS)) as gateway:
            async with gateway.client() as client:
                created = await client.post(
                    "/v1/shelves/2/books",
                    json={"title": "Odd", "author": "Someone", "genre": 14851, "pageCount": 3},
                )
                book = created.json()["name"]
                export = await client.get("/v1/shelves/2/books:export")
                stats = await client.post(
                    "/edgedemo.library.v1.LibraryService/GetShelfStats", json={"shelf": "2"}
                )
                download = await client.get(f"/v1/{book}:download")
    finally:
        await server.stop(grace=None)
    assert created.status_code == 200, created.text
    assert export.status_code == 200, export.text
    assert f"{book},Odd,Someone,14851,3," in export.text.splitlines()
    assert stats.status_code == 200, stats.text
    assert stats.json()["booksByGenre"]["14851"] == "1"
    assert download.status_code == 200, download.text
