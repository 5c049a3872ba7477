"""Compression's pure parts: Accept-Encoding and Content-Encoding, the config, and the
ASGI wrappers' decisions (driven by a recording ``send``, no network)."""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
import zlib
from types import SimpleNamespace
from typing import Any

import brotli
import pytest
from compressing import brotli_bomb
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edge.compression import negotiate as negotiate_module
from edge.compression.config import CompressionConfig
from edge.compression.negotiate import (
    MAX_HEADER,
    MAX_ITEMS,
    UnknownCoding,
    accepted_weights,
    choose_coding,
    content_codings,
)
from edge.errors import BodyTooLarge
from edge.ingress.compression import (
    CompressingSend,
    Compression,
    UnsupportedEncoding,
    encoded_headers,
)

OFFERED = (b"br", b"gzip")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"gzip", b"gzip"),
        (b"br", b"br"),
        (b"gzip, br", b"br"),  # equal weights: the server's preference
        (b"gzip, deflate, br, zstd", b"br"),  # what browsers send
        (b"GZIP", b"gzip"),  # codings are case-insensitive
        (b"x-gzip", b"gzip"),
        (b"gzip;q=1.0, br;q=0.999", b"gzip"),
        (b"gzip; q=0.5 , br ; q=0.4", b"gzip"),
        (b"br;q=0, gzip;q=0.001", b"gzip"),
        (b"*", b"br"),
        (b"*;q=0.5, br;q=0", b"gzip"),
        (b"br;q=0, *", b"gzip"),
        (b"gzip;q=0, br;q=0", None),
        (b"identity", None),
        (b"identity;q=0", None),  # nothing acceptable: identity anyway (nginx, Envoy)
        (b"*;q=0", None),
        (b"deflate, zstd", None),
        (b"", None),
        (b"gzip;q=1.5", None),  # not a qvalue: the item is ignored
        (b"gzip;q=0.1234", None),
        (b"gzip;q=-1", None),
        (b"gzip;q=abc", None),
        (b"gzip;q=", None),
        (b"gzip;q", None),
        (b"gzip;level=9", b"gzip"),  # an unknown parameter is only that
        (b"gzip;q=0.5, gzip;q=0", b"gzip"),  # named twice: the first counts
        (b",,,gzip,,,", b"gzip"),
        # identity weighed above every offered coding: not compressed (RFC 9110 12.5.3)
        (b"gzip;q=0.5, identity", None),
        (b"identity, gzip;q=0.9, br;q=0.8", None),
        (b"gzip;q=0.5, br;q=0.4, *", None),  # identity through *
        (b"gzip, identity", b"gzip"),  # as much as identity: compressed
        (b"identity;q=0.5, gzip", b"gzip"),
        (b"gzip;q=0.5, *", b"br"),  # br through * weighs as much as identity does
        (b"gzip;q=0.5", b"gzip"),  # identity not weighed: only the fallback
        (b"gzip;q=0.5, identity;q=0", b"gzip"),
    ],
)
def test_choose_coding(header: bytes, expected: bytes | None) -> None:
    assert choose_coding(header, OFFERED) == expected


def test_the_server_preference_breaks_ties() -> None:
    assert choose_coding(b"br, gzip", (b"gzip", b"br")) == b"gzip"
    assert choose_coding(b"br", (b"gzip",)) is None


def test_identity_preferred_is_not_compressed_even_when_only_gzip_is_offered() -> None:
    """``*`` gives identity its weight too: gzip below it is not what the client wants."""
    assert choose_coding(b"gzip;q=0.5, *", (b"gzip",)) is None
    assert choose_coding(b"gzip;q=0.5, *;q=0.4", (b"gzip",)) == b"gzip"


