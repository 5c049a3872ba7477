"""edge's check of response fields against h11's own: the same heads, the same refusals."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import h11
import pytest
from h11._headers import normalize_and_validate
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.ingress import h11_fields
from edge.ingress.h11_continue import GuardedH11Protocol
from edge.ingress.h11_fields import response_fields, stripped_fields

TOKEN = b"-!#$%&'*+.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
names = st.one_of(
    st.binary(min_size=1, max_size=12).map(lambda raw: bytes(TOKEN[b % len(TOKEN)] for b in raw)),
    st.binary(max_size=12),  # anything: spaces, colons, CR, LF, NUL, high bytes
    st.sampled_from([b"content-length", b"Content-Length", b"transfer-encoding", b"x-a"]),
    st.text(max_size=6),  # str, which h11 coerces (or refuses)
)
values = st.one_of(
    st.binary(max_size=20),
    st.binary(max_size=20).map(lambda raw: bytes(0x21 + b % 0x5E for b in raw)),
    st.lists(st.sampled_from([b"a", b" ", b"\t", b"\x80", b"\xff", b"7", b","]), max_size=8).map(
        b"".join
    ),
    st.sampled_from([b"12", b"12, 12", b"chunked", b"1x", b"", b"012", b"\xd9\xa3", b"1" * 21]),
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


def test_the_values_remembered_are_short_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short values are kept (up to ``GOOD_VALUES_KEPT``, then the set starts again);
    longer ones (a request id, a date) are checked on every reply and never kept."""
    monkeypatch.setattr(h11_fields, "_GOOD_VALUES", set())
    long = b"0123456789abcdef0123456789abcdef"
    assert len(long) > h11_fields.GOOD_VALUE_BYTES
    for index in range(h11_fields.GOOD_VALUES_KEPT + 50):
        assert response_fields([(b"x-n", b"%d" % index), (b"x-id", long)]) is not None
        assert len(h11_fields._GOOD_VALUES) <= h11_fields.GOOD_VALUES_KEPT
    assert b"%d" % (h11_fields.GOOD_VALUES_KEPT + 49) in h11_fields._GOOD_VALUES
    assert long not in h11_fields._GOOD_VALUES


def test_a_value_remembered_as_good_is_never_taken_for_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The memory is of exact bytes: a good value remembered lets no near-twin through."""
    monkeypatch.setattr(h11_fields, "_GOOD_VALUES", set())
    assert response_fields([(b"x-a", b"b c")]) is not None
    for twin in (b"b c ", b" b c", b"b c\r\n", bytearray(b"b c"), "b c"):
        assert response_fields([(b"x-a", twin)]) is None  # type: ignore[list-item]


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
