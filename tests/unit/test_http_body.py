"""The pure parts of HttpBody replies and stream trailers: which routes answer raw, the
Content-Type taken from an upstream, and the trailers a stream ends with."""

from __future__ import annotations

import re

import pytest
from google.api import httpbody_pb2
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from hypothesis import given
from hypothesis import strategies as st

from edge.errors import UpstreamStatus, UpstreamUnavailable
from edge.ingress.http_trailers import error_trailers, status_trailers, wants_trailers
from edge.transcode.http_body import (
    DEFAULT_CONTENT_TYPE,
    HttpBodyReply,
    content_type_header,
    http_body_reply,
)
from edge.upstream.headers import HeaderPolicy

POLICY = HeaderPolicy.of([], ["x-allowed"])


def _pool_with_wrappers() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    for module in (any_pb2, httpbody_pb2):  # HttpBody's file needs Any's
        pool.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="t.proto", package="t", syntax="proto3", dependency=["google/api/httpbody.proto"]
    )
    wrapper = file.message_type.add(name="Wrapper")
    wrapper.field.add(name="note", number=1, type=9, label=1)
    wrapper.field.add(name="body", number=2, type=11, label=1, type_name=".google.api.HttpBody")
    wrapper.field.add(name="bodies", number=3, type=11, label=3, type_name=".google.api.HttpBody")
    pool.Add(file)
    return pool


POOL = _pool_with_wrappers()
WRAPPER = POOL.FindMessageTypeByName("t.Wrapper")
HTTP_BODY = POOL.FindMessageTypeByName("google.api.HttpBody")


def test_which_routes_answer_raw() -> None:
    assert http_body_reply(HTTP_BODY, None) == HttpBodyReply(None)
    assert http_body_reply(WRAPPER, None) is None
    assert http_body_reply(WRAPPER, WRAPPER.fields_by_name["body"]) == HttpBodyReply("body")
    assert http_body_reply(WRAPPER, WRAPPER.fields_by_name["bodies"]) is None  # repeated
    assert http_body_reply(WRAPPER, WRAPPER.fields_by_name["note"]) is None


def test_parts_of_a_reply_and_of_a_field() -> None:
    wrapper_class = message_factory.GetMessageClass(WRAPPER)
    message = wrapper_class(note="x")
    message.body.content_type = "image/png"
    message.body.data = b"\x89PNG"
    assert HttpBodyReply("body").parts(message) == (b"image/png", b"\x89PNG")
    unset = wrapper_class()
    assert HttpBodyReply("body").parts(unset) == (DEFAULT_CONTENT_TYPE, b"")
    body = httpbody_pb2.HttpBody(content_type="text/csv", data=b"a,b\r\n")
    assert HttpBodyReply().parts(body) == (b"text/csv", b"a,b\r\n")
    assert HttpBodyReply().content_type(body) == b"text/csv"
    assert HttpBodyReply().data(body) == b"a,b\r\n"


@pytest.mark.parametrize(
    ("given_type", "header"),
    [
        ("text/csv", b"text/csv"),
        ("text/csv; charset=utf-8", b"text/csv; charset=utf-8"),
        ('multipart/form-data; boundary="a b"', b'multipart/form-data; boundary="a b"'),
        ("  image/png  ", b"image/png"),
        ("", DEFAULT_CONTENT_TYPE),
        ("csv", DEFAULT_CONTENT_TYPE),  # not type/subtype
        ("text/html\r\nset-cookie: a=b", DEFAULT_CONTENT_TYPE),  # header injection
        ("text/html\nx: y", DEFAULT_CONTENT_TYPE),
        ("text/plain; name=café", DEFAULT_CONTENT_TYPE),  # not ASCII
        ("text/plain\x00", DEFAULT_CONTENT_TYPE),
        ("te xt/plain", DEFAULT_CONTENT_TYPE),
    ],
)
def test_content_type_header(given_type: str, header: bytes) -> None:
    assert content_type_header(given_type) == header


_FIELD_VALUE = re.compile(rb"[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?")


@given(st.text())
def test_any_content_type_becomes_a_safe_header_value(value: str) -> None:
    header = content_type_header(value)
    assert _FIELD_VALUE.fullmatch(header)
    assert b"/" in header
    assert header == DEFAULT_CONTENT_TYPE or header == value.strip(" \t").encode()


@pytest.mark.parametrize(
    ("extensions", "headers", "wanted"),
    [
        ({"http.response.trailers": {}}, [(b"te", b"trailers")], True),
        ({"http.response.trailers": {}}, [], False),
        ({"http.response.trailers": {}}, [(b"te", b"trailers, deflate")], False),  # as Hypercorn
        ({}, [(b"te", b"trailers")], False),  # HTTP/1.1: not offered
        (None, [(b"te", b"trailers")], False),
    ],
)
def test_wants_trailers(
    extensions: object, headers: list[tuple[bytes, bytes]], wanted: bool
) -> None:
    assert wants_trailers({"extensions": extensions, "headers": headers}) is wanted


def test_status_trailers() -> None:
    trailing = [
        ("x-checksum", "c0ffee"),
        ("x-allowed", "yes"),
        ("x-raw-bin", b"\x00\x01"),
        ("grpc-status", "0"),  # never twice, never from metadata
        ("content-length", "5"),
    ]
    assert status_trailers(0, "", trailing, POLICY) == [
        (b"grpc-status", b"0"),
        (b"grpc-trailer-x-checksum", b"c0ffee"),
        (b"x-allowed", b"yes"),
        (b"grpc-trailer-x-raw-bin", b"AAE="),
    ]


def test_grpc_message_is_percent_encoded() -> None:
    trailers = status_trailers(3, "100% sure\r\nthat é", (), POLICY)
    assert trailers == [(b"grpc-status", b"3"), (b"grpc-message", b"100%25 sure%0D%0Athat %C3%A9")]


def test_unsendable_metadata_is_dropped_not_sent() -> None:
    trailing = [("x-bad", "a\r\nb"), ("x-ctl", "a\x00"), ("x-ok", "fine")]
    assert status_trailers(0, "", trailing, POLICY)[1:] == [(b"grpc-trailer-x-ok", b"fine")]


def test_error_trailers() -> None:
    upstream = UpstreamStatus(9, "not now", trailing_metadata=[("x-why", "busy")])
    assert error_trailers(upstream, POLICY) == [
        (b"grpc-status", b"9"),
        (b"grpc-message", b"not now"),
        (b"grpc-trailer-x-why", b"busy"),
    ]
    own = error_trailers(UpstreamUnavailable("upstream 'a' is unavailable"), POLICY)
    assert own[0] == (b"grpc-status", b"14")