def test_a_huge_header_is_read_only_so_far() -> None:
    assert len(accepted_weights(b"a, " * 100_000)) <= MAX_ITEMS
    assert choose_coding(b"x, " * MAX_ITEMS + b"gzip", OFFERED) is None  # past the items read
    assert choose_coding(b"x, " * (MAX_ITEMS - 1) + b"gzip", OFFERED) == b"gzip"  # the last read
    # past MAX_HEADER bytes, even within MAX_ITEMS items: the rest is not read
    padded = b"x;p=" + b"y" * MAX_HEADER + b", gzip"
    assert choose_coding(padded, OFFERED) is None
    assert choose_coding(b" " * (MAX_HEADER - 4) + b"gzip", OFFERED) == b"gzip"  # just inside
    assert choose_coding(b" " * (MAX_HEADER - 3) + b"gzip", OFFERED) is None  # cut to "gzi"


def _weights_reading_every_item(header: bytes) -> dict[bytes, float]:
    """What ``accepted_weights`` read before it split at most MAX_ITEMS times: the whole
    (cut) header split, the first MAX_ITEMS items parsed."""
    items = header[:MAX_HEADER].split(b",")[:MAX_ITEMS]
    return accepted_weights(b",".join(items))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([b"gzip", b"br", b"x-gzip", b"*", b"identity", b"", b" ", b"zstd"])
        | st.binary(max_size=12),
        max_size=80,
    ).map(b",".join)
    | st.binary(max_size=MAX_HEADER + 64)
)
def test_splitting_only_what_is_read_changes_nothing(header: bytes) -> None:
    assert accepted_weights(header) == _weights_reading_every_item(header)


SUPPORTED = frozenset({b"gzip", b"br"})


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"gzip", (b"gzip",)),
        (b"x-gzip", (b"gzip",)),
        (b"BR", (b"br",)),
        (b"identity", ()),
        (b"gzip, identity, br", (b"gzip", b"br")),
        (b" gzip ,", (b"gzip",)),
    ],
)
def test_content_codings(header: bytes, expected: tuple[bytes, ...]) -> None:
    assert content_codings(header, SUPPORTED, 2) == expected


@pytest.mark.parametrize(
    "header", [b"deflate", b"zstd", b"gzip, compress", b"gzip, gzip, gzip", b"\xff\x00"]
)
def test_unknown_codings(header: bytes) -> None:
    with pytest.raises(UnknownCoding) as caught:
        content_codings(header, SUPPORTED, 2)
    assert "\x00" not in str(caught.value)


def test_config_refuses_nonsense() -> None:
    for bad in (
        {"algorithms": []},
        {"algorithms": ["gzip", "gzip"]},
        {"algorithms": ["zstd"]},
        {"content_types": ["json"]},
        {"content_types": ["application/json; charset=utf-8"]},
        {"gzip_level": 0},
        {"brotli_quality": 12},
        {"stream_brotli_quality": 12},
        {"content_types": ["*/*"]},
        {"content_types": ["*/json"]},
        {"content_types": ["text/x-*"]},
        {"content_types": ["text/"]},
        {"min_size": "-1"},
        {"colour": "blue"},
    ):
        with pytest.raises(ValidationError):
            CompressionConfig.model_validate(bad)
    config = CompressionConfig.model_validate({"min_size": "2KiB", "content_types": [" Text/CSV"]})
    assert config.min_size == 2048
    assert config.content_types == ["text/csv"]
    wild = CompressionConfig.model_validate({"content_types": ["Text/*"]})
    assert wild.content_types == ["text/*"]


# -- the wrappers ------------------------------------------------------------------------


def compression(**settings: Any) -> Compression:
    policies = settings.pop("policies", ())
    limit = settings.pop("limit", 1 << 20)
    return Compression(CompressionConfig.model_validate(settings), policies, max_body_bytes=limit)


def transcoded(name: str, *, takes_body: bool = True) -> Any:
    """What ``wrap`` reads of a TranscodeRoute."""
    method = SimpleNamespace(full_name=name, client_streaming=False)
    return SimpleNamespace(method=method, binder=SimpleNamespace(takes_body=takes_body))


def scope(*headers: tuple[bytes, bytes], method: str = "GET") -> dict[str, Any]:
    return {"type": "http", "method": method, "headers": list(headers)}


