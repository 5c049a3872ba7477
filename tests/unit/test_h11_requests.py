"""edge's reader of request heads against h11's own: the same requests, the same refusals.

Two levels: the reader alone on one buffer (the event or error, and what is left in the
buffer), and whole connections fed the same bytes in the same pieces (every event, each
error, and the state h11 is left in), with edge's connection against a stock one.
"""

from __future__ import annotations

from typing import Any

import h11
import pytest
from h11._readers import maybe_read_from_IDLE_client
from h11._receivebuffer import ReceiveBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.ingress.h11_continue import ContinueOnRead
from edge.ingress.h11_requests import ListedHeaders, read_request

TOKEN = b"-!#$%&'*+.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.binary(min_size=1, max_size=10).map(
    lambda raw: bytes(TOKEN[b % len(TOKEN)] for b in raw)
)
odd_bytes = st.sampled_from(
    [b" ", b"\t", b"\r", b"\n", b"\r\n", b"\x00", b"\x7f", b"\x80", b"\xff", b":", b",", b""]
    + [bytes([c]) for c in b'()<>@;\\"/[]?={}']  # RFC 9110's delimiters: not in a token
)
# pieces with the bytes that decide a parse (separators, line ends, controls) made common
pieces = st.lists(st.one_of(tokens, odd_bytes, st.binary(max_size=6)), max_size=5).map(b"".join)
delimited = st.tuples(tokens, odd_bytes, tokens).map(b"".join)  # a token with a stray byte
methods = st.one_of(st.sampled_from([b"GET", b"POST", b"OPTIONS"]), tokens, pieces, delimited)
targets = st.one_of(
    st.sampled_from([b"/", b"/v1/echo?x=1", b"*", b"http://a/b", b"/%2F..//"]),
    st.binary(min_size=1, max_size=12).map(lambda raw: bytes(0x21 + b % 0x5E for b in raw)),
    pieces,
)
versions = st.one_of(
    st.sampled_from(
        [
            b"HTTP/1.1",
            b"HTTP/1.0",
            b"HTTP/2.0",
            b"HTTP/1.10",
            b"http/1.1",
            b"HTTP/a.1",
            b"HTTP/1.a",
            b"HTTP/1-1",
            b"HTTP/1.",
        ]
    ),
    pieces,
)
names = st.one_of(
    tokens,
    st.sampled_from(
        [b"Host", b"host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Expect"]
    ),
    pieces,
    delimited,
)
values = st.one_of(
    st.sampled_from(
        [b"a", b"12", b"12, 12", b"12,13", b"chunked", b"gzip, chunked", b"close", b"100-continue"]
    ),
    st.binary(max_size=16).map(lambda raw: bytes(0x21 + b % 0x5E for b in raw)),
    pieces,
)
separators = st.sampled_from([b":", b": ", b": ", b":\t", b" :", b":  ", b": \t"])
line_ends = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b" \r\n"])


def mostly(good: Any, hostile: Any) -> Any:
    """``good`` nine times in ten: most heads are then well formed but for one part, so
    both edge's own path and its hand-over to h11 are exercised."""
    return st.integers(0, 9).flatmap(lambda roll: hostile if roll == 7 else good)


@st.composite
def heads(draw: Any) -> bytes:
    """A request head, mostly well formed, with some of its parts made hostile."""
    good_method = st.one_of(st.sampled_from([b"GET", b"POST", b"OPTIONS"]), tokens)
    method = draw(mostly(good_method, methods))
    good_target = st.binary(min_size=1, max_size=12).map(
        lambda raw: bytes(0x21 + b % 0x5E for b in raw)
    )
    target = draw(mostly(st.one_of(good_target, st.just(b"/v1/echo?x=1")), targets))
    good_version = st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0"])
    request_line = method + b" " + target + b" " + draw(mostly(good_version, versions))
    request_line = draw(mostly(st.just(request_line), st.just(request_line.replace(b" ", b"  "))))
    lines = [request_line]
    if draw(mostly(st.just(True), st.booleans())):
        lines.append(b"Host" + draw(separators) + draw(mostly(tokens, values)))
    good_value = st.one_of(
        st.binary(max_size=16).map(lambda raw: bytes(0x21 + b % 0x5E for b in raw)),
        st.lists(
            st.sampled_from([b"a", b" ", b"\t", b"\x80", b"\xff", b"7", b","]), max_size=6
        ).map(b"".join),
        st.sampled_from([b"12", b"chunked", b"close", b"100-continue", b"", b"a \t b"]),
    )
    good_name = st.one_of(
        tokens,
        st.sampled_from(
            [b"Content-Length", b"Transfer-Encoding", b"Connection", b"Expect", b"Host"]
        ),
    )
    for _ in range(draw(st.integers(0, 4))):
        folded = draw(mostly(st.just(b""), st.sampled_from([b" ", b"\t"])))
        name = draw(mostly(good_name, names))
        lines.append(folded + name + draw(separators) + draw(mostly(good_value, values)))
    head = b"".join(line + draw(mostly(st.just(b"\r\n"), line_ends)) for line in lines)
    head += draw(mostly(st.just(b"\r\n"), st.sampled_from([b"\n", b"", b"\r"])))
    lead = draw(mostly(st.just(b""), st.sampled_from([b"\r\n", b"\n", b"\x16\x03", b" "])))
    return lead + head + draw(st.sampled_from([b"", b"", b"hello", b"GET / HTTP/1.1\r\n"]))


