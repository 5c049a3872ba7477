"""Compression end to end: real Hypercorn, a real grpc.aio upstream, real clients.

Responses are read raw (``tests/compressing.py``), so the tests see the bytes on the wire:
the coding, the length, ``Vary``, and a stream that stays live compressed. Request bodies
go up compressed, unary and as a client stream.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import brotli
import httpx
import pytest
from browser import chromium, open_page
from compressing import decode, fetch_raw, gzip_bytes, vary_items
from conftest import Gateway, make_config, run_gateway
from h2_trailers import h2_get
from http_body_upstream import body_upstream, piece, write_body_protos
from recording import start_edge

pytestmark = pytest.mark.e2e

StackFactory = Callable[..., AbstractAsyncContextManager[Any]]
BIG = "x" * 4000  # an answer well above min_size
ECHO = {"stringValue": "big", "repeatedString": [BIG]}


@pytest.mark.parametrize("coding", ["gzip", "br"])
async def test_a_unary_answer_is_compressed_with_its_length(stack: Any, coding: str) -> None:
    async with stack.client() as client:
        raw = await fetch_raw(
            client, "POST", "/v1/kitchen", json=ECHO, headers={"accept-encoding": coding}
        )
    assert raw.status == 200
    assert raw.headers["content-encoding"] == coding
    assert int(raw.headers["content-length"]) == len(raw.body) < len(BIG) // 4
    assert "accept-encoding" in vary_items(raw.headers)
    assert json.loads(decode(coding, raw.body)) == ECHO


async def test_browsers_weighing_codings_alike_get_brotli_and_gzip_streams(stack: Any) -> None:
    browser = {"accept-encoding": "gzip, deflate, br, zstd"}
    async with stack.client() as client:
        raw = await fetch_raw(client, "POST", "/v1/kitchen", json=ECHO, headers=browser)
        stream = await fetch_raw(client, "GET", "/v1/count/2", headers=browser)
    assert raw.headers["content-encoding"] == "br"
    assert stream.headers["content-encoding"] == "gzip"  # stream_algorithms: gzip only
    assert decode("gzip", stream.body) == b'{"result":{}}\n{"result":{"index":1}}\n'


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("gzip;q=1.0, br;q=0.5", "gzip"),
        ("br;q=0, *", "gzip"),
        ("x-gzip", "gzip"),
        ("deflate, zstd", None),
        ("identity", None),
        ("gzip;q=0.5, identity", None),  # the client prefers it unencoded
        ("gzip;q=0.5, br;q=0.6, *", None),  # identity through *
        ("identity;q=0, *;q=0", None),  # nothing acceptable: identity all the same (as nginx)
        ("gzip;q=2, br;q=abc", None),  # junk weights: those items are ignored
    ],
)
async def test_accept_encoding_weights_are_honoured(
    stack: Any, accept: str, expected: str | None
) -> None:
    async with stack.client() as client:
        raw = await fetch_raw(
            client, "POST", "/v1/kitchen", json=ECHO, headers={"accept-encoding": accept}
        )
    assert raw.status == 200
    assert raw.headers.get("content-encoding") == expected
    assert json.loads(decode(expected, raw.body)) == ECHO
    assert int(raw.headers["content-length"]) == len(raw.body)


async def test_a_small_answer_is_sent_as_it_is(stack: Any) -> None:
    async with stack.client() as client:
        raw = await fetch_raw(
            client, "GET", "/v1/kitchen/small", headers={"accept-encoding": "gzip"}
        )
    assert raw.status == 200
    assert "content-encoding" not in raw.headers
    assert json.loads(raw.body) == {"stringValue": "small"}


async def test_a_large_error_body_is_compressed(stack: Any) -> None:
    async with stack.client() as client:
        raw = await fetch_raw(
            client,
            "POST",
            "/v1/fail",
            json={"code": 5, "message": "m" * 3000},
            headers={"accept-encoding": "gzip"},
        )
    assert raw.status == 404
    assert raw.headers["content-encoding"] == "gzip"
    assert json.loads(decode("gzip", raw.body))["message"] == "m" * 3000


async def test_an_ndjson_stream_is_compressed_and_stays_live(stack: Any) -> None:
    """Each message is flushed: it decodes fully before the upstream has sent the next."""
    async with (
        stack.client() as client,
        client.stream(
            "GET", "/v1/count/3?intervalSeconds=0.4", headers={"accept-encoding": "gzip"}
        ) as response,
    ):
        assert response.headers["content-encoding"] == "gzip"
        assert "content-length" not in response.headers
        assert "accept-encoding" in vary_items(response.headers)
        inflate = zlib.decompressobj(31)
        loop = asyncio.get_running_loop()
        arrivals: list[tuple[float, bytes]] = []
        async for chunk in response.aiter_raw():
            text = inflate.decompress(chunk)
            if text:
                arrivals.append((loop.time(), text))
        assert inflate.eof  # the stream's trailer came at its end
    lines = b"".join(text for _, text in arrivals).splitlines()
    assert [json.loads(line) for line in lines] == [
        {"result": {}},
        {"result": {"index": 1}},
        {"result": {"index": 2}},
    ]
    # every message decoded on arrival, 0.4 s apart, not all at the end
    whole = [(at, text) for at, text in arrivals if text.endswith(b"\n")]
    assert len(whole) == 3
    assert whole[2][0] - whole[0][0] > 0.6


async def test_over_http2_too(stack: Any) -> None:
    async with stack.client(http1=False, http2=True) as client:
        unary = await fetch_raw(
            client, "POST", "/v1/kitchen", json=ECHO, headers={"accept-encoding": "br"}
        )
        stream = await fetch_raw(client, "GET", "/v1/count/2", headers={"accept-encoding": "gzip"})
    assert unary.headers["content-encoding"] == "br"
    assert json.loads(decode("br", unary.body)) == ECHO
    assert decode("gzip", stream.body) == b'{"result":{}}\n{"result":{"index":1}}\n'


async def test_server_sent_events_in_brotli_when_streams_offer_it(
    stack_factory: StackFactory,
) -> None:
    """Streams offer gzip only by default (a brotli compressor per open stream costs
    several times gzip's memory): a br-only client gets its stream plain, unless the
    operator adds br to stream_algorithms."""
    sse = {"accept": "text/event-stream", "accept-encoding": "br"}
    async with stack_factory() as running, running.client() as client:
        plain = await fetch_raw(client, "GET", "/v1/count/2", headers=sse)
    assert "content-encoding" not in plain.headers
    assert plain.body == b'data: {}\n\ndata: {"index":1}\n\n'
    offered = {"stream_algorithms": ["gzip", "br"]}
    async with stack_factory(compression=offered) as running, running.client() as client:
        raw = await fetch_raw(client, "GET", "/v1/count/2", headers=sse)
    assert raw.headers["content-type"] == "text/event-stream"
    assert raw.headers["content-encoding"] == "br"
    assert decode("br", raw.body) == b'data: {}\n\ndata: {"index":1}\n\n'


async def test_a_route_can_turn_compression_off(stack_factory: StackFactory) -> None:
    policies = [{"match": ["edgetest.v1.StreamService.*"], "compression": False}]
    async with stack_factory(policies=policies) as running, running.client() as client:
        stream = await fetch_raw(client, "GET", "/v1/count/2", headers={"accept-encoding": "gzip"})
        unary = await fetch_raw(
            client, "POST", "/v1/kitchen", json=ECHO, headers={"accept-encoding": "gzip"}
        )
    assert "content-encoding" not in stream.headers
    assert stream.body == b'{"result":{}}\n{"result":{"index":1}}\n'
    assert unary.headers["content-encoding"] == "gzip"  # other routes keep it


async def test_compression_can_be_off_globally(stack_factory: StackFactory) -> None:
    async with (
        stack_factory(compression={"enabled": False}) as running,
        running.client() as client,
    ):
        raw = await fetch_raw(
            client, "POST", "/v1/kitchen", json=ECHO, headers={"accept-encoding": "gzip"}
        )
    assert "content-encoding" not in raw.headers
    assert json.loads(raw.body) == ECHO


async def test_cors_and_compression_share_one_vary(stack_factory: StackFactory) -> None:
    origin = "https://app.example"
    async with (
        stack_factory(cors={"allow_origins": [origin]}) as running,
        running.client() as client,
    ):
        raw = await fetch_raw(
            client,
            "POST",
            "/v1/kitchen",
            json=ECHO,
            headers={"accept-encoding": "gzip", "origin": origin},
        )
    assert raw.headers["access-control-allow-origin"] == origin
    assert {"origin", "accept-encoding"} <= set(vary_items(raw.headers))


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_compressed(stack: Any) -> None:
    process = await asyncio.create_subprocess_exec(
        "curl",
        "-sS",
        "--compressed",
        "-D",
        "-",
        "-H",
        "content-type: application/json",
        "--data",
        json.dumps(ECHO),
        f"{stack.gateway.base_url}/v1/kitchen",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"content-encoding: " in head.lower()  # curl asked, the gateway compressed
    assert json.loads(body) == ECHO  # and curl decoded it


# -- request bodies --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip_bytes),
        ("x-gzip", gzip_bytes),
        ("br", brotli.compress),
        ("gzip, br", lambda data: brotli.compress(gzip_bytes(data))),
        ("identity", lambda data: data),
    ],
)
async def test_a_compressed_json_body_is_decoded(
    stack: Any, coding: str, encode: Callable[[bytes], bytes]
) -> None:
    async with stack.client() as client:
        answer = await client.post(
            "/v1/kitchen",
            content=encode(json.dumps(ECHO).encode()),
            headers={"content-type": "application/json", "content-encoding": coding},
        )
    assert answer.status_code == 200, answer.text
    assert answer.json() == ECHO
    assert stack.kitchen.seen[-1].repeated_string == [BIG]


async def test_a_compressed_ndjson_upload_streams_upstream(stack: Any) -> None:
    """A client stream, gzip'd and sent in small pieces as it is produced."""
    lines = b"".join(b'{"value": %d}\n' % n for n in range(1, 501))
    body = gzip_bytes(lines)

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 97):
            yield body[start : start + 97]
            await asyncio.sleep(0)

    async with stack.client() as client:
        answer = await client.post(
            "/v1/sum",
            content=pieces(),
            headers={"content-type": "application/x-ndjson", "content-encoding": "gzip"},
        )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"sum": str(sum(range(1, 501))), "count": 500}


