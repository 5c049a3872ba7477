"""Property tests of ``edge.compression.codecs`` against the libraries themselves.

The streaming encoders are held to zlib's and brotli's one-shot decoding: whatever the
messages and however they are split, the stream decodes to exactly their concatenation,
and every flushed prefix decodes to exactly the messages sent so far (what keeps an SSE
stream live). The bounded decoders are held to ``gzip.decompress`` and
``brotli.decompress``: the same bytes out for any valid body in any chunking, and a
refusal wherever the library refuses. A mutation of the codecs (no flush, a dropped
piece, a missing end check) fails one of these.
"""

from __future__ import annotations

import gzip
import itertools
import zlib

import brotli
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.compression.codecs import PIECE, CorruptBody, Encoding, decoder_for

MESSAGES = st.lists(st.binary(max_size=3000) | st.text(max_size=500).map(str.encode), max_size=12)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def inflate(coding: bytes, data: bytes) -> bytes:
    if coding == b"gzip":
        return gzip.decompress(data)
    out: bytes = brotli.decompress(data)
    return out


@pytest.mark.parametrize("coding", [b"gzip", b"br"])
@given(messages=MESSAGES, level=st.integers(1, 9))
@SETTINGS
def test_a_stream_decodes_to_its_messages_and_each_flush_is_whole(
    coding: bytes, messages: list[bytes], level: int
) -> None:
    stream = Encoding(coding, level).stream()
    sent = [stream.chunk(message) for message in messages]
    sent.append(stream.finish(b""))
    assert inflate(coding, b"".join(sent)) == b"".join(messages)
    # liveness: a client decoding as bytes arrive has each message whole when it lands
    if coding == b"gzip":
        decoder = zlib.decompressobj(31)
        for message, out in zip(messages, sent, strict=False):
            assert decoder.decompress(out) == message
    else:
        partial = brotli.Decompressor()
        for message, out in zip(messages, sent, strict=False):
            assert partial.process(out) == message


@pytest.mark.parametrize("coding", [b"gzip", b"br"])
@given(data=st.binary(max_size=20_000), level=st.integers(1, 9))
@SETTINGS
def test_a_whole_reply_decodes_as_the_library_does(coding: bytes, data: bytes, level: int) -> None:
    assert inflate(coding, Encoding(coding, level).whole(data)) == data


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def decode_all(codings: tuple[bytes, ...], chunks: list[bytes]) -> bytes:
    decoder = decoder_for(codings, 1 << 30)
    out = []
    for chunk in chunks:
        for piece in decoder.feed(chunk):
            assert len(piece) <= 2 * PIECE  # bounded pieces (brotli's limit is soft)
            out.append(piece)
    decoder.end()
    return b"".join(out)


@given(
    parts=st.lists(st.binary(max_size=5000), min_size=1, max_size=3),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=8),
)
@SETTINGS
def test_gzip_bodies_decode_as_gzip_decompress_does(parts: list[bytes], cuts: list[int]) -> None:
    body = b"".join(gzip.compress(part, mtime=0) for part in parts)  # several members
    assert decode_all((b"gzip",), split(body, cuts)) == gzip.decompress(body)


@given(data=st.binary(max_size=300_000), cuts=st.lists(st.integers(0, 1 << 20), max_size=8))
@settings(max_examples=40, deadline=None)
def test_large_bodies_come_out_in_pieces(data: bytes, cuts: list[int]) -> None:
    for codings, body in (
        ((b"gzip",), gzip.compress(data)),
        ((b"br",), brotli.compress(data)),
        ((b"gzip", b"br"), brotli.compress(gzip.compress(data))),
    ):
        assert decode_all(codings, split(body, cuts)) == data


@given(
    data=st.binary(max_size=2000),
    flips=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(1, 255)), min_size=1),
    cut=st.integers(0, 1 << 16),
)
@SETTINGS
def test_damaged_gzip_is_refused_where_gzip_refuses(
    data: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    body = bytearray(gzip.compress(data, mtime=0))
    for where, xor in flips:
        body[where % len(body)] ^= xor
    damaged = bytes(body[: max(1, cut % (len(body) + 1))])
    try:
        expected: bytes | None = gzip.decompress(damaged)
    except (OSError, EOFError, zlib.error):
        expected = None
    try:
        got: bytes | None = decode_all((b"gzip",), [damaged])
    except CorruptBody:
        got = None
    if expected is not None and damaged.endswith(b"\x00") and got is None:
        return  # gzip.decompress skips trailing zero padding (tar's); a body may not
    assert got == expected


@given(
    data=st.binary(max_size=2000),
    flips=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(1, 255)), min_size=1),
    cut=st.integers(0, 1 << 16),
)
@SETTINGS
def test_damaged_brotli_is_refused_where_brotli_refuses(
    data: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    body = bytearray(brotli.compress(data))
    for where, xor in flips:
        body[where % len(body)] ^= xor
    damaged = bytes(body[: max(1, cut % (len(body) + 1))])
    try:
        expected: bytes | None = brotli.decompress(damaged)
    except brotli.error:
        expected = None
    try:
        got: bytes | None = decode_all((b"br",), [damaged])
    except CorruptBody:
        got = None
    assert got == expected


def test_an_empty_body_is_empty_and_a_started_one_must_end() -> None:
    assert decode_all((b"gzip",), []) == b""
    assert decode_all((b"br",), [b""]) == b""
    with pytest.raises(CorruptBody):
        decode_all((b"gzip",), [gzip.compress(b"x")[:5]])
