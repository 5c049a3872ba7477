"""The lean client's metadata fields, remembered or not, against the hpack library.

``metadata_fields`` keeps the encoded literal of each short (name, value) pair it has seen;
a remembered field must be the very bytes a fresh encoding gives, and those bytes must
decode, with the ``hpack`` package, to the pairs as grpc.aio sends them.
"""

from __future__ import annotations

import base64

import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.upstream import lean_wire
from edge.upstream.lean_wire import (
    METADATA_FIELDS_KEPT,
    METADATA_VALUE_KEPT,
    NOT_KEPT_FIELDS,
    metadata_field,
    metadata_fields,
)

_TOKEN = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.",
    min_size=1,
    max_size=20,
)
_NAMES = st.one_of(_TOKEN, _TOKEN.map(lambda name: name + "-bin"), _TOKEN.map(lambda n: n + "-BIN"))
_VALUES = st.one_of(
    st.text(max_size=METADATA_VALUE_KEPT + 40),
    st.binary(max_size=METADATA_VALUE_KEPT + 40),
)
_PAIRS = st.lists(st.tuples(_NAMES, _VALUES), max_size=12)


def _as_grpc_sends(name: str, value: str | bytes) -> tuple[bytes, bytes]:
    key = name.lower()
    raw = value if isinstance(value, bytes) else value.encode()
    if key.endswith("-bin"):
        return key.encode(), base64.b64encode(raw).rstrip(b"=")
    return key.encode(), raw


@pytest.fixture(autouse=True)
def _forget() -> None:
    lean_wire._encoded_fields.clear()


@settings(max_examples=300, deadline=None)
@given(first=_PAIRS, second=_PAIRS)
def test_fields_decode_to_the_pairs_whether_remembered_or_not(
    first: list[tuple[str, str | bytes]], second: list[tuple[str, str | bytes]]
) -> None:
    for metadata in (first, second, first + second, second):  # later calls hit the memory
        fields = metadata_fields(metadata)
        assert fields == [metadata_field(name, value) for name, value in metadata]
        decoded = hpack.Decoder().decode(b"".join(fields), raw=True)
        assert decoded == [_as_grpc_sends(name, value) for name, value in metadata]


def test_a_str_and_a_bytes_value_of_the_same_text_are_not_confused() -> None:
    as_text = metadata_fields([("k", "\u00e9")])  # UTF-8: two bytes
    as_bytes = metadata_fields([("k", b"\xe9")])  # sent as it is: one byte
    assert as_text != as_bytes
    assert hpack.Decoder().decode(as_text[0], raw=True) == [(b"k", b"\xc3\xa9")]
    assert hpack.Decoder().decode(as_bytes[0], raw=True) == [(b"k", b"\xe9")]


def test_memory_is_bounded_in_pairs_and_in_value_length() -> None:
    long_value = "x" * (METADATA_VALUE_KEPT + 1)
    metadata_fields([("x-long", long_value)])
    assert ("x-long", long_value) not in lean_wire._encoded_fields  # a client's long value
    for n in range(METADATA_FIELDS_KEPT * 3):  # values that never repeat
        metadata_fields([("x-request-id", str(n))])
        assert len(lean_wire._encoded_fields) <= METADATA_FIELDS_KEPT
    kept = ("x-forwarded-for", "127.0.0.1")
    metadata_fields([kept])
    assert lean_wire._encoded_fields[kept] == metadata_field(*kept)


def test_per_call_fields_and_credentials_are_not_kept() -> None:
    kept = ("x-forwarded-for", "203.0.113.9")
    metadata_fields([kept])
    for n in range(METADATA_FIELDS_KEPT * 2):
        per_call = [(name, f"{n:016x}") for name in sorted(NOT_KEPT_FIELDS)]
        per_call.append(("authorization", "Bearer same-token-every-call"))
        fields = metadata_fields([*per_call, kept])
        assert fields == [metadata_field(*pair) for pair in [*per_call, kept]]
    assert list(lean_wire._encoded_fields) == [kept]  # never pushed out by them