# -- a browser ---------------------------------------------------------------------------

FETCH = """
(async () => {
  const answer = await fetch("/v1/kitchen", {
    method: "POST",
    headers: {"content-type": "application/json"},
    body: JSON.stringify(%s),
  });
  const stream = await fetch("/v1/count/3", {headers: {accept: "text/event-stream"}});
  return {
    status: answer.status,
    coding: answer.headers.get("content-encoding"),
    body: await answer.json(),
    streamCoding: stream.headers.get("content-encoding"),
    events: await stream.text(),
  };
})()
"""


@pytest.fixture(scope="module")
def devtools_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with chromium(tmp_path_factory.mktemp("chromium")) as port:
        yield port


@pytest.mark.parametrize("coding", ["gzip", "br"])
async def test_a_browser_reads_a_compressed_answer_and_stream(
    stack_factory: StackFactory, devtools_port: int, coding: str
) -> None:
    """Chromium's own decoder reads what the gateway compressed (``algorithms`` narrowed
    to one coding, so the test shows each is understood)."""
    async with (
        stack_factory(
            compression={"algorithms": [coding], "stream_algorithms": [coding]}
        ) as running,
        open_page(devtools_port) as page,
    ):
        await page.navigate(f"{running.gateway.base_url}/healthz")  # same origin
        outcome = await page.evaluate(FETCH % json.dumps(ECHO))
    assert outcome["status"] == 200
    assert outcome["coding"] == coding
    assert outcome["body"] == ECHO
    assert outcome["streamCoding"] == coding
    assert outcome["events"] == 'data: {}\n\ndata: {"index":1}\n\ndata: {"index":2}\n\n'


