"""Tables and properties for the Connect wire core: codes, headers, GET, errors, envelopes.

Golden bytes marked "connect-es" were produced by @connectrpc/connect 2.3.0's own
functions (errorToJsonBytes, endStreamToJson, encodeEnvelope,
transformConnectPostToGetRequest, requestHeader), so both directions are checked against
the client browsers run. The last part checks the Connect forms ``edge.ingress.render``
gives the gateway's own errors and an upstream's status (pure functions too).
"""

from __future__ import annotations

import base64
import struct
from urllib.parse import quote

import orjson
import pytest
from google.protobuf import descriptor_pool
from google.rpc import error_details_pb2, status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import (
    BodyTooLarge,
    CircuitOpen,
    EdgeError,
    MethodNotAllowed,
    RateLimited,
    RequestTimeout,
    Unauthenticated,
    UpstreamStatus,
)
from edge.ingress.connect_errors import (
    CODE_NAMES,
    ConnectError,
    ErrorDetail,
    code_from_http_status,
    code_from_name,
    code_name,
    details_from_status_bin,
    end_stream_envelope,
    end_stream_json,
    error_json,
    http_status_for_code,
    parse_end_stream,
    parse_error_json,
    unary_error_response,
)
from edge.ingress.connect_get import GetRequest, parse_get_query
from edge.ingress.connect_wire import (
    CompressionUnsupported,
    ConnectProtocolError,
    ContentType,
    EnvelopeDecoder,
    HttpVersionNotSupported,
    check_protocol_version,
    connect_kind,
    encode_envelope,
    leading_headers,
    parse_content_type,
    parse_timeout_ms,
    response_metadata,
    unary_trailer_headers,
)
from edge.ingress.grpc_web_wire import MessageTooLarge, UnsupportedMediaType
from edge.ingress.render import (
    connect_end_stream_error,
    connect_stream_error_headers,
    connect_unary_error,
)
from edge.transcode.json_codec import JsonCodec, JsonOptions
from edge.transcode.status import HTTP_STATUS_BY_GRPC_CODE

# -- codes: the spec's tables, row by row ---------------------------------------------

# (code number, name, HTTP status) from the "Error Codes" table of the protocol reference
SPEC_CODES = [
    (1, "canceled", 499),
    (2, "unknown", 500),
    (3, "invalid_argument", 400),
    (4, "deadline_exceeded", 504),
    (5, "not_found", 404),
    (6, "already_exists", 409),
    (7, "permission_denied", 403),
    (8, "resource_exhausted", 429),
    (9, "failed_precondition", 400),
    (10, "aborted", 409),
    (11, "out_of_range", 400),
    (12, "unimplemented", 501),
    (13, "internal", 500),
    (14, "unavailable", 503),
    (15, "data_loss", 500),
    (16, "unauthenticated", 401),
]


@pytest.mark.parametrize(("code", "name", "status"), SPEC_CODES, ids=[c[1] for c in SPEC_CODES])
def test_code_table(code: int, name: str, status: int) -> None:
    assert code_name(code) == name
    assert code_from_name(name) == code
    assert http_status_for_code(code) == status


def test_the_table_is_complete_and_agrees_with_the_transcoding_table_today() -> None:
    assert len(CODE_NAMES) == 16
    assert all(HTTP_STATUS_BY_GRPC_CODE[code] == status for code, _, status in SPEC_CODES)


@pytest.mark.parametrize("code", [17, 99, -1], ids=["17", "99", "negative"])
def test_codes_outside_the_table_are_unknown(code: int) -> None:
    assert code_name(code) == "unknown"
    assert http_status_for_code(code) == 500


def test_ok_has_no_error_name() -> None:
    with pytest.raises(ValueError, match="not an error"):
        code_name(0)
    assert code_from_name("ok") is None
    assert code_from_name("cancelled") is None  # Connect spells it "canceled"


INFERRED = [(400, 13), (401, 16), (403, 7), (404, 12), (429, 14), (502, 14), (503, 14), (504, 14)]


@pytest.mark.parametrize(("status", "code"), INFERRED, ids=[str(s) for s, _ in INFERRED])
def test_http_to_code_inference(status: int, code: int) -> None:
    assert code_from_http_status(status) == code


@pytest.mark.parametrize("status", [200, 405, 415, 500, 501])
def test_other_statuses_infer_unknown(status: int) -> None:
    assert code_from_http_status(status) == 2


