"""The proxy's HTTP/1.1 wire rules, without a socket: heads out, responses and chunks in."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.upstream.http1_wire import (
    CHUNKED,
    LENGTH,
    MAX_CHUNK_LINE,
    MAX_TRAILER_BYTES,
    UNTIL_CLOSE,
    ChunkedReader,
    UpstreamProtocolError,
    find_head_end,
    parse_response_head,
    request_head,
)


def head(*lines: bytes) -> bytes:
    return b"\r\n".join(lines) + b"\r\n\r\n"


def test_a_plain_response_keeps_its_fields_as_sent() -> None:
    parsed = parse_response_head(
        head(b"HTTP/1.1 200 OK", b"Content-Type:  text/plain ", b"X-A:b", b"Content-Length: 5"),
        "GET",
    )
    assert parsed.status == 200
    assert parsed.headers == [
        (b"Content-Type", b"text/plain"),
        (b"X-A", b"b"),
        (b"Content-Length", b"5"),
    ]
    assert (parsed.framing, parsed.length, parsed.reusable) == (LENGTH, 5, True)


@pytest.mark.parametrize(
    ("lines", "method", "framing", "length", "reusable"),
    [
        ([b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked"], "GET", CHUNKED, 0, True),
        ([b"HTTP/1.1 200 OK", b"Transfer-Encoding: gzip, chunked"], "GET", CHUNKED, 0, True),
        ([b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked, gzip"], "GET", UNTIL_CLOSE, 0, False),
        ([b"HTTP/1.1 200 OK"], "GET", UNTIL_CLOSE, 0, False),
        ([b"HTTP/1.1 204 No Content", b"Content-Length: 7"], "GET", LENGTH, 0, True),
        ([b"HTTP/1.1 304 Not Modified", b"Transfer-Encoding: chunked"], "GET", LENGTH, 0, True),
        ([b"HTTP/1.1 200 OK", b"Content-Length: 7"], "HEAD", LENGTH, 0, True),
        ([b"HTTP/1.1 200 OK", b"Content-Length: 7", b"Connection: close"], "GET", LENGTH, 7, False),
        ([b"HTTP/1.0 200 OK", b"Content-Length: 7"], "GET", LENGTH, 7, False),
        (
            [b"HTTP/1.0 200 OK", b"Transfer-Encoding: chunked", b"Connection: keep-alive"],
            "GET",
            CHUNKED,
            0,
            False,
        ),
        (
            [b"HTTP/1.0 200", b"Content-Length: 7", b"Connection: Keep-Alive"],
            "GET",
            LENGTH,
            7,
            True,
        ),
    ],
)
def test_the_body_is_framed_by_rfc_9112s_order(
    lines: list[bytes], method: str, framing: int, length: int, reusable: bool
) -> None:
    parsed = parse_response_head(head(*lines), method)
    assert (parsed.framing, parsed.length, parsed.reusable) == (framing, length, reusable)


@pytest.mark.parametrize(
    "lines",
    [
        [b"HTTP/1.1 200 OK", b"Content-Length: 7", b"Content-Length: 8"],
        [b"HTTP/1.1 200 OK", b"Content-Length: 7", b"Transfer-Encoding: chunked"],  # smuggling
        [b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked", b"Content-Length: 7"],
        [b"HTTP/1.1 200 OK", b"Content-Length: 7, 8"],
        [b"HTTP/1.1 200 OK", b"Content-Length: 7, 7"],
        [b"HTTP/1.1 200 OK", b"Content-Length: 7", b"content-length: 7"],
        [b"HTTP/1.1 200 OK", b"Content-Length: -1"],
        [b"HTTP/1.1 200 OK", b"Content-Length: +7"],
        [b"HTTP/1.1 200 OK", b"Content-Length: 0x7"],
        [b"HTTP/1.1 200 OK", b"Content-Length: 99999999999999999999"],
        [b"HTTP/1.1 200 OK", b"X-A: b\rc"],  # a bare CR could split the client's reply
        [b"HTTP/1.1 200 OK", b"X-A: b\x00"],
        [b"HTTP/1.1 200 OK", b"X-A b"],
        [b"HTTP/1.1 200 OK", b"X A: b"],
        [b"HTTP/1.1 200 OK", b": b"],
        [b"HTTP/1.1 200 OK", b"X-A : b"],
        [b"HTTP/1.1 200 OK", b" folded: line"],
        [b"HTTP/2 200"],
        [b"HTTP/1.1 20 OK"],
        [b"HTTP/1.1 2000 OK"],
        [b"HTTP/1.1 099 Low"],
        [b"HTTP/1.1 600 High"],
        [b"http/1.1 200 OK"],
        [b"SSH-2.0-OpenSSH_9.2"],
        [b"HTTP/1.1 200 OK\x01"],
    ],
)
def test_a_response_edge_cannot_read_for_certain_is_refused(lines: list[bytes]) -> None:
    with pytest.raises(UpstreamProtocolError):
        parse_response_head(head(*lines), "GET")


def test_too_many_fields_are_refused() -> None:
    with pytest.raises(UpstreamProtocolError, match="header fields"):
        parse_response_head(head(b"HTTP/1.1 200 OK", *[b"X: y"] * 257), "GET")


def test_bare_lf_line_ends_are_read_as_aiohttp_and_nginx_read_them() -> None:
    data = b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi"
    end = find_head_end(data)
    assert data[end:] == b"hi"
    assert parse_response_head(data[:end], "GET").length == 2


@given(st.lists(st.sampled_from([b"\r", b"\n", b"a", b"\r\n"]), max_size=12).map(b"".join))
def test_the_head_end_is_found_wherever_the_search_resumes(data: bytes) -> None:
    """The client searches again from where the last bytes ended: same answer as a whole search."""
    for seen in range(len(data) + 1):
        if find_head_end(data[:seen]) < 0:
            assert find_head_end(data, seen) == find_head_end(data)


def chunk(payload: bytes, extension: bytes = b"") -> bytes:
    return b"%x%s\r\n%s\r\n" % (len(payload), extension, payload)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=40), max_size=6),
    st.lists(st.integers(1, 30), max_size=20),
    st.sampled_from([b"", b";ext=1", b' ; q="x"']),
    st.sampled_from([b"", b"Trailer-A: 1\r\n", b"A: 1\r\nB: 2\r\n"]),
)
def test_chunks_decode_the_same_however_the_bytes_are_cut(
    payloads: list[bytes], cuts: list[int], extension: bytes, trailers: bytes
) -> None:
    encoded = b"".join(chunk(p, extension) for p in payloads) + b"0\r\n" + trailers + b"\r\n"
    reader, out, at = ChunkedReader(), [], 0
    for cut in [*cuts, len(encoded)]:
        assert not reader.done
        out += reader.feed(encoded[at : at + cut])
        at += cut
        if at >= len(encoded):
            break
    out += reader.feed(encoded[at:]) if at < len(encoded) else []
    assert reader.done and reader.extra == b""
    assert b"".join(out) == b"".join(payloads)


def test_bytes_after_the_last_chunk_are_kept_apart() -> None:
    reader = ChunkedReader()
    assert reader.feed(chunk(b"abc") + b"0\r\n\r\nHTTP/1.1 200 OK") == [b"abc"]
    assert reader.done and reader.extra == b"HTTP/1.1 200 OK"


@pytest.mark.parametrize(
    "encoded",
    [
        b"z\r\nabc\r\n",
        b"-1\r\n",
        b"1234567890abcdef0\r\n",  # a size no body has: refused before int() sees it
        b"3\r\nabcd\r\n",  # data longer than its size
        b"\r\n",
    ],
)
def test_a_broken_chunk_is_refused(encoded: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        ChunkedReader().feed(encoded)


def test_chunk_lines_and_trailers_are_bounded() -> None:
    with pytest.raises(UpstreamProtocolError, match="too long"):
        ChunkedReader().feed(b"1;" + b"x" * MAX_CHUNK_LINE)
    reader = ChunkedReader()
    reader.feed(b"0\r\n")
    with pytest.raises(UpstreamProtocolError, match="trailers"):
        for _ in range(MAX_TRAILER_BYTES // 100 + 2):
            reader.feed(b"X: " + b"y" * 95 + b"\r\n")


def test_a_request_head_is_what_the_upstream_reads() -> None:
    assert request_head("GET", b"/a?b=1", b"up:81", [(b"x-a", b"1"), (b"x-b", b"\xe9")]) == (
        b"GET /a?b=1 HTTP/1.1\r\nhost: up:81\r\nx-a: 1\r\nx-b: \xe9\r\n\r\n"
    )


@pytest.mark.parametrize("value", [b"a\r\nx-injected: 1", b"a\nb", b"a\rb", b"a\x00b"])
def test_a_field_that_could_split_the_request_is_refused(value: bytes) -> None:
    with pytest.raises(ValueError):
        request_head("GET", b"/", b"up", [(b"x-a", value)])
    with pytest.raises(ValueError):
        request_head("GET", b"/" + value, b"up", [])


def test_remembered_names_are_bounded_and_skip_no_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.upstream import http1_wire

    monkeypatch.setattr(http1_wire, "_KNOWN_NAMES", {})
    parse_response_head(head(b"HTTP/1.1 200 OK", b"Content-Type: a", b"Content-Length: 0"), "GET")
    # a line without its colon whose start is a remembered name is still no field
    with pytest.raises(UpstreamProtocolError):
        parse_response_head(head(b"HTTP/1.1 200 OK", b"Content-Typex"), "GET")
    with pytest.raises(UpstreamProtocolError):  # a remembered name, a value still checked
        parse_response_head(head(b"HTTP/1.1 200 OK", b"Content-Type: a\x00"), "GET")
    remembered = parse_response_head(head(b"HTTP/1.1 200 OK", b"content-length: 3"), "GET")
    assert remembered.length == 3  # the framing meaning is remembered with the spelling
    for index in range(http1_wire.KNOWN_NAMES_KEPT + 50):
        parse_response_head(head(b"HTTP/1.1 200 OK", b"X-%d: v" % index), "GET")
    assert len(http1_wire._KNOWN_NAMES) == http1_wire.KNOWN_NAMES_KEPT
