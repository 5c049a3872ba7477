"""edge's check of response fields against h11's own: the same heads, the same refusals."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import h11
import pytest
from h11._headers import Headers, normalize_and_validate
from h11._writers import write_headers
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.ingress import h11_fields
from edge.ingress.h11_continue import GuardedH11Protocol
from edge.ingress.h11_fields import response_fields, stripped_fields

TOKEN = b"-!#$%&'*+.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
names = st.one_of(
    st.binary(min_size=1, max_size=12).map(lambda raw: bytes(TOKEN[b % len(TOKEN)] for b in raw)),
    st.binary(max_size=12),  # anything: spaces, colons, CR, LF, NUL, high bytes
    st.sampled_from(
        [b"content-length", b"Content-Length", b"transfer-encoding", b"x-a", b"Connection", b"host"]
    ),
    st.text(max_size=6),  # str, which h11 coerces (or refuses)
)
values = st.one_of(
    st.binary(max_size=20),
    st.binary(max_size=20).map(lambda raw: bytes(0x21 + b % 0x5E for b in raw)),
    st.lists(st.sampled_from([b"a", b" ", b"\t", b"\x80", b"\xff", b"7", b","]), max_size=8).map(
        b"".join
    ),
    st.sampled_from(
        [b"12", b"12, 12", b"chunked", b"1x", b"", b"012", b"\xd9\xa3", b"1" * 21, b"close"]
    ),
    st.text(max_size=6),
)


def _head(headers: list[tuple[object, object]], parsed: bool) -> bytes | str:
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    connection.next_event()
    try:
        response = h11.Response(status_code=200, headers=headers, _parsed=parsed)  # type: ignore[arg-type]
        return connection.send(response) or b""
    except Exception as exc:  # h11 refuses with LocalProtocolError, or fails to coerce a str
        return type(exc).__name__


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(names, values), max_size=5))
def test_a_head_is_what_h11_makes_or_refuses(headers: list[tuple[object, object]]) -> None:
    """As ``GuardedH11Protocol.head`` gives them to h11: edge's ``Headers`` as parsed, or
    the fields as they were for h11 to judge."""
    fields = response_fields(headers)
    checked = fields is not None
    assert _head(fields if checked else headers, checked) == _head(headers, False)  # type: ignore[arg-type]
    if checked:
        assert isinstance(_head(headers, False), bytes)  # what passes here, h11 passes too


def _normalised(headers: list[tuple[object, object]]) -> object:
    try:
        return normalize_and_validate(headers)._full_items  # type: ignore[arg-type]
    except Exception as exc:
        return type(exc).__name__


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(names, values), max_size=5))
def test_fields_are_normalised_as_h11_normalises_them(headers: list[tuple[object, object]]) -> None:
    fields = response_fields(headers)
    if fields is not None:  # else h11 judges them itself
        assert fields._full_items == _normalised(headers)


@pytest.mark.parametrize(
    "headers",
    [
        [(b"Content-Type", b"application/json"), (b"Content-Length", b"12")],
        [(b"content-length", b"0"), (b"x-request-id", b"a b\tc")],
        [],
    ],
)
def test_a_common_reply_is_normalised_here(headers: list[tuple[object, object]]) -> None:
    """What the gateway sends on every reply takes the cheap way (the property test above
    would pass if it never did)."""
    fields = response_fields(headers)
    assert fields is not None
    assert fields._full_items == _normalised(headers)


@pytest.mark.parametrize(
    "headers",
    [
        [(b"content-length", b"1"), (b"Content-Length", b"1")],
        [(b"content-length", b"1, 1")],
        [(b"content-length", b"\xd9\xa3")],
        [(b"content-length", b"1" * 21)],
        [(b"transfer-encoding", b"chunked")],
        [(b"x-a", b" b")],
    ],
)
def test_what_h11_must_judge_is_left_to_it(headers: list[tuple[object, object]]) -> None:
    assert response_fields(headers) is None


@pytest.mark.parametrize(
    "field",
    [
        (b"x-a", b"b\r\nx-injected: 1"),
        (b"x-a", b"b\n"),
        (b"x-a", b" b"),
        (b"x-a", b"b\t"),
        (b"x-a", b"\x00"),
        (b"x a", b"b"),
        (b"x-a:", b"b"),
        (b"", b"b"),
        ("x-a", b"b"),
        (b"x-a", "b"),
    ],
)
def test_what_could_split_a_head_is_not_passed(field: tuple[object, object]) -> None:
    assert response_fields([(b"content-type", b"text/plain"), field]) is None


def test_the_names_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h11_fields, "_GOOD_NAMES", {})
    for index in range(h11_fields.GOOD_NAMES_KEPT + 50):
        assert response_fields([(b"x-%d" % index, b"v")]) is not None
    assert len(h11_fields._GOOD_NAMES) == h11_fields.GOOD_NAMES_KEPT


def test_the_fields_remembered_are_short_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short fields are kept (up to ``GOOD_FIELDS_KEPT``, then the memory starts again);
    fields with longer values (a request id) are checked on every reply and never kept."""
    monkeypatch.setattr(h11_fields, "_GOOD_FIELDS", {})
    long = b"0123456789abcdef0123456789abcdef0"
    assert len(long) > h11_fields.GOOD_VALUE_BYTES
    for index in range(h11_fields.GOOD_FIELDS_KEPT + 50):
        assert response_fields([(b"x-n", b"%d" % index), (b"x-id", long)]) is not None
        assert len(h11_fields._GOOD_FIELDS) <= h11_fields.GOOD_FIELDS_KEPT
    assert (b"x-n", b"%d" % (h11_fields.GOOD_FIELDS_KEPT + 49)) in h11_fields._GOOD_FIELDS
    assert (b"x-id", long) not in h11_fields._GOOD_FIELDS