# -- which requests are Connect -------------------------------------------------------

H = list[tuple[bytes, bytes]]
# what connect-es 2.3.0's requestHeader sets (names as fetch lower-cases them)
CONNECT_ES_UNARY: H = [
    (b"connect-protocol-version", b"1"),
    (b"connect-timeout-ms", b"5000"),
    (b"content-type", b"application/json"),
]
CONNECT_ES_STREAM: H = [
    (b"connect-protocol-version", b"1"),
    (b"content-type", b"application/connect+proto"),
]

KINDS: list[tuple[str, str, H, bytes, str | None]] = [
    ("connect-es-unary", "POST", CONNECT_ES_UNARY, b"", "unary"),
    ("connect-es-stream", "POST", CONNECT_ES_STREAM, b"", "stream"),
    (
        "stream-without-version",
        "POST",
        [(b"content-type", b"application/connect+json")],
        b"",
        "stream",
    ),
    ("proto-without-version", "POST", [(b"content-type", b"application/proto")], b"", "unary"),
    ("version-any-type", "POST", [(b"connect-protocol-version", b"2")], b"", "unary"),
    ("plain-json-post", "POST", [(b"content-type", b"application/json")], b"", None),
    ("grpc-web", "POST", [(b"content-type", b"application/grpc-web+proto")], b"", None),
    ("connect-es-get", "GET", [], b"connect=v1&encoding=json&message=%7B%7D", "get"),
    ("get-version-later", "GET", [], b"encoding=json&connect=v1", "get"),
    ("get-without-connect", "GET", [], b"encoding=json&message=%7B%7D", None),
    ("get-connected", "GET", [], b"connected=1", None),
    ("lower-method", "post", CONNECT_ES_STREAM, b"", "stream"),
    ("put", "PUT", CONNECT_ES_UNARY, b"", None),
]


@pytest.mark.parametrize(
    ("method", "headers", "query", "kind"), [k[1:] for k in KINDS], ids=[k[0] for k in KINDS]
)
def test_connect_kind(method: str, headers: H, query: bytes, kind: str | None) -> None:
    assert connect_kind(method, headers, query) == kind


# -- request headers ------------------------------------------------------------------

TYPES = [
    ("application/json", "json", False),
    ("application/proto", "proto", False),
    ("application/connect+json", "json", True),
    ("application/connect+proto", "proto", True),
    ("Application/JSON; charset=utf-8", "json", False),
    ("application/json;charset=UTF8", "json", False),
    ('application/json; charset="utf-8"', "json", False),
    ("application/proto; charset=latin1", "proto", False),  # a charset means nothing there
    (b"application/connect+json", "json", True),
]


@pytest.mark.parametrize(("value", "codec", "stream"), TYPES, ids=[str(t[0]) for t in TYPES])
def test_content_types(value: str | bytes, codec: str, stream: bool) -> None:
    parsed = parse_content_type(value)
    assert parsed == ContentType(codec, stream)  # type: ignore[arg-type]
    assert parse_content_type(parsed.value) == parsed


@pytest.mark.parametrize(
    "value",
    [
        "application/connect+thrift",
        "application/xml",
        "text/json",
        "application/json; charset=iso-8859-1",
        "application/connect+",
        "application/grpc-web+proto",
        "",
        None,
    ],
)
def test_unsupported_content_types_are_415(value: str | None) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        parse_content_type(value)
    assert caught.value.status == 415


@pytest.mark.parametrize("value", [None, "1", b"1", " 1 "], ids=["absent", "1", "bytes", "spaces"])
def test_protocol_version_accepted(value: str | bytes | None) -> None:
    check_protocol_version(value)


@pytest.mark.parametrize("value", ["2", "", "v1", "1.0", b"11"])
def test_protocol_version_other_than_1_is_invalid_argument(value: str | bytes) -> None:
    with pytest.raises(ConnectProtocolError, match='must be "1"') as caught:
        check_protocol_version(value)
    assert caught.value.grpc_code == 3
    assert caught.value.status == 400


def test_protocol_version_can_be_required() -> None:
    with pytest.raises(ConnectProtocolError, match="missing required header"):
        check_protocol_version(None, required=True)