class Recorder:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: Any) -> None:
        self.messages.append(dict(message))

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


async def never() -> Any:
    raise AssertionError("receive was not expected")


def send_through(
    rules: Compression,
    status: int,
    headers: list[tuple[bytes, bytes]],
    bodies: list[tuple[bytes, bool]],
    *,
    request: dict[str, Any] | None = None,
    route: str = "pkg.Service.Method",
) -> Recorder:
    recorder = Recorder()
    request = request or scope((b"accept-encoding", b"gzip"))
    send, _ = rules.wrap(request, transcoded(route, takes_body=False), recorder, never)

    async def run() -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for body, more in bodies:
            await send({"type": "http.response.body", "body": body, "more_body": more})

    asyncio.run(run())
    return recorder


JSON = (b"content-type", b"application/json")
PAYLOAD = b'{"items": [' + b'"an item", ' * 300 + b'"last"]}'


def length(body: bytes) -> tuple[bytes, bytes]:
    return (b"content-length", str(len(body)).encode())


def test_a_unary_reply_is_compressed_with_its_new_length() -> None:
    sent = send_through(
        compression(),
        200,
        [JSON, length(PAYLOAD), (b"etag", b'"v1"'), (b"vary", b"Origin")],
        [(PAYLOAD, False)],
    )
    headers = sent.headers
    assert headers[b"content-encoding"] == b"gzip"
    assert int(headers[b"content-length"]) == len(sent.body) < len(PAYLOAD) // 5
    assert headers[b"etag"] == b'W/"v1"'  # another representation of the same content
    assert headers[b"vary"] == b"Origin, Accept-Encoding"
    assert [name for name, _ in sent.messages[0]["headers"]].count(b"vary") == 1
    assert zlib.decompress(sent.body, 31) == PAYLOAD


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (204, [JSON]),
        (304, [JSON, (b"etag", b'"v1"')]),
        (101, [JSON]),
        (200, [(b"content-type", b"application/grpc"), length(PAYLOAD)]),
        (200, [(b"content-type", b"image/png"), length(PAYLOAD)]),
        (200, [length(PAYLOAD)]),  # no content type
        (200, [JSON, (b"content-encoding", b"br"), length(PAYLOAD)]),
        (200, [JSON, (b"cache-control", b"private, No-Transform"), length(PAYLOAD)]),
        (200, [JSON, (b"content-length", b"1023")]),  # under min_size
        (200, [JSON, (b"content-length", b"x")]),
    ],
)
def test_answers_left_as_they_are(status: int, headers: list[tuple[bytes, bytes]]) -> None:
    sent = send_through(compression(), status, headers, [(PAYLOAD, False)])
    assert sent.messages[0]["headers"] == headers
    assert sent.body == PAYLOAD


def test_media_type_parameters_and_case_are_ignored() -> None:
    headers = [(b"Content-Type", b"Application/JSON; charset=utf-8"), length(PAYLOAD)]
    sent = send_through(compression(), 200, headers, [(PAYLOAD, False)])
    assert sent.headers[b"content-encoding"] == b"gzip"


def test_a_stream_is_flushed_message_by_message() -> None:
    messages = [b'{"result":{"index":%d}}\n' % n for n in range(5)]
    headers = [(b"content-type", b"application/x-ndjson")]
    sent = send_through(compression(), 200, headers, [(m, True) for m in messages] + [(b"", False)])
    assert sent.headers[b"content-encoding"] == b"gzip"
    assert b"content-length" not in sent.headers
    inflate = zlib.decompressobj(31)
    for index, message in enumerate(sent.messages[1:6]):
        assert message["more_body"] is True
        assert inflate.decompress(message["body"]) == messages[index]  # whole, at once
    assert sent.messages[-1]["more_body"] is False
    assert inflate.decompress(sent.messages[-1]["body"]) == b""
    assert inflate.eof


