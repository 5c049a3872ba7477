"""Tables and properties for the gRPC-Web wire core: content types, frames, base64, trailers."""

from __future__ import annotations

import base64
import struct
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.ingress.grpc_web_reply import (
    ResponseEncoder,
    decode_grpc_message,
    encode_grpc_message,
    encode_message,
    encode_trailers,
    metadata_entries,
    trailer_block,
    trailers_only_headers,
)
from edge.ingress.grpc_web_wire import (
    Base64ChunkDecoder,
    CompressionUnsupported,
    Frame,
    FramingError,
    GrpcWebRequestDecoder,
    InvalidBase64,
    MessageTooLarge,
    RequestDecoder,
    UnsupportedMediaType,
    check_grpc_encoding,
    encode_frame,
    is_grpc_web,
    parse_content_type,
    response_content_type,
    wants_text_response,
)

# -- content types --------------------------------------------------------------------

CONTENT_TYPES = [
    ("application/grpc-web", False),
    ("application/grpc-web+proto", False),
    ("application/grpc-web-text", True),
    ("application/grpc-web-text+proto", True),
    ("Application/GRPC-Web+Proto", False),
    ("application/grpc-web-text+proto; charset=utf-8", True),
    ("application/grpc-web ; foo=bar", False),
    (b"application/grpc-web+proto", False),
]


@pytest.mark.parametrize(("value", "text"), CONTENT_TYPES, ids=[str(v) for v, _ in CONTENT_TYPES])
def test_content_types_that_are_spoken(value: str | bytes, text: bool) -> None:
    assert parse_content_type(value) is text
    assert is_grpc_web(value)


REFUSED_TYPES = [
    ("application/grpc-web+json", "json"),
    ("application/grpc-web-text+json", "json"),
    ("application/grpc-web+thrift", "thrift"),
    ("application/grpc-web+", "empty"),
    ("application/grpc-web-text-base64", "not gRPC-Web"),
    ("application/grpc", "not gRPC-Web"),
    ("application/json", "not gRPC-Web"),
    ("", "not gRPC-Web"),
    (None, "not gRPC-Web"),
]


@pytest.mark.parametrize(("value", "said"), REFUSED_TYPES, ids=[str(v) for v, _ in REFUSED_TYPES])
def test_other_content_types_are_refused_naming_what_was_sent(value: str | None, said: str) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        parse_content_type(value)
    assert said in caught.value.message
    assert caught.value.status == 415
    assert caught.value.grpc_code == 12


def test_is_grpc_web_claims_every_grpc_web_codec_for_a_grpc_web_answer() -> None:
    assert is_grpc_web("application/grpc-web+json")
    assert not is_grpc_web("application/grpc")
    assert not is_grpc_web(None)


@pytest.mark.parametrize(
    ("text_request", "accept", "text"),
    [
        (True, None, True),
        (False, None, False),
        (False, "application/grpc-web-text", True),
        (False, b"*/*, application/grpc-web-text+proto;q=0.9", True),
        (False, "application/grpc-web+proto", False),
    ],
    ids=["text-request", "binary", "accept-text", "accept-in-list", "accept-binary"],
)
def test_text_response_when_asked(
    text_request: bool, accept: str | bytes | None, text: bool
) -> None:
    assert wants_text_response(text_request, accept) is text
    assert response_content_type(text).startswith(
        "application/grpc-web-text" if text else "application/grpc-web+"
    )


@pytest.mark.parametrize("value", [None, "identity", "IDENTITY", b"identity", ""])
def test_identity_encoding_passes(value: str | bytes | None) -> None:
    check_grpc_encoding(value)


@pytest.mark.parametrize("value", ["gzip", b"deflate", "snappy"])
def test_other_encodings_are_unimplemented_and_say_identity(value: str | bytes) -> None:
    with pytest.raises(CompressionUnsupported) as caught:
        check_grpc_encoding(value)
    assert caught.value.grpc_code == 12
    assert caught.value.headers == {"grpc-accept-encoding": "identity"}


# -- request frames -------------------------------------------------------------------


def frame(flags: int, data: bytes) -> bytes:
    return struct.pack(">BI", flags, len(data)) + data