def test_lengths_are_remembered_apart_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply's Content-Length is noted every time, so it is never taken from the memory
    of ordinary fields; the lengths have a bounded memory of their own."""
    monkeypatch.setattr(h11_fields, "_GOOD_FIELDS", {})
    monkeypatch.setattr(h11_fields, "_GOOD_LENGTHS", {})
    for index in range(h11_fields.GOOD_FIELDS_KEPT + 50):
        fields = response_fields([(b"content-length", b"%d" % index)])
        assert fields is not None and fields.length == b"%d" % index
        assert len(h11_fields._GOOD_LENGTHS) <= h11_fields.GOOD_FIELDS_KEPT
    assert not h11_fields._GOOD_FIELDS
    # remembered, and still noted: a second length in the same head is refused
    twice = [(b"content-length", b"7"), (b"content-length", b"7")]
    assert response_fields(twice[:1]) is not None
    assert response_fields(twice) is None


@pytest.mark.parametrize("name", [b"connection", b"Connection", b"upgrade", b"expect"])
def test_fields_that_change_h11s_course_are_noted_every_time(
    monkeypatch: pytest.MonkeyPatch, name: bytes
) -> None:
    monkeypatch.setattr(h11_fields, "_GOOD_FIELDS", {})
    for _ in range(2):  # the second time as the first: never kept
        fields = response_fields([(b"content-length", b"0"), (name, b"close")])
        assert fields is not None and fields.special and fields.length == b"0"
    assert not h11_fields._GOOD_FIELDS


def test_a_field_remembered_as_good_is_never_taken_for_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The memory is of exact bytes: a good field remembered lets no near-twin through."""
    monkeypatch.setattr(h11_fields, "_GOOD_FIELDS", {})
    assert response_fields([(b"x-a", b"b c")]) is not None
    for twin in (b"b c ", b" b c", b"b c\r\n", bytearray(b"b c"), "b c"):
        assert response_fields([(b"x-a", twin)]) is None  # type: ignore[list-item]
    for name in (b"x-a ", b"x-a:", "x-a", bytearray(b"x-a")):
        assert response_fields([(name, b"b c")]) is None  # type: ignore[list-item]
    assert response_fields([[b"x-a", b"b c"]]) is None  # type: ignore[list-item]


def _written(fields: list[tuple[bytes, bytes, bytes]]) -> bytes:
    """The field lines h11's writer makes of ``fields`` (without the blank line)."""
    data: list[bytes] = []
    write_headers(Headers(fields), data.append)
    return b"".join(data)[:-2]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(names, values), max_size=5), st.booleans())
def test_what_the_one_pass_notes_is_what_h11_would_find(
    headers: list[tuple[object, object]], again: bool
) -> None:
    """``length``, ``special`` and ``wire`` against h11's own reading and writing of the
    same fields; ``again``: the second time, from the memory."""
    fields = response_fields(headers)
    if again:
        fields = response_fields(headers)
    if fields is None:
        return
    items = normalize_and_validate(headers)._full_items  # type: ignore[arg-type]
    lengths = [value for _, name, value in items if name == b"content-length"]
    assert fields.length == (lengths[0] if lengths else None)
    assert fields.special == any(
        name in (b"connection", b"upgrade", b"expect") for _, name, _ in items
    )
    assert fields.wire == _written(items)


# -- a head from the fields an app sent, checked before they are stripped --------------

OWN = [(b"date", b"Fri, 04 Dec 2026 20:00:00 GMT"), (b"server", b"hypercorn-h11")]
padded = st.one_of(
    values,
    st.tuples(st.sampled_from([b"", b" ", b"\t", b"\r\n", b"\x0b"]), values).map(
        lambda pair: pair[0] + pair[1] + pair[0] if isinstance(pair[1], bytes) else pair[1]
    ),
)
app_names = st.one_of(
    names, st.sampled_from([b":status", b" x-a", b"x-a ", bytearray(b"x-a"), memoryview(b"x-b")])
)


class _Protocol:
    """What ``GuardedH11Protocol.head`` reads of its protocol, with a real h11 connection."""

    head = GuardedH11Protocol.head
    h11_bytes = GuardedH11Protocol.h11_bytes

    def __init__(self) -> None:
        self.connection = h11.Connection(h11.SERVER)
        self.connection.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        self.connection.next_event()
        self.keep_alive_requests = 1
        self.config = SimpleNamespace(
            response_headers=lambda protocol: list(OWN), keep_alive_max_requests=100
        )


def _outcome(make: Any) -> bytes | str:
    """What ``make`` returns (a head, or the name of the error ``_head`` caught), or the
    name of the error it raised."""
    try:
        made = make()
    except Exception as exc:
        return type(exc).__name__
    assert isinstance(made, (bytes, str))
    return made


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(app_names, padded), max_size=5))
def test_a_head_from_an_apps_fields_is_what_hypercorn_and_h11_make(
    headers: list[tuple[Any, Any]],
) -> None:
    """Checked as sent, stripped only when they do not pass: the same head, or the same
    refusal, as Hypercorn's way (strip every field, refuse pseudo-headers, let h11 judge)."""

    def hypercorns_way() -> bytes | str:
        return _head([*stripped_fields(headers), *OWN], False)

    expected = _outcome(hypercorns_way)
    assert _outcome(lambda: _Protocol().head(200, list(headers), as_sent=True)) == expected