TIMEOUTS = [
    ("5000", 5.0),
    ("1", 0.001),
    ("0", 0.0),
    ("9999999999", 9_999_999.999),
    ("0000000250", 0.25),
    (b"100", 0.1),
]


@pytest.mark.parametrize(("value", "seconds"), TIMEOUTS, ids=[str(t[0]) for t in TIMEOUTS])
def test_timeouts(value: str | bytes, seconds: float) -> None:
    assert parse_timeout_ms(value) == pytest.approx(seconds)


BAD_TIMEOUTS = [
    ("eleven-digits", "10000000000"),
    ("huge", "9" * 400),
    ("negative", "-5"),
    ("plus", "+5"),
    ("unit", "5s"),
    ("fraction", "1.5"),
    ("empty", ""),
    ("inner-space", "1 0"),
    ("arabic-digits", "١٢٣"),
    ("fullwidth-digits", "\uff11\uff12"),
    ("exponent", "1e3"),
]


@pytest.mark.parametrize("value", [t[1] for t in BAD_TIMEOUTS], ids=[t[0] for t in BAD_TIMEOUTS])
def test_bad_timeouts_are_invalid_argument(value: str) -> None:
    with pytest.raises(ConnectProtocolError, match="Connect-Timeout-Ms"):
        parse_timeout_ms(value)


# -- GET ------------------------------------------------------------------------------

GETS = [
    # connect-es 2.3.0 transformConnectPostToGetRequest, useHttpGet with binary format
    (
        "connect-es-proto",
        "connect=v1&base64=1&encoding=proto&message=CgP7_z4",
        GetRequest("proto", b"\x0a\x03\xfb\xff\x3e"),
    ),
    # ...with JSON (percent-encoded by encodeURIComponent)
    (
        "connect-es-json",
        "connect=v1&encoding=json&message=%7B%22name%22%3A%20%22a%2Bb%20%26%20c%2F%C3%A9%22%7D",
        GetRequest("json", '{"name": "a+b & c/é"}'.encode()),
    ),
    (
        "connect-es-json-base64",
        "connect=v1&base64=1&encoding=json&message=eyJuIjoiPz8-In0",
        GetRequest("json", b'{"n":"??>"}'),
    ),
    ("any-order", "message=%7B%7D&encoding=json", GetRequest("json", b"{}")),
    ("unknown-params", "x=1&encoding=json&message=%7B%7D&y", GetRequest("json", b"{}")),
    ("plus-is-space", "encoding=json&message=%7B%22a%22:+1%7D", GetRequest("json", b'{"a": 1}')),
    ("no-message", "encoding=proto", GetRequest("proto", b"")),
    (
        "padded-base64",
        "encoding=proto&base64=1&message=CgP7_z4%3D",
        GetRequest("proto", b"\x0a\x03\xfb\xff\x3e"),
    ),
    (
        "std-alphabet",
        "encoding=proto&base64=1&message=CgP7%2Fz4",
        GetRequest("proto", b"\x0a\x03\xfb\xff\x3e"),
    ),
    (
        "base64-other-value-ignored",
        "encoding=json&base64=true&message=e30",
        GetRequest("json", b"e30"),
    ),
    (
        "identity-compression",
        "encoding=json&compression=identity&message=1",
        GetRequest("json", b"1"),
    ),
    (
        "accepted-compression",
        "encoding=proto&compression=gzip&base64=1&message=H4s",
        GetRequest("proto", base64.urlsafe_b64decode("H4s="), "gzip"),
    ),
]


@pytest.mark.parametrize(("query", "request_"), [g[1:] for g in GETS], ids=[g[0] for g in GETS])
def test_get_queries(query: str, request_: GetRequest) -> None:
    accept = ("identity", "gzip")
    assert parse_get_query(query, accept_compression=accept) == request_
    assert parse_get_query(query.encode(), accept_compression=accept) == request_


