"""Hostile forms of map query parameters, derived update masks and raw HttpBody uploads.

Each refusal is the right status with a ``google.rpc.Status`` body, and the recording
upstream proves it never arrived; what is accepted is bounded in time and memory.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from mapping_upstream import mapping_stack

pytestmark = pytest.mark.e2e

_LEAKS = ("Traceback", "Error:", "127.0.0.1", "ParseError", "object at 0x")


def refused(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert not any(leak in response.text for leak in _LEAKS), response.text
    return dict(body)


@pytest.mark.parametrize(
    "query",
    [
        "by_name[a]=1&by_name[a]=2",  # a duplicate key
        "by_name[a]=1&by_name%5Ba%5D=2",  # the same key, encoded
        "by_number[1]=a&by_number[01]=b&by_number[001]=c",  # one number, three spellings
        "by_name[a][b]=1",  # nested brackets
        "by_name[[a]]=1",
        "by_name[a=1",  # unclosed
        "by_name]a[=1",
        "by_name[]]=1&by_name[]=2&by_name[]=3",  # keys "]" and "" then "" again
        "patches[a]=1",  # a map of messages
        "patches[a].title=1",
        "by_number[" + "9" * 400 + "]=1",  # a huge number
        "by_flag[" + "t" * 400 + "]=1",
        "id[x]=1&nope=1",  # brackets on a path-bound field are ignored; nope is not
    ],
)
async def test_hostile_map_parameters_are_400_and_never_sent(query: str) -> None:
    async with mapping_stack() as stack:
        async with stack.client() as client:
            response = await client.get(f"/v1/lookups/L?{query}")
        assert stack.upstream.received == []
    assert refused(response, 400)["code"] == 3


@pytest.mark.parametrize(
    "query",
    [
        "mask=title&mask.paths=x",  # was a 500: the string "title" had no setdefault
        "mask.paths=x&mask=title",
        "mask.paths=x",
        "patch.extra.fields=1",  # a Struct is one JSON value too
        "patch.extra.fields[a]=1",
    ],
)
async def test_a_name_inside_a_value_is_400_and_never_sent(query: str) -> None:
    async with mapping_stack() as stack:
        async with stack.client() as client:
            response = await client.get(f"/v1/lookups/L?{query}")
        assert stack.upstream.received == []
    body = refused(response, 400)
    assert "names a field inside a value" in body["message"]


@pytest.mark.parametrize(
    "query",
    [
        "timestamp=2024-01-01T00:00:00Z&timestamp.seconds=5",  # was silently replaced
        "timestamp.seconds=5&timestamp=2024-01-01T00:00:00Z",
        "duration=1s&duration.nanos=5",
        "int64Wrapper=1&int64Wrapper.value=2",
        "value.stringValue=x",
        "any.typeUrl=x",
    ],
)
async def test_a_value_and_a_field_inside_it_are_400(stack: Any, query: str) -> None:
    seen = len(stack.kitchen.seen)
    async with stack.client() as client:
        response = await client.get(f"/v1/kitchen/k?{query}")
    assert len(stack.kitchen.seen) == seen
    assert "names a field inside a value" in refused(response, 400)["message"]


@pytest.mark.parametrize("unknown", ["reject", "ignore"])
async def test_a_deep_query_name_is_refused_at_the_cap(unknown: str) -> None:
    """Patch.child recurses: a name thousands of segments deep once cost quadratic
    resolution per request. Refused whole, however it would resolve."""
    names = [
        "patch." + "child." * 2000 + "title",  # a field, very deep
        "patch." + "child." * 2000 + "nope",  # nothing, very deep
        "." * 3000,
    ]
    async with mapping_stack(transcoding={"unknown_query_parameters": unknown}) as stack:
        async with stack.client() as client:
            answers = [await client.get(f"/v1/lookups/L?{name}=x") for name in names]
            at_cap = await client.get("/v1/lookups/L?patch." + "child." * 30 + "title=x")
        received: Any = stack.upstream.received
    for answer in answers:
        assert "more than 32 levels deep" in refused(answer, 400)["message"]
    assert at_cap.status_code == 200, at_cap.text
    assert len(received) == 1


async def test_many_and_huge_map_keys_are_bounded() -> None:
    many = "&".join(f"by_name[k{i}]=v" for i in range(1500))
    huge = "by_name[" + "k" * 12000 + "]=v"
    async with mapping_stack() as stack:
        async with stack.client() as client:
            started = time.perf_counter()
            first = await client.get(f"/v1/lookups/L?{many}")
            second = await client.get(f"/v1/lookups/L?{huge}")
            took = time.perf_counter() - started
        entries: Any = stack.upstream.received[0][1]
        long_key: Any = stack.upstream.received[1][1]
    assert first.status_code == 200 and len(entries.by_name) == 1500
    assert second.status_code == 200 and list(long_key.by_name) == ["k" * 12000]
    assert took < 5


async def test_a_deep_patch_body_is_400_and_never_sent() -> None:
    """The mask walk is iterative; the parse refuses what nests past 100 levels."""
    depth = 900
    body = '{"child": ' * depth + '{"title": "x"}' + "}" * depth
    async with mapping_stack() as stack:
        async with stack.client() as client:
            response = await client.patch("/v1/lookups/L", content=body)
        assert stack.upstream.received == []
    assert refused(response, 400)["code"] == 3


async def test_a_wide_patch_body_gives_a_bounded_mask() -> None:
    keys = 50_000
    body = '{"extra": {' + ",".join(f'"k{i}": {i}' for i in range(keys)) + "}}"
    too_big = '{"extra": {' + ",".join(f'"k{i}": {i}' for i in range(400_000)) + "}}"
    async with mapping_stack() as stack:
        async with stack.client() as client:
            started = time.perf_counter()
            response = await client.patch("/v1/lookups/L", content=body)
            took = time.perf_counter() - started
            over = await client.patch("/v1/lookups/L", content=too_big)
        received: Any = stack.upstream.received
    assert response.status_code == 200
    assert len(received) == 1 and len(received[0][1].mask.paths) == keys
    assert took < 10
    refused(over, 413)  # max_body_bytes bounds the mask as it bounds the body


async def test_a_patch_body_that_is_not_an_object() -> None:
    async with mapping_stack() as stack:
        async with stack.client() as client:
            answers = [
                await client.patch("/v1/lookups/L", content=body)
                for body in (b'"x"', b"1", b"{", b'{"title": {"a": 1}}', b'{"child": 3}')
            ]
            nothing = await client.patch("/v1/lookups/L", content=b"null")
        assert len(stack.upstream.received) == 1
    for answer in answers:
        refused(answer, 400)
    assert nothing.status_code == 200  # null is an empty body field, as in json_format


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        b"",
        b"x" * 4000,
        b"text/plain; charset=\xff\xfe",  # obs-text: Latin-1, as HTTP allows
        b"multipart/form-data; boundary=--",
        b"application/json",  # still raw: the route's message is an HttpBody
    ],
)
async def test_http_body_content_types_pass_as_sent(content_type: bytes | None) -> None:
    headers = {} if content_type is None else {b"content-type": content_type}
    async with mapping_stack() as stack:
        async with stack.client() as client:
            response = await client.post("/v1/uploads", content=b"{not json", headers=headers)
        received: Any = stack.upstream.last("Upload")
    assert response.status_code == 200, response.text
    assert received.data == b"{not json"
    assert received.content_type == (content_type or b"").decode("latin-1")


async def test_an_oversized_http_body_is_413_and_never_sent() -> None:
    async with mapping_stack(transcoding={"max_body_bytes": "1KiB"}) as stack:
        async with stack.client() as client:
            sized = await client.post("/v1/uploads", content=b"x" * 2048)

            async def chunks() -> Any:
                for _ in range(4):
                    yield b"y" * 512

            chunked = await client.put("/v1/files/f:attach", content=chunks())
        assert stack.upstream.received == []
    refused(sized, 413)
    refused(chunked, 413)


async def test_a_reply_with_no_json_form_is_502_not_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The Lookup upstream echoes its request: a body key "Big" under a Struct becomes the
    mask path ``extra.Big``, which proto3 JSON cannot print (no capitals in a path)."""
    with caplog.at_level(logging.WARNING, logger="edge"):
        async with mapping_stack() as stack:
            async with stack.client() as client:
                response = await client.patch("/v1/lookups/0", json={"extra": {"Big": 1}})
            received: Any = stack.upstream.last("Lookup")
    assert list(received.mask.paths) == ["extra.Big"]
    body = refused(response, 502)
    assert body["code"] == 13
    assert "Big" not in body["message"]
    assert not any(record.exc_info for record in caplog.records)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "cannot be written as JSON" in logged and "Big" in logged
