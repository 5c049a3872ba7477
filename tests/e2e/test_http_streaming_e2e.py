"""Server and client streaming over HTTP: the three framings, errors mid-stream, cancellation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e


async def lines_of(stack: Any, url: str, accept: str | None = None) -> tuple[httpx.Response, str]:
    headers = {"accept": accept} if accept else {}
    async with stack.client() as client:
        response = await client.get(url, headers=headers)
    return response, response.text


async def test_ndjson_is_the_default(stack: Any) -> None:
    response, text = await lines_of(stack, "/v1/count/3")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line) for line in text.splitlines()] == [
        {"result": {}},
        {"result": {"index": 1}},
        {"result": {"index": 2}},
    ]


async def test_server_sent_events(stack: Any) -> None:
    response, text = await lines_of(stack, "/v1/count/2", "text/event-stream")
    assert response.headers["content-type"] == "text/event-stream"
    assert text == 'data: {}\n\ndata: {"index":1}\n\n'


async def test_json_array(stack: Any) -> None:
    response, text = await lines_of(stack, "/v1/count/3", "application/json")
    assert response.headers["content-type"] == "application/json"
    assert json.loads(text) == [{}, {"index": 1}, {"index": 2}]
    _, empty = await lines_of(stack, "/v1/count/0", "application/json")
    assert json.loads(empty) == []


FAILED = '{"code":9,"message":"failed after 1 ticks","details":[]}'


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, '{"result":{}}\n{"error":' + FAILED + "}\n"),
        ("text/event-stream", "data: {}\n\nevent: error\ndata: " + FAILED + "\n\n"),
        ("application/json", '[{},{"error":' + FAILED + "}]"),
    ],
)
async def test_error_after_messages_is_in_band(
    stack: Any, accept: str | None, expected: str
) -> None:
    response, text = await lines_of(stack, "/v1/count/5?failAfter=1&failCode=9", accept)
    assert response.status_code == 200  # the status line went out with the first message
    assert text == expected


async def test_error_before_first_message_gets_its_status(stack: Any) -> None:
    response, text = await lines_of(stack, "/v1/count/5?failAfter=0&failCode=5")
    assert response.status_code == 404
    assert json.loads(text) == {"code": 5, "message": "failed after 0 ticks", "details": []}


async def test_stream_arrives_message_by_message(stack: Any) -> None:
    async with (
        stack.client() as client,
        client.stream("GET", "/v1/count/3?intervalSeconds=0.3") as response,
    ):
        loop = asyncio.get_running_loop()
        arrivals = []
        async for line in response.aiter_lines():
            arrivals.append((loop.time(), json.loads(line)))
    assert [item for _, item in arrivals] == [
        {"result": {}},
        {"result": {"index": 1}},
        {"result": {"index": 2}},
    ]
    # not buffered: the first line came well before the last was produced
    assert arrivals[-1][0] - arrivals[0][0] > 0.4


async def test_client_disconnect_cancels_the_upstream(stack: Any) -> None:
    streams = stack.kitchen.streams
    async with (
        stack.client() as client,
        client.stream("GET", "/v1/count/1000?intervalSeconds=0.05") as response,
    ):
        async for _ in response.aiter_lines():
            break
    await asyncio.wait_for(streams.cancelled.wait(), 5)
    assert streams.sent < 100


async def test_client_streaming_ndjson_body(stack: Any) -> None:
    async def body() -> Any:
        for value in (1, 2, 3):
            yield json.dumps({"value": str(value)}).encode() + b"\n"
            await asyncio.sleep(0.01)
        yield b'{"value": 4}'  # a last line without a newline still counts

    async with stack.client() as client:
        response = await client.post("/v1/sum", content=body())
    assert response.status_code == 200, response.text
    assert response.json() == {"sum": "10", "count": 4}
    assert stack.kitchen.streams.received == [1, 2, 3, 4]


async def test_client_stream_with_a_bad_line_is_400(stack: Any) -> None:
    async with stack.client() as client:
        response = await client.post("/v1/sum", content=b'{"value": 1}\n{"value": "x"}\n')
    assert response.status_code == 400
    assert response.json()["code"] == 3
    assert "value" in response.json()["message"]


async def test_client_stream_of_many_short_lines_and_lines_split_across_chunks(
    stack: Any,
) -> None:
    many = b"".join(b'{"value": 1}\n' for _ in range(20_000))  # several chunks of short lines

    async def split() -> Any:
        for piece in (b'{"val', b'ue": ', b"2}", b'\n{"value"', b": 3}\n\n", b'{"value": 4}'):
            yield piece
            await asyncio.sleep(0.01)

    async with stack.client() as client:
        bulk = await client.post("/v1/sum", content=many)
        pieces = await client.post("/v1/sum", content=split())
    assert bulk.status_code == 200, bulk.text
    assert bulk.json() == {"sum": "20000", "count": 20000}
    assert pieces.json() == {"sum": "9", "count": 3}


async def test_client_stream_lines_are_held_to_the_body_limit(stack_factory: Any) -> None:
    long_line = json.dumps({"value": 1, "note": "x" * 3000}).encode()

    async with stack_factory(transcoding={"max_body_bytes": 2000}) as stack:
        async with stack.client() as client:
            whole = await client.post("/v1/sum", content=b'{"value": 1}\n' + long_line + b"\n")
            unfinished = await client.post("/v1/sum", content=b'{"value": 1}\n' + long_line)
            fine = await client.post("/v1/sum", content=b'{"value": 1}\n' * 500)
    for response in (whole, unfinished):
        assert response.status_code == 413, response.text
        assert response.json()["code"] == 8
    assert fine.json() == {"sum": "500", "count": 500}  # the limit is per line, not per body


async def test_bidi_over_http(stack: Any) -> None:
    async with stack.client() as client:
        response = await client.post(
            "/v1/shout",
            content=b'{"text":"hi"}\n{"text":"there"}\n',
            headers={"accept": "application/json"},
        )
    assert response.status_code == 200
    assert response.json() == [{"text": "HI"}, {"text": "THERE"}, {"text": "bye"}]


async def test_bidi_error_mid_stream(stack: Any) -> None:
    async with stack.client() as client:
        response = await client.post("/v1/shout", content=b'{"text":"a"}\n{"text":"fail"}\n')
    assert [json.loads(line) for line in response.text.splitlines()] == [
        {"result": {"text": "A"}},
        {"error": {"code": 9, "message": "asked to fail", "details": []}},
    ]


async def test_dead_upstream_stream_is_503() -> None:
    from conftest import make_config, run_gateway
    from test_errors_e2e import closed_port

    async with run_gateway(make_config(closed_port())) as gateway, gateway.client() as client:
        response = await client.get("/v1/count/3")
    assert response.status_code == 503
    assert response.json()["code"] == 14
