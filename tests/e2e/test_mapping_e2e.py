"""The mapping beyond plain JSON, through real Hypercorn and real grpc.aio upstreams.

PATCH update masks derived from the body, map fields from query parameters, query
parameters for fields the path or body binds, raw ``google.api.HttpBody`` uploads, the
404/405 line for custom verbs, and empty upstream status messages. Each test reads what
the upstream received, not only what the client got back.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from conftest import DEMO_PROTOS, make_config, run_gateway
from mapping_upstream import mapping_stack

from edge.demo.library import start_library

pytestmark = pytest.mark.e2e


async def call(stack: Any, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with stack.client() as client:
        response = await client.request(method, url, **kwargs)
    return response.status_code, response.json()


# --- PATCH: the update mask from the body -------------------------------------------------


async def test_patch_without_a_mask_gets_one_from_the_body(stack: Any) -> None:
    body = {"name": "n", "inner": {"label": "L"}, "inners": [{"label": "x"}]}
    status, payload = await call(stack, "PATCH", "/v1/kitchen/abc/nested", json=body)
    assert status == 200
    # relative to the body field (nested), proto names, sorted; a repeated field ends it
    assert list(stack.kitchen.seen[-1].field_mask.paths) == ["inner.label", "inners", "name"]
    assert payload["fieldMask"] == "inner.label,inners,name"


async def test_patch_null_and_empty_object_name_the_field(stack: Any) -> None:
    status, _ = await call(
        stack, "PATCH", "/v1/kitchen/abc/nested", json={"inner": None, "name": ""}
    )
    assert status == 200
    assert list(stack.kitchen.seen[-1].field_mask.paths) == ["inner", "name"]
    status, _ = await call(stack, "PATCH", "/v1/kitchen/abc/nested", json={"inner": {}})
    assert list(stack.kitchen.seen[-1].field_mask.paths) == ["inner"]


async def test_a_mask_the_client_sends_is_kept(stack: Any) -> None:
    status, _ = await call(
        stack,
        "PATCH",
        "/v1/kitchen/abc/nested?fieldMask=name",
        json={"name": "n", "inner": {"label": "L"}},
    )
    assert status == 200
    assert list(stack.kitchen.seen[-1].field_mask.paths) == ["name"]


async def test_patch_field_mask_can_be_turned_off(stack_factory: Any) -> None:
    async with stack_factory(transcoding={"patch_field_mask": False}) as stack:
        status, payload = await call(stack, "PATCH", "/v1/kitchen/abc/nested", json={"name": "n"})
    assert status == 200
    assert not stack.kitchen.seen[-1].HasField("field_mask")
    assert "fieldMask" not in payload


async def test_other_methods_get_no_derived_mask(stack: Any) -> None:
    status, _ = await call(stack, "PUT", "/v1/kitchen/abc", json={"nested": {"name": "n"}})
    assert status == 200
    assert not stack.kitchen.seen[-1].HasField("field_mask")


async def test_the_demo_update_clears_a_field_the_body_empties() -> None:
    """UpdateBook applies its mask; without one it takes the set fields, so an emptied
    author was ignored. Derived from the body, the mask names it and the author goes."""
    server, port = await start_library()
    try:
        async with run_gateway(make_config(port, protos=DEMO_PROTOS)) as gateway:
            async with gateway.client() as client:
                response = await client.patch(
                    "/v1/shelves/1/books/1", json={"author": "", "pageCount": 305}
                )
                assert response.status_code == 200, response.text
                book = response.json()
                assert "author" not in book  # cleared
                assert book["pageCount"] == "305"  # an int64
                assert book["title"] == "The Left Hand of Darkness"  # not in the body: kept
                # the path binds book.name inside the body field: never part of the mask
                response = await client.patch("/v1/shelves/1/books/2", json={"title": "T"})
                assert response.status_code == 200, response.text
                assert response.json()["author"] == "Barbara W. Tuchman"
        # grpc-gateway's option turned off: the upstream's own rule keeps the author
        config = make_config(
            port, protos=DEMO_PROTOS, extra={"transcoding": {"patch_field_mask": False}}
        )
        async with run_gateway(config) as gateway, gateway.client() as client:
            response = await client.patch("/v1/shelves/1/books/3", json={"author": ""})
            assert response.status_code == 200, response.text
            assert response.json()["author"] == "James D. Watson"
    finally:
        await server.stop(grace=None)


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_the_demo_update_refuses_a_body_that_is_not_an_object(method: str) -> None:
    """The path binds book.name inside the body field: a body of "x" used to be replaced
    by {"name": ...} and sent with an empty mask (update everything). Now a 400, and the
    book is left as it was."""
    server, port = await start_library()
    try:
        async with run_gateway(make_config(port, protos=DEMO_PROTOS)) as gateway:
            async with gateway.client() as client:
                before = (await client.get("/v1/shelves/1/books/1")).json()
                for body in (b'"x"', b"[1, 2]", b"3", b"true"):
                    response = await client.request(method, "/v1/shelves/1/books/1", content=body)
                    assert response.status_code == 400, response.text
                    payload = response.json()
                    assert payload["code"] == 3
                    assert payload["message"].startswith("book: expected an object")
                assert (await client.get("/v1/shelves/1/books/1")).json() == before
    finally:
        await server.stop(grace=None)


# --- query parameters -----------------------------------------------------------------------


async def test_map_fields_from_the_query(stack: Any) -> None:
    status, payload = await call(stack, "GET", "/v1/kitchen/abc?labels[a]=1&labels%5Bb%5D=2")
    assert status == 200
    assert dict(stack.kitchen.seen[-1].labels) == {"a": "1", "b": "2"}
    assert payload["labels"] == {"a": "1", "b": "2"}


async def test_maps_of_every_key_kind_reach_the_upstream() -> None:
    query = (
        "by_name[x]=X&byName[]=empty&by_number[-7]=minus&by_number[007]=seven"
        "&byFlag[true]=1&by_flag[0]=-2&colours[3]=COLOUR_RED&colours[4]=2&blobs[k]=AAEC"
    )
    async with mapping_stack() as stack:
        status, _ = await call(stack, "GET", f"/v1/lookups/L1?{query}")
        received: Any = stack.upstream.last("Lookup")
    assert status == 200
    assert received.id == "L1"
    assert dict(received.by_name) == {"x": "X", "": "empty"}
    assert dict(received.by_number) == {-7: "minus", 7: "seven"}
    assert dict(received.by_flag) == {True: 1, False: -2}
    assert dict(received.colours) == {3: 1, 4: 2}
    assert dict(received.blobs) == {"k": b"\x00\x01\x02"}


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("by_name[a]=1&by_name[a]=2", "given more than once"),
        ("by_flag[true]=1&by_flag[1]=2", "given more than once"),  # one key, two spellings
        ("by_number[x]=1", "expected a decimal integer"),
        ("by_number[1.5]=1", "expected a decimal integer"),
        ("by_number[99999999999999999999]=1", "by_number[99999999999999999999]"),
        ("by_flag[yes]=1", "expected true or false"),
        ("colours[1]=COLOUR_BLUE", "colours[1]"),
        ("patches[a]=x", "map of messages"),
        ("patch.title[a]=x", "not a map"),
        ("by_name=x", "message field"),
        ("by_name[a=1", "unknown query parameter"),
        ("by_name[a][b]=1", "unknown query parameter"),
    ],
)
async def test_bad_map_parameters_are_400_and_never_sent(query: str, problem: str) -> None:
    async with mapping_stack() as stack:
        status, payload = await call(stack, "GET", f"/v1/lookups/L1?{query}")
        assert stack.upstream.received == []
    assert status == 400, payload
    assert payload["code"] == 3
    assert problem in payload["message"]
    (detail,) = payload["details"]
    key = query.partition("&")[0].partition("=")[0]
    if "&" in query:
        key = query.rpartition("&")[2].partition("=")[0]
    assert detail["fieldViolations"][0]["field"] == key


async def test_a_parameter_for_a_path_or_body_field_is_ignored(stack: Any) -> None:
    status, payload = await call(stack, "GET", "/v1/kitchen/abc?stringValue=other&string_value=x")
    assert status == 200
    assert payload["stringValue"] == "abc"  # the path wins
    status, payload = await call(
        stack, "PATCH", "/v1/kitchen/abc/nested?nested.name=x&nested=y", json={"name": "b"}
    )
    assert status == 200
    assert payload["nested"] == {"name": "b"}  # the body wins, the parameters are dropped
    # even with unknown parameters refused (the default), and a real unknown one still is
    status, payload = await call(stack, "GET", "/v1/kitchen/abc?nope=1")
    assert status == 400 and "unknown query parameter" in payload["message"]


# --- google.api.HttpBody requests ------------------------------------------------------------


async def test_an_http_body_request_takes_the_raw_body() -> None:
    raw = b"\x00\xffnot json {"
    async with mapping_stack() as stack:
        async with stack.client() as client:
            response = await client.post(
                "/v1/uploads?ignored=1",  # body "*": the query is not read
                content=raw,
                headers={"content-type": "application/octet-stream; x=1"},
            )
        received: Any = stack.upstream.last("Upload")
    assert response.status_code == 200, response.text
    assert received.data == raw
    assert received.content_type == "application/octet-stream; x=1"
    assert base64.b64decode(response.json()["data"]) == raw


async def test_an_http_body_field_takes_the_body_and_the_rest_from_path_and_query() -> None:
    async with mapping_stack() as stack:
        async with stack.client() as client:
            response = await client.put(
                "/v1/files/report.csv:attach?note=first&tags=a&tags=b&file.data=Zm9v",
                content=b"a,b\n1,2\n",
                headers={"content-type": "text/csv"},
            )
        received: Any = stack.upstream.last("Attach")
    assert response.status_code == 200, response.text
    assert received.name == "report.csv"
    assert received.note == "first" and list(received.tags) == ["a", "b"]
    assert received.file.content_type == "text/csv"
    assert received.file.data == b"a,b\n1,2\n"  # the body wins over file.data in the query


async def test_an_http_body_without_content_type_or_body() -> None:
    async with mapping_stack() as stack:
        async with stack.client() as client:
            response = await client.post("/v1/uploads", content=b"")
        received: Any = stack.upstream.last("Upload")
    assert response.status_code == 200, response.text
    assert received.content_type == "" and received.data == b""


# --- routing: custom verbs --------------------------------------------------------------------


async def test_an_unknown_custom_verb_is_404(stack: Any) -> None:
    async with stack.client() as client:
        response = await client.post("/v1/kitchen/abc:nope", json={})
    assert response.status_code == 404
    assert response.json()["code"] == 5
    assert stack.kitchen.seen == []


async def test_a_known_verb_with_another_method_is_405(stack: Any) -> None:
    async with stack.client() as client:
        response = await client.patch("/v1/kitchen/abc:wash", json={})
    assert response.status_code == 405
    # every method this URL answers: the :wash routes, and those reading "abc:wash" as data
    assert response.headers["allow"] == "DELETE, GET, POST, PURGE, PUT"


async def test_a_colon_in_data_still_matches(stack: Any) -> None:
    status, payload = await call(stack, "GET", "/v1/kitchen/urn:x")
    assert status == 200 and payload["stringValue"] == "urn:x"


# --- status messages ----------------------------------------------------------------------------


@pytest.mark.parametrize("client", ["lean", "grpcio"])
async def test_an_empty_upstream_message_stays_empty(
    kitchen_upstream: tuple[int, Any], client: str
) -> None:
    port, _ = kitchen_upstream
    config = make_config(
        port,
        extra={"upstreams": {"kitchen": {"address": f"127.0.0.1:{port}", "client": client}}},
    )
    async with run_gateway(config) as gateway, gateway.client() as http:
        response = await http.post("/v1/fail", json={"code": 5})
    assert response.status_code == 404
    assert response.json() == {"code": 5, "message": "", "details": []}