FRAME_CASES = [
    ("one", frame(0, b"abc"), [b"abc"]),
    ("empty-message", frame(0, b""), [b""]),
    ("two", frame(0, b"a") + frame(0, b"bc"), [b"a", b"bc"]),
    ("nothing", b"", []),
    ("at-the-limit", frame(0, b"x" * 16), [b"x" * 16]),
]


@pytest.mark.parametrize(
    ("body", "messages"), [c[1:] for c in FRAME_CASES], ids=[c[0] for c in FRAME_CASES]
)
def test_request_frames(body: bytes, messages: list[bytes]) -> None:
    decoder = GrpcWebRequestDecoder(16)
    assert decoder.messages(body) == messages
    decoder.finish()


HOSTILE_FRAMES: list[tuple[str, bytes, type[Exception], str]] = [
    ("over-the-limit", frame(0, b"x" * 17), MessageTooLarge, "17 bytes"),
    ("length-2^32-1", b"\x00\xff\xff\xff\xff", MessageTooLarge, "4294967295"),
    ("compressed", frame(1, b"x"), CompressionUnsupported, "grpc-encoding"),
    ("trailer-in-request", frame(0x80, b"x"), FramingError, "trailer frame"),
    ("compressed-trailer", frame(0x81, b"x"), FramingError, "trailer frame"),
    ("unknown-bit", frame(0x02, b"x"), FramingError, "0x02"),
    ("high-bits", frame(0x40, b"x"), FramingError, "0x40"),
]


@pytest.mark.parametrize(
    ("body", "error", "said"), [c[1:] for c in HOSTILE_FRAMES], ids=[c[0] for c in HOSTILE_FRAMES]
)
def test_hostile_frames_are_refused_at_their_prefix(
    body: bytes, error: type[Exception], said: str
) -> None:
    decoder = GrpcWebRequestDecoder(16)
    with pytest.raises(error) as caught:
        decoder.feed(body[:5])  # the prefix alone is enough: nothing of the message waits
    assert said in str(caught.value)


def test_the_limit_is_named_and_nothing_is_buffered_for_a_huge_prefix() -> None:
    decoder = GrpcWebRequestDecoder(4 * 1024 * 1024)
    with pytest.raises(MessageTooLarge) as caught:
        decoder.feed(b"\x00\xff\xff\xff\xff" + b"x" * 100)
    assert "4194304 bytes" in caught.value.message
    assert caught.value.grpc_code == 8


@pytest.mark.parametrize(
    "body",
    [b"\x00", b"\x00\x00\x00\x00", b"\x00\x00\x00\x00\x05abc", frame(0, b"ok") + b"\x00\x00"],
    ids=["one-byte", "prefix-cut", "message-cut", "second-frame-cut"],
)
def test_truncated_bodies_fail_at_the_end(body: bytes) -> None:
    decoder = GrpcWebRequestDecoder(100)
    decoder.feed(body)
    with pytest.raises(FramingError, match="ends inside a message"):
        decoder.finish()


def test_the_buffer_reports_what_waits() -> None:
    decoder = GrpcWebRequestDecoder(100)
    assert decoder.feed(b"\x00\x00\x00\x00\x03a") == []
    assert decoder.buffered == 6
    assert decoder.feed(b"bc") == [Frame(0, b"abc")]
    assert decoder.buffered == 0


messages_st = st.lists(st.binary(max_size=300), max_size=8)


