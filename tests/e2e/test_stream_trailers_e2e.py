"""HTTP trailers at the end of server streams, read by a real HTTP/2 client (the ``h2``
package: httpx does not expose trailers), and by curl when it is installed."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import Gateway, make_config, run_gateway
from h2_trailers import h2_get
from http_body_upstream import body_upstream, piece, write_body_protos

pytestmark = pytest.mark.e2e

TE = [("te", "trailers")]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with body_upstream() as (port, _):
        config = make_config(port, protos=write_body_protos(tmp_path))
        async with run_gateway(config) as running:
            yield running


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/x-ndjson", b'{"result":{}}\n{"result":{"index":1}}\n'),
        ("text/event-stream", b'data: {}\n\ndata: {"index":1}\n\n'),
        ("application/json", b'[{},{"index":1}]'),
    ],
)
async def test_a_stream_that_ends_well_has_status_0_and_the_upstream_trailers(
    gateway: Gateway, accept: str, expected: bytes
) -> None:
    answer = await h2_get(gateway.port, "/v1/ticks/x?count=2", [*TE, ("accept", accept)])
    assert answer.status == "200"
    assert answer.body == expected  # the body is as without trailers
    assert answer.trailers == {"grpc-status": "0", "grpc-trailer-x-checksum": "c0ffee"}
    assert answer.ended


@pytest.mark.parametrize(
    ("accept", "in_band"),
    [
        ("application/x-ndjson", b'{"result":{}}\n{"error":'),
        ("text/event-stream", b"data: {}\n\nevent: error\ndata: "),
        ("application/json", b'[{},{"error":'),
    ],
)
async def test_a_late_error_is_in_band_and_in_the_trailers(
    gateway: Gateway, accept: str, in_band: bytes
) -> None:
    message = "disk 100% full, café closed"
    path = f"/v1/ticks/x?count=3&failCode=8&failAfter=1&failMessage={quote(message)}"
    answer = await h2_get(gateway.port, path, [*TE, ("accept", accept)])
    assert answer.status == "200"  # went out with the first message
    assert answer.body.startswith(in_band)
    assert json.dumps(message, ensure_ascii=False).encode() in answer.body
    assert answer.trailers == {
        "grpc-status": "8",
        # percent-encoded as gRPC does: "%" and the UTF-8 bytes of "é"
        "grpc-message": "disk 100%25 full, caf%C3%A9 closed",
        "grpc-trailer-x-checksum": "partial",
    }


async def test_a_late_error_in_a_download_is_told_in_the_trailers_only(gateway: Gateway) -> None:
    path = "/v1/pieces/x?count=4&size=3000&failCode=14&failAfter=2&contentType=text/plain"
    answer = await h2_get(gateway.port, path, TE)
    assert answer.status == "200"
    assert answer.headers["content-type"] == "text/plain"
    assert answer.body == piece(0, 3000) + piece(1, 3000)  # nothing but the file's bytes
    assert answer.trailers is not None
    assert answer.trailers["grpc-status"] == "14"
    assert answer.trailers["grpc-message"] == "failed after 2"
    assert answer.ended


async def test_a_whole_download_ends_with_status_0(gateway: Gateway) -> None:
    answer = await h2_get(gateway.port, "/v1/pieces/x?count=3&size=10", TE)
    assert answer.body == piece(0, 10) + piece(1, 10) + piece(2, 10)
    assert answer.trailers == {"grpc-status": "0", "grpc-trailer-x-checksum": "c0ffee"}


async def test_without_te_trailers_there_are_none(gateway: Gateway) -> None:
    ticks = await h2_get(gateway.port, "/v1/ticks/x?count=2&failCode=8&failAfter=1")
    assert ticks.trailers is None
    assert (
        ticks.body
        == b'{"result":{}}\n{"error":{"code":8,"message":"failed after 1","details":[]}}\n'
    )
    # HTTP/2 without trailers: a late error can only end the download (documented)
    download = await h2_get(gateway.port, "/v1/pieces/x?count=3&size=10&failCode=8&failAfter=1")
    assert download.trailers is None
    assert download.ended
    assert download.body == piece(0, 10)


async def test_http1_ignores_te_trailers(gateway: Gateway) -> None:
    """Hypercorn offers no trailers on HTTP/1.1: the stream is as it always was."""
    async with gateway.client() as client:
        response = await client.get("/v1/ticks/x?count=2", headers={"te": "trailers"})
    assert response.http_version == "HTTP/1.1"
    assert response.text == '{"result":{}}\n{"result":{"index":1}}\n'
    assert "trailer" not in response.headers


async def test_a_unary_answer_is_unchanged_by_te_trailers(gateway: Gateway) -> None:
    answer = await h2_get(gateway.port, "/v1/body/x?size=4&contentType=text/plain", TE)
    assert answer.body == piece(0, 4)
    assert answer.headers["content-length"] == "4"
    assert answer.trailers is None


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_reads_the_trailers(gateway: Gateway) -> None:
    path = "/v1/pieces/x?count=2&size=3&failCode=9&failAfter=1&contentType=text/plain"
    curl = await asyncio.create_subprocess_exec(
        *("curl", "-s", "-i", "--http2-prior-knowledge", "-H", "TE: trailers"),
        gateway.base_url + path,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(curl.communicate(), 30)
    assert curl.returncode == 0
    assert out.startswith(b"HTTP/2 200")
    trailers = (
        b"grpc-status: 9\r\ngrpc-message: failed after 1\r\ngrpc-trailer-x-checksum: partial\r\n"
    )
    assert out.endswith(piece(0, 3) + trailers)