def test_an_empty_stream_message_stays_empty() -> None:
    headers = [(b"content-type", b"text/event-stream")]
    sent = send_through(compression(), 200, headers, [(b"", True), (b"data: x\n\n", False)])
    assert sent.messages[1]["body"] == b""
    assert zlib.decompress(sent.body, 31) == b"data: x\n\n"


def test_a_known_length_sent_in_parts_becomes_a_stream() -> None:
    half = len(PAYLOAD) // 2
    sent = send_through(
        compression(),
        200,
        [JSON, length(PAYLOAD)],
        [(PAYLOAD[:half], True), (PAYLOAD[half:], False)],
    )
    assert b"content-length" not in sent.headers
    assert zlib.decompress(sent.body, 31) == PAYLOAD


def test_a_refusal_lingering_keeps_its_whole_answer_up_front() -> None:
    """send_refusal: the whole body with more_body, the end later, empty."""
    sent = send_through(
        compression(), 413, [JSON, length(PAYLOAD)], [(PAYLOAD, True), (b"", False)]
    )
    assert int(sent.headers[b"content-length"]) == len(sent.messages[1]["body"])
    assert zlib.decompress(sent.messages[1]["body"], 31) == PAYLOAD
    assert sent.messages[2] == {"type": "http.response.body", "body": b"", "more_body": False}


def test_brotli_is_chosen_and_decodes() -> None:
    request = scope((b"accept-encoding", b"gzip, br"))
    sent = send_through(
        compression(), 200, [JSON, length(PAYLOAD)], [(PAYLOAD, False)], request=request
    )
    assert sent.headers[b"content-encoding"] == b"br"
    assert brotli.decompress(sent.body) == PAYLOAD


def test_streams_have_their_own_preference() -> None:
    browser = scope((b"accept-encoding", b"gzip, deflate, br, zstd"))
    ndjson = [(b"content-type", b"application/x-ndjson")]
    stream = send_through(compression(), 200, ndjson, [(PAYLOAD, False)], request=browser)
    assert stream.headers[b"content-encoding"] == b"gzip"
    unary = send_through(
        compression(), 200, [JSON, length(PAYLOAD)], [(PAYLOAD, False)], request=browser
    )
    assert unary.headers[b"content-encoding"] == b"br"
    only_br = scope((b"accept-encoding", b"br"))
    # by default streams offer gzip alone: a br-only client's stream goes unencoded
    stream = send_through(compression(), 200, ndjson, [(PAYLOAD, False)], request=only_br)
    assert b"content-encoding" not in stream.headers and stream.body == PAYLOAD
    with_br = compression(stream_algorithms=["gzip", "br"])
    stream = send_through(with_br, 200, ndjson, [(PAYLOAD, False)], request=only_br)
    assert brotli.decompress(stream.body) == PAYLOAD


def test_streams_offer_only_gzip_by_default() -> None:
    config = CompressionConfig()
    assert config.stream_algorithms == ["gzip"]
    assert config.stream_brotli_quality == 5


@pytest.mark.parametrize(("whole", "stream"), [(4, 1), (4, 5), (11, 0)])
def test_the_stream_brotli_quality_reaches_the_stream_encoder(whole: int, stream: int) -> None:
    """Unary replies at brotli_quality, streams at stream_brotli_quality: the bytes are
    brotli's own at that quality (a 64 KiB window, text mode), message by message."""
    rules = compression(
        algorithms=["br"],
        stream_algorithms=["br"],
        brotli_quality=whole,
        stream_brotli_quality=stream,
    )
    ndjson = [(b"content-type", b"application/x-ndjson")]
    request = scope((b"accept-encoding", b"br"))
    messages = [b'{"result":{"index":%d,"name":"book %d"}}\n' % (n, n) for n in range(40)]
    sent = send_through(
        rules, 200, ndjson, [(m, True) for m in messages] + [(b"", False)], request=request
    )
    expected = brotli.Compressor(mode=brotli.MODE_TEXT, quality=stream, lgwin=16)
    wanted = [expected.process(m) + expected.flush() for m in messages]
    assert [m["body"] for m in sent.messages[1:-1]] == wanted
    unary = send_through(rules, 200, [JSON, length(PAYLOAD)], [(PAYLOAD, False)], request=request)
    assert unary.body == brotli.compress(PAYLOAD, mode=brotli.MODE_TEXT, quality=whole)