def split_anywhere(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


@settings(max_examples=300, deadline=None)
@given(messages_st, st.lists(st.integers(min_value=0), max_size=20))
def test_frames_survive_any_chunking(messages: list[bytes], cuts: list[int]) -> None:
    body = b"".join(encode_frame(0, m) for m in messages)
    decoder = GrpcWebRequestDecoder(300)
    got: list[bytes] = []
    for piece in split_anywhere(body, cuts):
        got.extend(decoder.messages(piece))
    decoder.finish()
    assert got == messages


# -- text mode ------------------------------------------------------------------------


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


TEXT_CASES = [
    ("one-chunk", b64(frame(0, b"hello")), [b"hello"]),
    ("padded-chunks", b64(frame(0, b"a")) + b64(frame(0, b"bc")), [b"a", b"bc"]),
    # the JS client's request: one padded chunk; a client flushing mid-frame: two
    ("mid-frame-flush", b64(frame(0, b"abcd")[:4]) + b64(frame(0, b"abcd")[4:]), [b"abcd"]),
    ("empty", b"", []),
]


@pytest.mark.parametrize(
    ("body", "messages"), [c[1:] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES]
)
def test_text_bodies(body: bytes, messages: list[bytes]) -> None:
    decoder = RequestDecoder(text=True, max_message_bytes=100)
    assert decoder.feed(body) == messages
    decoder.finish()


BAD_BASE64 = [
    ("url-safe", b"AAAA-_AA"),
    ("whitespace", b"AAAA AAA"),
    ("newline", b"AAAA\nAAA"),
    ("padding-first", b"=AAA"),
    ("padding-inside", b"A=AA"),
    ("three-pads", b"A==="),
    ("only-pads", b"===="),
    ("not-ascii", "AAAé".encode()),
    ("nul", b"AAA\x00"),
]


@pytest.mark.parametrize("body", [c[1] for c in BAD_BASE64], ids=[c[0] for c in BAD_BASE64])
def test_invalid_base64_is_refused(body: bytes) -> None:
    decoder = Base64ChunkDecoder()
    with pytest.raises(InvalidBase64):
        decoder.feed(body)
        decoder.finish()


@pytest.mark.parametrize(
    "body", [b"A", b"AB", b"ABC", b64(b"hi").rstrip(b"=")], ids=["1", "2", "3", "unpadded"]
)
def test_a_text_body_cut_inside_a_group_fails_at_the_end(body: bytes) -> None:
    decoder = Base64ChunkDecoder()
    decoder.feed(body)
    with pytest.raises(InvalidBase64, match="each chunk must be padded"):
        decoder.finish()


def test_an_invalid_character_is_refused_even_while_held() -> None:
    with pytest.raises(InvalidBase64):
        Base64ChunkDecoder().feed(b"AAAA-")


@pytest.mark.parametrize("text", [False, True], ids=["binary", "text"])
def test_buffered_counts_the_decoded_bytes_of_an_unfinished_frame(text: bool) -> None:
    decoder = RequestDecoder(text=text, max_message_bytes=100)
    wire = frame(0, b"one") + frame(0, b"two")[:6]  # a whole frame, then a prefix and a byte
    assert decoder.feed(b64(wire) if text else wire) == [b"one"]
    assert decoder.buffered == 6
    with pytest.raises(FramingError):
        decoder.finish()


def test_text_mode_limits_decoded_messages() -> None:
    decoder = RequestDecoder(text=True, max_message_bytes=3)
    with pytest.raises(MessageTooLarge):
        decoder.feed(b64(frame(0, b"abcd")))


@settings(max_examples=300, deadline=None)
@given(
    messages_st,
    st.lists(st.integers(min_value=0), max_size=10),
    st.lists(st.integers(min_value=0), max_size=20),
)
def test_padded_chunks_split_anywhere_decode_to_the_frames(
    messages: list[bytes], flushes: list[int], cuts: list[int]
) -> None:
    stream = b"".join(encode_frame(0, m) for m in messages)
    # the sender pads and flushes at arbitrary byte offsets of the frame stream...
    text = b"".join(b64(piece) for piece in split_anywhere(stream, flushes))
    decoder = RequestDecoder(text=True, max_message_bytes=300)
    got: list[bytes] = []
    # ...and the network splits the text anywhere, even inside a 4-character group
    for piece in split_anywhere(text, cuts):
        got.extend(decoder.feed(piece))
    decoder.finish()
    assert got == messages


# -- grpc-message ---------------------------------------------------------------------

GRPC_MESSAGES = [
    ("plain", "not found", "not found"),
    ("percent", "100% sure", "100%25 sure"),
    ("utf-8", "café", "caf%C3%A9"),
    ("crlf", "a\r\nb", "a%0D%0Ab"),
    ("tab", "a\tb", "a%09b"),
    ("del", "a\x7fb", "a%7Fb"),
    ("empty", "", ""),
    ("lone-surrogate", "a\ud800b", "a?b"),
]


@pytest.mark.parametrize(
    ("text", "wire"), [c[1:] for c in GRPC_MESSAGES], ids=[c[0] for c in GRPC_MESSAGES]
)
def test_grpc_message_percent_encoding(text: str, wire: str) -> None:
    assert encode_grpc_message(text) == wire


LENIENT = [
    ("stray-percent", "100%", "100%"),
    ("bad-hex", "%zz%4", "%zz%4"),
    ("lower-hex", "caf%c3%a9", "café"),
    ("broken-utf8", "%C3", "\ufffd"),
    ("bytes", b"caf%C3%A9", "café"),
    ("connect-es-encodes-spaces", "caf%C3%A9%20100%25%20done", "café 100% done"),
]


@pytest.mark.parametrize(("wire", "text"), [c[1:] for c in LENIENT], ids=[c[0] for c in LENIENT])
def test_grpc_message_decoding_never_fails(wire: str | bytes, text: str) -> None:
    assert decode_grpc_message(wire) == text


@given(st.text())
def test_grpc_message_round_trips_and_is_header_safe(text: str) -> None:
    wire = encode_grpc_message(text)
    assert all(0x20 <= ord(c) <= 0x7E for c in wire)
    expected = text.encode("utf-8", "replace").decode("utf-8")
    assert decode_grpc_message(wire) == expected
    # what the browser clients call on it: decodeURIComponent, strict about "%" and UTF-8
    assert unquote(wire, errors="strict") == expected


# -- metadata and trailers ------------------------------------------------------------

METADATA = [
    ("ascii", [("x-cost", "237")], [("x-cost", "237")]),
    ("upper-name", [("X-Cost", "1")], [("x-cost", "1")]),
    ("bin-unpadded", [("trace-bin", b"\x00\x01\x02\x03")], [("trace-bin", "AAECAw")]),
    ("bin-from-str", [("a-bin", "hi")], [("a-bin", "aGk")]),
    ("repeated", [("a", "1"), ("a", "2")], [("a", "1"), ("a", "2")]),
    ("crlf-injection", [("a", "1\r\ngrpc-status: 0")], []),
    ("non-ascii", [("a", "café")], []),
    ("bytes-ascii", [("a", b"ok")], [("a", "ok")]),
    ("bytes-not-ascii", [("a", b"\xff")], []),
    ("bad-name", [("a b", "1"), ("a:b", "1"), ("", "1")], []),
    ("reserved", [("grpc-status", "0"), ("grpc-message", "x"), ("content-length", "9")], []),
    ("hop-by-hop", [("connection", "close"), ("transfer-encoding", "chunked")], []),
    # the gateway's messages are identity whatever the upstream's were
    ("encoding", [("grpc-encoding", "gzip")], []),
    (
        "details-pass",
        [("grpc-status-details-bin", b"\x08\x05")],
        [("grpc-status-details-bin", "CAU")],
    ),
]


@pytest.mark.parametrize(
    ("metadata", "entries"), [c[1:] for c in METADATA], ids=[c[0] for c in METADATA]
)
def test_metadata_entries(
    metadata: list[tuple[str, str | bytes]], entries: list[tuple[str, str]]
) -> None:
    assert metadata_entries(metadata) == entries


def test_trailer_frame_layout() -> None:
    wire = encode_trailers(5, "no such book: café", [("x-cost", "2"), ("t-bin", b"\xff")])
    assert wire[0] == 0x80
    (length,) = struct.unpack(">I", wire[1:5])
    block = wire[5:]
    assert len(block) == length
    assert block == (
        b"grpc-status: 5\r\ngrpc-message: no such book: caf%C3%A9\r\nx-cost: 2\r\nt-bin: /w\r\n"
    )


@pytest.mark.parametrize(
    ("code", "message", "block"),
    [
        (0, "", b"grpc-status: 0\r\n"),
        (0, "fine", b"grpc-status: 0\r\ngrpc-message: fine\r\n"),
        (16, "who?", b"grpc-status: 16\r\ngrpc-message: who?\r\n"),
        (-1, "", b"grpc-status: 2\r\n"),
    ],
    ids=["ok", "ok-with-message", "unauthenticated", "negative-is-unknown"],
)
def test_trailer_blocks(code: int, message: str, block: bytes) -> None:
    assert trailer_block(code, message) == block


def test_trailers_parse_as_the_js_client_and_connect_es_parse_them() -> None:
    block = trailer_block(3, "bad: 100%", [("x-a", "1"), ("x-b", "two words")])
    # GrpcWebClientReadableStream.parseHttp1Headers_ / connect-es trailerParse
    lines = block.decode("latin-1").strip().split("\r\n")
    parsed = {
        line[: line.index(":")].strip(): line[line.index(":") + 1 :].strip() for line in lines
    }
    assert parsed == {
        "grpc-status": "3",
        "grpc-message": "bad: 100%25",
        "x-a": "1",
        "x-b": "two words",
    }
    assert unquote(parsed["grpc-message"], errors="strict") == "bad: 100%"


def test_connect_es_trailer_bytes_decode() -> None:
    # connect-es 2.3.0 setTrailerStatus + trailerSerialize for NotFound "café 100% done"
    wire = bytes.fromhex(
        "677270632d6d6573736167653a20636166254333254139253230313030253235253230646f6e65"
        "0d0a677270632d7374617475733a20350d0a"
    )
    lines = dict(line.split(": ", 1) for line in wire.decode().split("\r\n") if line)
    assert lines["grpc-status"] == "5"
    assert decode_grpc_message(lines["grpc-message"]) == "café 100% done"


def test_trailers_only_headers() -> None:
    headers = trailers_only_headers(7, "no", [("x-a", "1"), ("content-length", "5")], text=True)
    assert headers == [
        (b"content-type", b"application/grpc-web-text+proto"),
        (b"grpc-status", b"7"),
        (b"grpc-message", b"no"),
        (b"x-a", b"1"),
    ]


# -- response encoding ----------------------------------------------------------------


def test_binary_response_writes() -> None:
    encoder = ResponseEncoder(text=False)
    assert encoder.content_type == "application/grpc-web+proto"
    assert encoder.message(b"ab") == b"\x00\x00\x00\x00\x02ab"
    assert encoder.trailers(0, "") == encode_trailers(0, "")


def test_text_response_writes_are_padded_one_by_one() -> None:
    encoder = ResponseEncoder(text=True)
    first, second = encoder.message(b"ab"), encoder.trailers(0, "")
    assert first == base64.b64encode(encode_message(b"ab"))
    assert len(first) % 4 == 0 and first.endswith(b"=")
    assert base64.b64decode(second) == encode_trailers(0, "")


def js_client_decode(text: str) -> bytes:
    """What GrpcWebClientReadableStream does with responseText: decode the longest
    multiple-of-four prefix with goog.crypt.base64, whose decoder treats "=" as the end
    of the current group and goes on (so padded chunks concatenate)."""
    usable = text[: len(text) - len(text) % 4]
    out = bytearray()
    for start in range(0, len(usable), 4):
        out += base64.b64decode(usable[start : start + 4])
    return bytes(out)


@given(messages_st, st.integers(min_value=0, max_value=16), st.text(max_size=40))
def test_a_streamed_text_response_decodes_as_the_js_client_decodes_it(
    messages: list[bytes], code: int, message: str
) -> None:
    encoder = ResponseEncoder(text=True)
    writes = [encoder.message(m) for m in messages] + [encoder.trailers(code, message)]
    seen = ""
    for write in writes:  # the client may look after every write: each is whole
        seen += write.decode("ascii")
        assert len(seen) % 4 == 0
    stream = js_client_decode(seen)
    frames = []
    rest = stream
    while rest:  # the client's own parser accepts data and trailer frames alike
        flags, length = struct.unpack(">BI", rest[:5])
        frames.append(Frame(flags, rest[5 : 5 + length]))
        rest = rest[5 + length :]
    assert [f.data for f in frames[:-1]] == messages
    assert frames[-1].flags == 0x80
    assert frames[-1].data.startswith(f"grpc-status: {code}\r\n".encode())
