"""RequestBinder's raw HttpBody requests and PATCH update masks, decided per route."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pool, message_factory
from mapping_upstream import mapping_registry

from edge.descriptors.http_rules import HttpRule
from edge.descriptors.registry import MethodInfo
from edge.errors import BadRequest
from edge.routing.template import parse_template
from edge.transcode import binding
from edge.transcode.binding import RequestBinder
from edge.transcode.json_codec import JsonCodec, JsonOptions
from edgedemo.library.v1 import library_pb2

REGISTRY = mapping_registry()
CODEC = JsonCodec(REGISTRY.pool, JsonOptions())
DEFAULT_CODEC = JsonCodec(descriptor_pool.Default(), JsonOptions())
HTTP = {"raw_bodies": True, "derive_update_mask": True}  # what an HTTP route gets


def method(name: str) -> MethodInfo:
    return next(
        m for m in REGISTRY.services()["edgetest.mapping.v1.MappingService"] if m.name == name
    )


UPLOAD, ATTACH, LOOKUP = method("Upload"), method("Attach"), method("Lookup")


def test_an_http_body_request_is_the_raw_body() -> None:
    binder = RequestBinder(UPLOAD.input_type, UPLOAD.http_rules[0], CODEC, **HTTP)
    assert binder.raw_body and binder.takes_body
    headers = [(b"accept", b"*/*"), (b"content-type", b"image/png"), (b"content-type", b"x/y")]
    message: Any = binder.bind((), "a=1", b"\x89PNG{", headers=headers)
    assert message.data == b"\x89PNG{"
    assert message.content_type == "image/png"  # the first, as sent
    assert "raw" in binder.body_description


@pytest.mark.parametrize(
    ("headers", "content_type"),
    [
        ([], ""),
        ([(b"content-type", b"")], ""),
        ([(b"content-type", b"text/plain; charset=\xe9")], "text/plain; charset=\xe9"),
    ],
)
def test_odd_content_types_pass_as_sent(
    headers: list[tuple[bytes, bytes]], content_type: str
) -> None:
    binder = RequestBinder(UPLOAD.input_type, UPLOAD.http_rules[0], CODEC, **HTTP)
    message: Any = binder.bind((), "", b"", headers=headers)
    assert message.content_type == content_type and message.data == b""
    message.SerializeToString()  # a Latin-1 text is a valid proto string


def test_an_http_body_field_takes_the_body_the_rest_comes_from_path_and_query() -> None:
    binder = RequestBinder(ATTACH.input_type, ATTACH.http_rules[0], CODEC, **HTTP)
    message: Any = binder.bind(
        ((("name",), "f"),),
        "note=n&tags=a&tags=b&file.content_type=x&file=y",
        b"{raw}",
        headers=[(b"content-type", b"text/plain")],
    )
    assert (message.name, message.note, list(message.tags)) == ("f", "n", ["a", "b"])
    assert (message.file.content_type, message.file.data) == ("text/plain", b"{raw}")
    with pytest.raises(BadRequest, match="unknown query parameter"):
        binder.bind(((("name",), "f"),), "nope=1", b"")


def test_http_body_is_json_where_whole_messages_travel() -> None:
    """gRPC-Web, Connect and WebSocket routes (no raw_bodies) keep the JSON mapping."""
    for rule in (None, UPLOAD.http_rules[0]):
        binder = RequestBinder(UPLOAD.input_type, rule, CODEC)
        assert not binder.raw_body
        message: Any = binder.bind((), "", b'{"contentType": "a/b", "data": "AAE="}')
        assert (message.content_type, message.data) == ("a/b", b"\x00\x01")


# --- PATCH masks ---------------------------------------------------------------------------------

UPDATE = HttpRule("PATCH", parse_template("/v1/{book.name=shelves/*/books/*}"), "book", None)


def test_the_mask_is_relative_to_the_body_field_and_ignores_the_path() -> None:
    binder = RequestBinder(library_pb2.UpdateBookRequest, UPDATE, DEFAULT_CODEC, **HTTP)
    message: Any = binder.bind(
        ((("book", "name"), "shelves/1/books/2"),), "", b'{"title": "T", "pageCount": "3"}'
    )
    assert message.book.name == "shelves/1/books/2"
    assert list(message.update_mask.paths) == ["page_count", "title"]


def test_a_client_mask_wins_and_an_empty_body_gives_an_empty_mask() -> None:
    binder = RequestBinder(library_pb2.UpdateBookRequest, UPDATE, DEFAULT_CODEC, **HTTP)
    sent: Any = binder.bind((), "updateMask=author", b'{"title": "T"}')
    assert list(sent.update_mask.paths) == ["author"]
    empty: Any = binder.bind((), "", b"")
    assert empty.HasField("update_mask") and list(empty.update_mask.paths) == []


def test_a_bad_body_is_refused_before_any_mask() -> None:
    binder = RequestBinder(library_pb2.UpdateBookRequest, UPDATE, DEFAULT_CODEC, **HTTP)
    with pytest.raises(BadRequest, match="nope"):
        binder.bind((), "", b'{"nope": 1}')


def test_the_mask_field_need_not_be_called_update_mask() -> None:
    patch = LOOKUP.http_rules[1]
    binder = RequestBinder(LOOKUP.input_type, patch, CODEC, **HTTP)
    message: Any = binder.bind(((("id",), "L"),), "", b'{"child": {"pageCount": 1}, "labels": {}}')
    assert list(message.mask.paths) == ["child.page_count", "labels"]


@pytest.mark.parametrize(
    ("rule", "options"),
    [
        (HttpRule("PUT", UPDATE.template, "book", None), HTTP),  # not PATCH
        # body "*": grpc-gateway derives none (the client can put the mask in the body)
        (HttpRule("PATCH", UPDATE.template, "*", None), HTTP),
        # turned off (transcoding.patch_field_mask: false), or a WebSocket route
        (UPDATE, {"raw_bodies": True}),
    ],
)
def test_no_mask_is_derived(rule: HttpRule, options: dict[str, bool]) -> None:
    binder = RequestBinder(library_pb2.UpdateBookRequest, rule, DEFAULT_CODEC, **options)
    body = b'{"title": "T"}' if rule.body == "book" else b'{"book": {"title": "T"}}'
    message: Any = binder.bind((), "", body)
    assert message.book.title == "T"
    assert not message.HasField("update_mask")


def test_two_mask_fields_get_no_derived_mask() -> None:
    two_masks = message_factory.GetMessageClass(
        REGISTRY.pool.FindMessageTypeByName("edgetest.mapping.v1.TwoMasks")
    )
    rule = HttpRule("PATCH", parse_template("/v1/two"), "patch", None)
    message: Any = RequestBinder(two_masks, rule, CODEC, **HTTP).bind((), "", b'{"title": "T"}')
    assert message.patch.title == "T"
    assert not message.HasField("first") and not message.HasField("second")


def test_plain_routes_pay_for_none_of_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any) -> Any:
        raise AssertionError("called on a plain route")

    monkeypatch.setattr(binding, "mask_paths", boom)
    monkeypatch.setattr(binding, "content_type_of", boom)
    create = HttpRule("POST", parse_template("/v1/{parent=shelves/*}/books"), "book", None)
    for message_type, rule in (
        (library_pb2.CreateBookRequest, create),
        (library_pb2.UpdateBookRequest, HttpRule("PUT", UPDATE.template, "book", None)),
    ):
        binder = RequestBinder(message_type, rule, DEFAULT_CODEC, **HTTP)
        assert not binder.raw_body
        binder.bind((), "", b'{"title": "T"}', headers=[(b"content-type", b"x")])