BAD_GETS: list[tuple[str, str, type[EdgeError], str]] = [
    ("no-encoding", "message=%7B%7D", UnsupportedMediaType, "encoding"),
    ("unknown-encoding", "encoding=xml&message=x", UnsupportedMediaType, "xml"),
    ("wrong-version", "connect=v2&encoding=json", ConnectProtocolError, "v1"),
    (
        "twice",
        "encoding=json&message=%7B%7D&message=%5B%5D",
        ConnectProtocolError,
        "more than once",
    ),
    ("encoding-twice", "encoding=json&encoding=proto", ConnectProtocolError, "more than once"),
    ("binary-without-base64", "encoding=proto&message=%FF%FE", ConnectProtocolError, "base64=1"),
    ("bad-base64-char", "encoding=proto&base64=1&message=ab*d", ConnectProtocolError, "base64"),
    ("bad-base64-length", "encoding=proto&base64=1&message=abcde", ConnectProtocolError, "base64"),
    (
        "too-much-padding",
        "encoding=proto&base64=1&message=ab%3D%3D%3D",
        ConnectProtocolError,
        "base64",
    ),
    ("padding-inside", "encoding=proto&base64=1&message=a%3Dbc", ConnectProtocolError, "base64"),
    ("whitespace", "encoding=proto&base64=1&message=ab+cd", ConnectProtocolError, "base64"),
    (
        "compression",
        "encoding=proto&compression=br&base64=1&message=",
        CompressionUnsupported,
        "identity",
    ),
]


@pytest.mark.parametrize(
    ("query", "error", "said"), [b[1:] for b in BAD_GETS], ids=[b[0] for b in BAD_GETS]
)
def test_bad_get_queries(query: str, error: type[EdgeError], said: str) -> None:
    with pytest.raises(error) as caught:
        parse_get_query(query)
    assert said in caught.value.message


def test_an_unsupported_compression_lists_the_supported_ones() -> None:
    with pytest.raises(CompressionUnsupported) as caught:
        parse_get_query("encoding=json&compression=zstd", accept_compression=["identity", "gzip"])
    assert caught.value.grpc_code == 12
    assert "identity, gzip" in caught.value.message


@given(st.binary(max_size=200), st.booleans())
def test_get_base64_round_trips(message: bytes, padded: bool) -> None:
    text = base64.urlsafe_b64encode(message).decode()
    if not padded:
        text = text.rstrip("=")
    query = f"connect=v1&base64=1&encoding=proto&message={quote(text, safe='-_')}"
    assert parse_get_query(query).message == message


@given(st.text(max_size=100))
def test_get_percent_encoded_json_round_trips(text: str) -> None:
    raw = text.encode("utf-8", "replace")
    query = "encoding=json&message=" + quote(raw, safe="")
    assert parse_get_query(query).message == raw


# -- errors and end of stream ---------------------------------------------------------


def bad_request_detail() -> bytes:
    detail = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field="x")]
    )
    return bytes(detail.SerializeToString())


def test_error_json_matches_connect_es_byte_for_byte() -> None:
    # connect-es 2.3.0 errorToJsonBytes(new ConnectError("bad name: café 100%",
    # Code.InvalidArgument)) with one raw detail
    expected = (
        '{"code":"invalid_argument","message":"bad name: café 100%","details":'
        '[{"type":"google.rpc.BadRequest","value":"CgUKAXgSAA"}]}'
    ).encode()
    value = bytes([0x0A, 0x05, 0x0A, 0x01, 0x78, 0x12, 0x00])
    body = error_json(3, "bad name: café 100%", [("google.rpc.BadRequest", value)])
    assert body == expected


@pytest.mark.parametrize(
    ("code", "message", "details", "body"),
    [
        (14, "", (), {"code": "unavailable"}),
        (5, "gone", (), {"code": "not_found", "message": "gone"}),
        (
            14,
            "back off",
            [ErrorDetail("google.rpc.RetryInfo", b"\x0a\x02\x08\x3c", {"retryDelay": "60s"})],
            {
                "code": "unavailable",
                "message": "back off",
                "details": [
                    {
                        "type": "google.rpc.RetryInfo",
                        "value": "CgIIPA",
                        "debug": {"retryDelay": "60s"},
                    }
                ],
            },
        ),
        (99, "odd", (), {"code": "unknown", "message": "odd"}),
    ],
    ids=["code-only", "message", "detail-with-debug", "unknown-number"],
)
def test_error_bodies(code: int, message: str, details: list[ErrorDetail], body: object) -> None:
    assert orjson.loads(error_json(code, message, details)) == body


def test_error_json_for_ok_is_a_bug() -> None:
    with pytest.raises(ValueError):
        error_json(0, "fine")