def _read(reader: Any, data: bytes) -> tuple[object, bytes]:
    buffer = ReceiveBuffer()
    buffer += data
    try:
        event = reader(buffer)
    except h11.LocalProtocolError as exc:
        return ("refused", str(exc), exc.error_status_hint), bytes(buffer)
    if event is None:
        return None, bytes(buffer)
    fields = event.headers._full_items
    return (event.method, event.target, event.http_version, fields), bytes(buffer)


@settings(max_examples=3000, deadline=None)
@given(heads())
def test_a_head_reads_as_h11_reads_it(data: bytes) -> None:
    assert _read(read_request, data) == _read(maybe_read_from_IDLE_client, data)


@settings(max_examples=2000, deadline=None)
@given(heads(), st.booleans())
def test_what_the_one_pass_notes_is_what_a_scan_finds(data: bytes, again: bool) -> None:
    """The pairs, the length and the course-changing fields noted as the head was read,
    against a scan of h11's own reading; ``again``: the names the second time from memory."""
    buffer = ReceiveBuffer()
    buffer += data
    try:
        event = read_request(buffer)
        if again:
            buffer = ReceiveBuffer()
            buffer += data
            event = read_request(buffer)
    except h11.LocalProtocolError:
        return
    if event is None:
        return
    headers = event.headers
    if not isinstance(headers, ListedHeaders):
        return  # h11's reader read it: nothing was noted
    items = headers._full_items
    assert headers.pairs == [(name, value) for _, name, value in items]
    special = any(
        name in (b"connection", b"upgrade", b"expect", b"transfer-encoding") for _, name, _ in items
    )
    assert headers.special == special
    if not special:  # the length is read only then
        lengths = [value for _, name, value in items if name == b"content-length"]
        assert headers.length == (lengths[-1] if lengths else None)


def test_a_common_head_is_not_normalised_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A head with one plain length and one Host is built in the reader's own pass."""
    import edge.ingress.h11_requests as module

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("normalised by h11")

    monkeypatch.setattr(module, "normalize_and_validate", refuse)
    buffer = ReceiveBuffer()
    buffer += b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nX-A: b\r\n\r\n"
    request = read_request(buffer)
    assert isinstance(request, h11.Request)
    assert isinstance(request.headers, ListedHeaders)
    assert request.headers.length == b"12" and not request.headers.special


def test_the_names_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import edge.ingress.h11_requests as module

    monkeypatch.setattr(module, "_NAMES", {})
    for index in range(module.NAMES_KEPT + 50):
        buffer = ReceiveBuffer()
        buffer += b"GET / HTTP/1.1\r\nHost: a\r\nX-%d: b\r\n\r\n" % index
        assert isinstance(read_request(buffer), h11.Request)
    assert len(module._NAMES) == module.NAMES_KEPT
    buffer = ReceiveBuffer()
    buffer += b"GET / HTTP/1.1\r\nHost: a\r\nX@1: b\r\n\r\n"  # never remembered as good
    with pytest.raises(h11.LocalProtocolError):
        read_request(buffer)


def _events(connection: h11.Connection, chunks: list[bytes]) -> list[object]:
    seen: list[object] = []
    for chunk in chunks:
        try:
            connection.receive_data(chunk)
        except RuntimeError as exc:  # fed after an error: h11 refuses
            seen.append(("fed after", str(exc)))
            continue
        for _ in range(8):
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as exc:
                seen.append(("refused", str(exc), exc.error_status_hint))
                break
            if event is h11.NEED_DATA or event is h11.PAUSED:
                seen.append(event)
                break
            if isinstance(event, h11.Request):
                seen.append((event.method, event.target, event.http_version, list(event.headers)))
                seen.append(event.headers.raw_items())
                seen.append(connection.they_are_waiting_for_100_continue)
            else:
                seen.append(repr(event))
            if isinstance(event, h11.EndOfMessage) and connection.our_state is h11.SEND_RESPONSE:
                connection.send(h11.Response(status_code=204, headers=[]))
                connection.send(h11.EndOfMessage())
                if connection.our_state is h11.DONE and connection.their_state is h11.DONE:
                    connection.start_next_cycle()
    seen.append((connection.our_state, connection.their_state))
    return seen


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(heads(), min_size=1, max_size=3),
    st.lists(st.integers(1, 40), max_size=6),
    st.sampled_from([b"", b"hello", b"0\r\n\r\n"]),
)
def test_a_connection_sees_what_h11_sees(
    requests: list[bytes], cuts: list[int], body: bytes
) -> None:
    stream = body.join(requests)
    chunks, at = [], 0
    for cut in cuts:
        chunks.append(stream[at : at + cut])
        at += cut
    chunks.append(stream[at:])
    ours = ContinueOnRead(h11.SERVER)
    ours.body_wanted = True
    assert _events(ours, chunks) == _events(h11.Connection(h11.SERVER), chunks)