def test_no_wrapper_without_the_headers_or_for_head() -> None:
    rules = compression()
    recorder = Recorder()
    for request in (
        scope((b"accept", b"application/json")),
        scope((b"accept-encoding", b"gzip"), method="HEAD"),
        scope((b"accept-encoding", b"identity")),
        scope((b"content-encoding", b"gzip")),  # but the route takes no body
    ):
        send, receive = rules.wrap(request, transcoded("r", takes_body=False), recorder, never)
        assert send is recorder and receive is never


def test_wildcard_content_types_match_every_subtype() -> None:
    rules = compression(content_types=["text/*", "application/json"])
    for kind in (b"text/csv", b"Text/Plain; charset=utf-8", b"application/json"):
        sent = send_through(
            rules, 200, [(b"content-type", kind), length(PAYLOAD)], [(PAYLOAD, False)]
        )
        assert sent.headers[b"content-encoding"] == b"gzip", kind
    for kind in (b"application/x-ndjson", b"textual/csv", b"image/png"):
        headers = [(b"content-type", kind), length(PAYLOAD)]
        sent = send_through(rules, 200, headers, [(PAYLOAD, False)])
        assert sent.messages[0]["headers"] == headers, kind


def test_every_route_name_is_remembered() -> None:
    """Route names come from the descriptors: an API with more methods than any cap would
    re-run every policy's patterns per request past it."""
    rules = compression(policies=[(["pkg.Off.*"], False)])
    names = [f"pkg.S{n}.Method" for n in range(3000)]
    for name in names:
        assert rules.on_for(name)
    assert set(rules._routes) == set(names)


def test_routes_follow_the_first_matching_policy() -> None:
    rules = compression(policies=[(["pkg.Off.*"], False), (["pkg.*"], None)])
    assert not rules.on_for("pkg.Off.Method")
    assert rules.on_for("pkg.Other.Method")  # matched, no opinion: the global switch
    assert rules.on_for("elsewhere.Method")
    off = Compression(CompressionConfig(enabled=False), [(["pkg.On.*"], True)], max_body_bytes=1)
    assert off.on_for("pkg.On.Method") and not off.on_for("pkg.Other.Method")


def test_vary_star_is_left_alone() -> None:
    out = dict(encoded_headers([(b"vary", b"*")], b"gzip", 10))
    assert out[b"vary"] == b"*"
    out = dict(encoded_headers([(b"vary", b"accept-encoding, origin")], b"gzip", None))
    assert out[b"vary"] == b"accept-encoding, origin"


# -- request bodies ----------------------------------------------------------------------


def receiving(*chunks: bytes) -> Any:
    events = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]

    async def receive() -> Any:
        return events.pop(0) if events else {"type": "http.disconnect"}

    return receive


async def read_all(receive: Any) -> bytes:
    out = []
    while True:
        message = await receive()
        assert message["type"] == "http.request"
        out.append(message["body"])
        if not message["more_body"]:
            return b"".join(out)


def decoding(header: bytes, *chunks: bytes, limit: int = 1 << 20) -> Any:
    rules = compression(limit=limit)
    request = scope((b"content-encoding", header), method="POST")
    _, receive = rules.wrap(request, transcoded("r"), Recorder(), receiving(*chunks))
    return receive


def test_a_gzip_body_in_many_pieces_and_members() -> None:
    data = b'{"a": "' + b"x" * 200_000 + b'"}'
    body = zlib.compress(data[:1000], wbits=31) + zlib.compress(data[1000:], wbits=31)
    chunks = [body[i : i + 7] for i in range(0, len(body), 7)]
    assert asyncio.run(read_all(decoding(b"gzip", *chunks))) == data