@given(
    st.sampled_from(sorted(CODE_NAMES)),
    st.text(),
    st.lists(
        st.tuples(st.from_regex(r"[a-z]+(\.[A-Za-z]+)+", fullmatch=True), st.binary()), max_size=3
    ),
)
def test_error_json_round_trips(code: int, message: str, details: list[tuple[str, bytes]]) -> None:
    message = message.encode("utf-8", "replace").decode()
    parsed = parse_error_json(error_json(code, message, details))
    assert parsed == ConnectError(code, message, [ErrorDetail(t, v) for t, v in details])


def test_details_from_a_status_trailer() -> None:
    status = status_pb2.Status(code=3, message="bad")
    status.details.add().Pack(error_details_pb2.BadRequest())
    status.details.add(type_url="example.com/x.Y", value=b"\x01")
    assert details_from_status_bin(status.SerializeToString()) == [
        ErrorDetail("google.rpc.BadRequest", b""),
        ErrorDetail("x.Y", b"\x01"),
    ]
    assert details_from_status_bin(b"\xff\xff\xff") == []


def test_unary_error_response() -> None:
    status, headers, body = unary_error_response(
        8, "slow down", [("google.rpc.BadRequest", bad_request_detail())], [("x-cost", "3")]
    )
    assert status == 429
    assert headers == [(b"content-type", b"application/json"), (b"trailer-x-cost", b"3")]
    assert parse_error_json(body).code == 8


def test_unary_trailers_are_prefixed_and_safe() -> None:
    assert unary_trailer_headers(
        [("Acme-Cost", "237"), ("t-bin", b"\x00"), ("bad", "a\r\nb"), ("grpc-status", "0")]
    ) == [(b"trailer-acme-cost", b"237"), (b"trailer-t-bin", b"AA")]


def test_end_stream_matches_connect_es() -> None:
    # connect-es 2.3.0 endStreamToJson(metadata, new ConnectError("overloaded", Unavailable))
    assert end_stream_json(
        14, "overloaded", (), [("acme-cost", "237"), ("trace-bin", b"\x00\x01\x02")]
    ) == (
        b'{"error":{"code":"unavailable","message":"overloaded"},'
        b'"metadata":{"acme-cost":["237"],"trace-bin":["AAEC"]}}'
    )
    assert end_stream_json(0) == b"{}"
    # connect-es encodeEnvelope(endStreamFlag, "{}")
    assert end_stream_envelope(0) == bytes.fromhex("02000000027b7d")


def test_end_stream_groups_repeated_metadata() -> None:
    parsed = parse_end_stream(end_stream_json(0, "", (), [("a", "1"), ("b", "x"), ("a", "2")]))
    assert parsed.error is None
    assert parsed.metadata == {"a": ["1", "2"], "b": ["x"]}


@pytest.mark.parametrize(
    "body",
    [b"[]", b'{"metadata": {"a": "1"}}', b'{"error": {}}', b'{"error": {"code": null}}', b"nope"],
    ids=["array", "metadata-not-list", "empty-error", "null-code", "not-json"],
)
def test_invalid_end_streams(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_end_stream(body)


# -- envelopes ------------------------------------------------------------------------


def envelope(flags: int, data: bytes) -> bytes:
    return struct.pack(">BI", flags, len(data)) + data


def test_envelopes_decode() -> None:
    decoder = EnvelopeDecoder(10)
    assert decoder.messages(envelope(0, b"{}") + envelope(0, b"")) == [b"{}", b""]
    decoder.finish()
    assert encode_envelope(b"{}") == envelope(0, b"{}")


HOSTILE_ENVELOPES: list[tuple[str, bytes, type[EdgeError], str]] = [
    ("compressed", envelope(1, b"x"), CompressionUnsupported, "identity"),
    ("end-stream-in-request", envelope(2, b"{}"), ConnectProtocolError, "end-stream"),
    ("reserved-bit", envelope(0x04, b"x"), ConnectProtocolError, "0x04"),
    ("grpc-web-trailer-bit", envelope(0x80, b"x"), ConnectProtocolError, "0x80"),
    ("length-2^32-1", b"\x00\xff\xff\xff\xff", MessageTooLarge, "4294967295"),
]


@pytest.mark.parametrize(
    ("body", "error", "said"),
    [h[1:] for h in HOSTILE_ENVELOPES],
    ids=[h[0] for h in HOSTILE_ENVELOPES],
)
def test_hostile_envelopes(body: bytes, error: type[EdgeError], said: str) -> None:
    with pytest.raises(error) as caught:
        EnvelopeDecoder(10).feed(body[:5])
    assert said in caught.value.message


def test_a_cut_envelope_is_invalid_argument() -> None:
    decoder = EnvelopeDecoder(10)
    decoder.feed(envelope(0, b"abc")[:-1])
    with pytest.raises(ConnectProtocolError, match="incomplete envelope") as caught:
        decoder.finish()
    assert caught.value.status == 400


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=100), max_size=6), st.lists(st.integers(min_value=0), max_size=12)
)
def test_envelopes_survive_any_chunking(messages: list[bytes], cuts: list[int]) -> None:
    body = b"".join(encode_envelope(m) for m in messages)
    points = [*sorted({c % (len(body) + 1) for c in cuts}), len(body)]
    decoder, got, start = EnvelopeDecoder(100), [], 0
    for point in points:
        got.extend(decoder.messages(body[start:point]))
        start = point
    decoder.finish()
    assert got == messages