def test_the_common_head_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the module: a plain head never reaches h11's regular expressions."""
    import edge.ingress.h11_requests as module

    def refuse(buffer: ReceiveBuffer) -> None:
        raise AssertionError("fell back to h11's reader")

    monkeypatch.setattr(module, "maybe_read_from_IDLE_client", refuse)
    connection = ContinueOnRead(h11.SERVER)
    connection.receive_data(
        b"POST /v1/echo HTTP/1.1\r\nHost: a:1\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer eyJ.x-y_z.\xc3\xa9 =\r\nContent-Length: 2\r\n\r\n{}"
    )
    request = connection.next_event()
    assert isinstance(request, h11.Request)
    assert list(request.headers)[2] == (b"authorization", b"Bearer eyJ.x-y_z.\xc3\xa9 =")
    assert (
        repr(connection.next_event())
        == "Data(data=bytearray(b'{}'), chunk_start=False, chunk_end=False)"
    )


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n y\r\n\r\n",  # folded
        b"GET / HTTP/1.1\nHost: a\n\n",  # bare LF
        b"GET / HTTP/1.1\r\nHost: a\r\nX: b\rc\r\n\r\n",  # a CR inside a value
        b"GET / HTTP/1.1\r\nHost: a\r\nX : b\r\n\r\n",  # a space before the colon
        b"GET / HTTP/1.1\r\nHost: a\r\nX@Y: b\r\n\r\n",  # a delimiter in a name
        b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: b\x00\r\n\r\n",  # a NUL
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",  # two Hosts
        b"GET / HTTP/1.1\r\n\r\n",  # no Host
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
    ],
)
def test_hostile_heads_get_h11s_answer(head: bytes) -> None:
    assert _read(read_request, head) == _read(maybe_read_from_IDLE_client, head)


def test_listed_headers_iterate_as_h11s_do() -> None:
    full = [(b"Host", b"host", b"a"), (b"X-A", b"x-a", b"1"), (b"x-a", b"x-a", b"2")]
    listed, stock = ListedHeaders(full), h11._headers.Headers(full)  # type: ignore[attr-defined]
    assert (
        list(listed) == list(stock) and listed == stock and listed.raw_items() == stock.raw_items()
    )
    assert len(listed) == 3 and listed[1] == stock[1]
    assert listed.length is None and not listed.special


@pytest.mark.parametrize(
    ("field", "length", "special"),
    [
        ((b"Content-Length", b"content-length", b"3"), b"3", False),
        ((b"Connection", b"connection", b"close"), None, True),
        ((b"Upgrade", b"upgrade", b"h2c"), None, True),
        ((b"Expect", b"expect", b"100-continue"), None, True),
        ((b"Transfer-Encoding", b"transfer-encoding", b"chunked"), None, True),
        ((b"X-Connection", b"x-connection", b"close"), None, False),
    ],
)
def test_listed_headers_made_from_items_note_their_framing(
    field: tuple[bytes, bytes, bytes], length: bytes | None, special: bool
) -> None:
    listed = ListedHeaders([(b"Host", b"host", b"a"), field])
    assert (listed.length, listed.special) == (length, special)


PARTS = {
    "method": b"P{}ST / HTTP/1.1\r\nHost: a\r\n\r\n",
    "target": b"GET /a{}b HTTP/1.1\r\nHost: a\r\n\r\n",
    "version": b"GET / HTTP/1.{}\r\nHost: a\r\n\r\n",
    "name": b"GET / HTTP/1.1\r\nHost: a\r\nX-{}a: b\r\n\r\n",
    "value start": b"GET / HTTP/1.1\r\nHost: a\r\nX-a: {}b\r\n\r\n",
    "value inside": b"GET / HTTP/1.1\r\nHost: a\r\nX-a: a{}b\r\n\r\n",
    "value end": b"GET / HTTP/1.1\r\nHost: a\r\nX-a: a{}\r\n\r\n",
    "host": b"GET / HTTP/1.1\r\nHost: a{}\r\n\r\n",
}


@pytest.mark.parametrize("part", sorted(PARTS))
def test_every_byte_in_every_part_reads_as_h11_reads_it(part: str) -> None:
    """The character classes, exhaustively: each of the 256 bytes, once and doubled."""
    template = PARTS[part]
    for byte in range(256):
        for stray in (bytes([byte]), bytes([byte, byte])):
            head = template.replace(b"{}", stray)
            assert _read(read_request, head) == _read(maybe_read_from_IDLE_client, head), head