def test_an_unknown_coding_refuses_on_the_first_read_then_drains_raw() -> None:
    receive = decoding(b"zstd", b"abc", b"def")

    async def run() -> None:
        with pytest.raises(UnsupportedEncoding) as caught:
            await receive()
        assert caught.value.status == 415
        assert caught.value.headers == {"accept-encoding": "br, gzip, identity"}
        assert await read_all(receive) == b"abcdef"  # the refusal's lingering drains these

    asyncio.run(run())


def test_a_bomb_inflates_no_more_than_the_limit() -> None:
    """Peak memory while refusing a 1 GiB bomb stays near one limit, not the bomb."""
    bomb = brotli_bomb()
    limit = 1024 * 1024

    async def run() -> None:
        receive = decoding(b"br", bomb, limit=limit)
        with pytest.raises(BodyTooLarge):
            await read_all(receive)

    tracemalloc.start()
    try:
        asyncio.run(run())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * limit, peak


def test_long_accept_encoding_values_are_not_remembered() -> None:
    rules = compression()
    for n in range(2000):
        assert rules.negotiate(b"gzip;q=0.5, " + b"x" * 200 + str(n).encode()) is not None
    assert not rules._chosen  # a flood of distinct values holds no memory
    rules.negotiate(b"gzip, br")
    assert list(rules._chosen) == [b"gzip, br"]


def test_a_flood_of_short_values_does_not_fill_the_cache_for_good() -> None:
    """The values remembered are the recently used: a browser's value, asked for between
    thousands of distinct short ones, stays; one first seen after the flood is kept."""
    rules = compression()
    browser = b"gzip, deflate, br, zstd"
    rules.negotiate(browser)
    for n in range(5000):
        rules.negotiate(b"gzip;q=0.%d" % (n % 1000) + b", x%d" % n)
        if n % 100 == 0:
            rules.negotiate(browser)
    assert len(rules._chosen) <= 1024
    assert browser in rules._chosen
    rules.negotiate(b"br, gzip")
    assert b"br, gzip" in rules._chosen


def test_accept_encoding_is_parsed_once_for_replies_and_streams(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from edge.ingress import compression as module

    calls: list[bytes] = []
    real = negotiate_module.accepted_weights

    def counting(header: bytes) -> dict[bytes, float]:
        calls.append(header)
        return real(header)

    monkeypatch.setattr(negotiate_module, "accepted_weights", counting)
    monkeypatch.setattr(module, "accepted_weights", counting, raising=False)
    rules = compression(stream_algorithms=["gzip", "br"])
    choice = rules.negotiate(b"gzip;q=0.9, br")
    assert choice is not None and [e.name for e in choice if e] == [b"br", b"br"]
    assert calls == [b"gzip;q=0.9, br"]


def test_a_whole_reply_under_min_size_skips_the_wrapper_and_one_over_it_is_compressed() -> None:
    rules = compression(min_size=100)
    recorder = Recorder()
    send, _ = rules.wrap(scope((b"accept-encoding", b"gzip")), transcoded("r"), recorder, never)
    assert isinstance(send, CompressingSend)
    assert send.for_whole(99) is recorder  # the bare send: nothing to look at
    assert send.for_whole(100) is send
    # br is offered for streams only, and the client takes nothing else
    streams_br = compression(min_size=100, algorithms=["gzip"], stream_algorithms=["br"])
    streaming_only, _ = streams_br.wrap(
        scope((b"accept-encoding", b"br")), transcoded("r"), recorder, never
    )
    assert isinstance(streaming_only, CompressingSend)
    assert streaming_only.for_whole(10_000) is recorder  # no encoding for whole replies

    async def run() -> None:
        whole = send.for_whole(len(PAYLOAD))
        await whole({"type": "http.response.start", "status": 200, "headers": [JSON]})
        await whole({"type": "http.response.body", "body": PAYLOAD})

    asyncio.run(run())
    assert recorder.headers[b"content-encoding"] == b"gzip"
    assert gzip.decompress(recorder.body) == PAYLOAD