def test_compression_refusals_name_what_the_client_may_send() -> None:
    with pytest.raises(CompressionUnsupported) as unary:
        parse_get_query("encoding=json&compression=gzip")
    assert unary.value.headers == {"accept-encoding": "identity"}
    with pytest.raises(CompressionUnsupported) as stream:
        EnvelopeDecoder(10).feed(envelope(1, b"x"))
    assert stream.value.headers == {"connect-accept-encoding": "identity"}
    assert stream.value.status == 501


def test_bidi_over_http1_is_505() -> None:
    error = HttpVersionNotSupported("needs HTTP/2")
    assert (error.status, error.grpc_code) == (505, 12)


# -- response metadata ----------------------------------------------------------------


UPSTREAM_METADATA: list[tuple[str, str | bytes]] = [
    ("x-lead", "1"),
    ("Connect-Content-Encoding", "gzip"),  # the protocol's own names
    ("connect-timeout-ms", "5"),
    ("grpc-status-details-bin", b"\x08\x03"),  # gRPC's: the status travels in the body
    ("grpc-accept-encoding", "gzip"),
    ("Access-Control-Allow-Origin", "*"),  # the gateway's CORS answer
    ("trailer-x-fake", "1"),
    ("x-bin", b"\x00\xff"),
]


def test_response_metadata_keeps_only_what_an_upstream_may_say() -> None:
    assert response_metadata(UPSTREAM_METADATA) == [
        ("x-lead", "1"),
        ("trailer-x-fake", "1"),  # a trailer's own name may start so
        ("x-bin", b"\x00\xff"),
    ]
    assert response_metadata(UPSTREAM_METADATA, leading=True) == [
        ("x-lead", "1"),
        ("x-bin", b"\x00\xff"),
    ]


def test_leading_headers_are_plain_headers() -> None:
    assert leading_headers([*UPSTREAM_METADATA, ("content-type", "x/y"), ("bad", "a\nb")]) == [
        (b"x-lead", b"1"),
        (b"x-bin", b"AP8"),
    ]


# -- the gateway's errors in Connect's forms (edge.ingress.render) -------------------

CODEC = JsonCodec(descriptor_pool.Default(), JsonOptions())

GATEWAY_ERRORS: list[tuple[str, EdgeError, int, str, dict[str, str]]] = [
    (
        "no-token",
        Unauthenticated("a token is required", headers={"WWW-Authenticate": 'Bearer realm="e"'}),
        401,
        "unauthenticated",
        {"www-authenticate": 'Bearer realm="e"'},
    ),
    (
        "rate-limited",
        RateLimited("slow down", headers={"Retry-After": "3", "RateLimit-Remaining": "0"}),
        429,
        "resource_exhausted",
        {"retry-after": "3", "ratelimit-remaining": "0"},
    ),
    (
        "breaker",
        CircuitOpen("open", headers={"Retry-After": "5"}),
        503,
        "unavailable",
        {"retry-after": "5"},
    ),
    ("too-large", BodyTooLarge("too big"), 413, "resource_exhausted", {}),
    ("stalled", RequestTimeout("stalled"), 408, "deadline_exceeded", {}),
    (
        "get-with-side-effects",
        MethodNotAllowed("use POST", headers={"allow": "POST"}),
        405,
        "unimplemented",
        {"allow": "POST"},
    ),
    ("codec", UnsupportedMediaType("no xml"), 415, "unimplemented", {}),
    ("bidi-over-http1", HttpVersionNotSupported("h2"), 505, "unimplemented", {}),
    ("bug-shaped", EdgeError("odd", internal="10.0.0.7:50051 said no"), 500, "unknown", {}),
]