async def test_a_proxied_answer_is_passed_through_untouched() -> None:
    """An upstream's encoding is its own business: its JSON goes out as it came."""
    async with start_edge() as edge, edge.gateway.client() as client:
        raw = await fetch_raw(
            client, "GET", "/api/echo", headers={"accept-encoding": "gzip", "x-pad": "p" * 3000}
        )
    assert raw.status == 200
    assert raw.headers["content-type"] == "application/json"
    assert "content-encoding" not in raw.headers
    seen = json.loads(raw.body)  # plain JSON, over 1 KiB
    assert len(raw.body) > 3000
    assert ("accept-encoding", "gzip") in edge.http.headers_of()  # the upstream could choose
    assert seen["method"] == "GET"


async def test_with_decode_requests_off_a_compressed_body_is_415_naming_identity(
    stack_factory: StackFactory,
) -> None:
    """The 415 tells the client what it may send instead (RFC 9110 15.5.16): identity only."""
    async with (
        stack_factory(compression={"decode_requests": False}) as running,
        running.client() as client,
    ):
        answer = await client.post(
            "/v1/kitchen",
            content=gzip_bytes(json.dumps(ECHO).encode()),
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
        plain = await client.post("/v1/kitchen", json=ECHO)
    assert answer.status_code == 415, answer.text
    assert answer.headers["accept-encoding"] == "identity"
    assert answer.json()["code"] == 12
    assert plain.status_code == 200 and plain.json() == ECHO


# -- HttpBody downloads and trailers -----------------------------------------------------


@pytest.fixture
async def body_gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    """The HttpBody upstream, with text/plain downloads compressed too."""
    types = ["application/json", "application/x-ndjson", "text/event-stream", "text/*"]
    async with body_upstream() as (port, _):
        config = make_config(
            port,
            protos=write_body_protos(tmp_path),
            extra={"compression": {"content_types": types}},
        )
        async with run_gateway(config) as running:
            yield running


TRAILERS = [("te", "trailers"), ("accept-encoding", "gzip")]


async def test_trailers_follow_a_compressed_stream_over_http2(body_gateway: Gateway) -> None:
    answer = await h2_get(
        body_gateway.port, "/v1/ticks/x?count=2", [*TRAILERS, ("accept", "application/x-ndjson")]
    )
    assert answer.status == "200"
    assert answer.headers["content-encoding"] == "gzip"
    inflate = zlib.decompressobj(31)
    assert inflate.decompress(answer.body) == b'{"result":{}}\n{"result":{"index":1}}\n'
    assert inflate.eof  # the coding's end came before the trailers
    assert answer.trailers == {"grpc-status": "0", "grpc-trailer-x-checksum": "c0ffee"}
    assert answer.ended


async def test_a_late_error_in_a_compressed_download_is_in_the_trailers_over_http2(
    body_gateway: Gateway,
) -> None:
    path = "/v1/pieces/x?count=4&size=3000&failCode=14&failAfter=2&contentType=text/plain"
    answer = await h2_get(body_gateway.port, path, TRAILERS)
    assert answer.status == "200"
    assert answer.headers["content-encoding"] == "gzip"
    assert zlib.decompress(answer.body, 31) == piece(0, 3000) + piece(1, 3000)
    assert answer.trailers is not None
    assert answer.trailers["grpc-status"] == "14"
    assert answer.ended


async def test_a_late_error_cuts_a_compressed_http1_download(body_gateway: Gateway) -> None:
    """No trailers on HTTP/1.1: the connection is dropped before the last chunk, and the
    gzip stream never gets its end, so no client takes the part for the whole file."""
    url = "/v1/pieces/x?count=5&size=1000&failCode=14&failAfter=2&contentType=text/plain"
    received = b""
    async with body_gateway.client() as client:
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            async with client.stream("GET", url, headers={"accept-encoding": "gzip"}) as response:
                assert response.status_code == 200
                assert response.headers["content-encoding"] == "gzip"
                async for chunk in response.aiter_raw():
                    received += chunk
        after = await client.get("/v1/body/x?size=2")  # the gateway serves on
    inflate = zlib.decompressobj(31)
    assert inflate.decompress(received) == piece(0, 1000) + piece(1, 1000)  # no error text
    assert not inflate.eof  # cut: the gzip trailer never came
    with pytest.raises(zlib.error):
        zlib.decompress(received, 31)
    assert after.content == piece(0, 2)