@pytest.mark.parametrize(
    ("error", "status", "code", "headers"),
    [g[1:] for g in GATEWAY_ERRORS],
    ids=[g[0] for g in GATEWAY_ERRORS],
)
def test_gateway_errors_as_unary_connect_errors(
    error: EdgeError, status: int, code: str, headers: dict[str, str]
) -> None:
    got_status, got_headers, body = connect_unary_error(error, CODEC)
    assert got_status == status
    assert dict(got_headers) == {
        b"content-type": b"application/json",
        **{k.encode(): v.encode() for k, v in headers.items()},
    }
    assert orjson.loads(body) == {"code": code, "message": error.message}
    assert b"10.0.0.7" not in body  # internal text is logged, never sent


def end_stream_of(envelope_bytes: bytes) -> dict[str, object]:
    assert envelope_bytes[0] == 0x02
    assert struct.unpack(">I", envelope_bytes[1:5])[0] == len(envelope_bytes) - 5
    value: dict[str, object] = orjson.loads(envelope_bytes[5:])
    return value


def test_gateway_errors_in_a_stream_end_it() -> None:
    error = RateLimited("slow down", headers={"Retry-After": "3"})
    assert connect_stream_error_headers(error) == [(b"retry-after", b"3")]
    before = end_stream_of(connect_end_stream_error(error, CODEC))
    assert before == {"error": {"code": "resource_exhausted", "message": "slow down"}}
    # once the headers are gone, the error's own headers can only travel as metadata
    after = end_stream_of(connect_end_stream_error(error, CODEC, headers_sent=True))
    assert after["metadata"] == {"retry-after": ["3"]}


def upstream_failure() -> UpstreamStatus:
    status = status_pb2.Status(code=3, message="bad")
    status.details.add().Pack(
        error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field="title")]
        )
    )
    status.details.add(type_url="type.example.com/x.Unknown", value=b"\x01")
    return UpstreamStatus(
        3,
        "bad",
        initial_metadata=[("x-lead", "1"), ("connect-x", "no")],
        trailing_metadata=[
            ("x-cost", "7"),
            ("grpc-status-details-bin", status.SerializeToString()),
            ("access-control-allow-origin", "*"),
        ],
    )


def test_an_upstream_status_as_a_unary_connect_error() -> None:
    status, headers, body = connect_unary_error(upstream_failure(), CODEC)
    assert status == 400
    assert headers == [
        (b"content-type", b"application/json"),
        (b"trailer-x-cost", b"7"),
        (b"x-lead", b"1"),
    ]
    error = orjson.loads(body)
    assert error["code"] == "invalid_argument" and error["message"] == "bad"
    bad, unknown = error["details"]
    assert bad["type"] == "google.rpc.BadRequest"
    assert bad["debug"] == {"fieldViolations": [{"field": "title"}]}
    value = base64.b64decode(bad["value"] + "==")
    assert error_details_pb2.BadRequest.FromString(value).field_violations[0].field == "title"
    assert unknown == {"type": "x.Unknown", "value": "AQ"}  # no debug for an unknown type


def test_an_upstream_status_ending_a_stream() -> None:
    end = end_stream_of(connect_end_stream_error(upstream_failure(), CODEC))
    assert end["metadata"] == {"x-cost": ["7"]}
    error = end["error"]
    assert isinstance(error, dict) and len(error["details"]) == 2
    assert connect_stream_error_headers(upstream_failure()) == [(b"x-lead", b"1")]


def test_gateway_details_are_packed() -> None:
    detail = {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": "a", "description": "b"}],
    }
    error = EdgeError("bad", details=[detail, {"@type": "type.googleapis.com/no.Such"}])
    _, _, body = connect_unary_error(error, CODEC)
    [packed] = orjson.loads(body)["details"]  # the unpackable one is left out
    assert packed["type"] == "google.rpc.BadRequest"
    assert packed["debug"] == {"fieldViolations": [{"field": "a", "description": "b"}]}
    value = base64.b64decode(packed["value"] + "==")
    assert error_details_pb2.BadRequest.FromString(value).field_violations[0].description == "b"
