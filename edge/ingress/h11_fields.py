"""Response header fields checked and normalised as h11 would, at a fraction of h11's cost.

h11 validates every field of every response it is given (two regular expressions and two
type coercions per field, about 8,000 instructions each), lowercases the names and rules
on ``Content-Length`` and ``Transfer-Encoding``, then builds the head. A gateway's reply
carries the same few field names every time and values it mostly made itself
(``RateLimit-*``, ``x-request-id``, the content type), so ``response_fields`` does it
here in one pass, with the grammar of RFC 9110 section 5 (a token for the name; visible
characters, obs-text, and spaces or tabs only between them, for the value), remembering
each valid name with its lowercase form and each short valid value, and builds h11's
``Headers`` itself, so h11 (given them as parsed) skips its normalisation. Anything else
(a field that is not plain bytes or does not pass, ``Transfer-Encoding``, a repeated or
listed length) goes to h11 as it was, so h11 decides and raises its own error.
``tests/unit/test_h11_fields.py`` holds this to h11's own validation and normalisation,
property-tested, and ``GuardedH11Protocol.head`` (which checks an app's fields before
Hypercorn's ``stripped_fields`` pass, and strips only those that do not pass) to
Hypercorn's way and h11's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from h11._headers import CONTENT_LENGTH_MAX_DIGITS, Headers

_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?")
# names seen valid, with their lowercase form: a reply repeats the same few
_GOOD_NAMES: dict[bytes, bytes] = {}
GOOD_NAMES_KEPT = 1024  # names can come from an upstream's reply: only so many are kept
# short values seen valid (a content type, a length, RateLimit-*'s numbers): a set probe
# costs a tenth of the regular expression; values that are new on every reply (request
# ids, dates) are longer than this, so they are checked each time rather than kept
_GOOD_VALUES: set[bytes] = set()
GOOD_VALUE_BYTES = 24
GOOD_VALUES_KEPT = 4096


def response_fields(headers: Sequence[tuple[object, object]]) -> Headers | None:
    """h11's ``Headers`` for ``headers`` as its normalisation would build them, in one
    pass, or None where h11 must judge for itself: a field that is not a pair of plain
    bytes h11 would accept, ``Transfer-Encoding``, a ``Content-Length`` that is repeated,
    listed or not plain digits."""
    good_names = _GOOD_NAMES
    good_values = _GOOD_VALUES
    items = []
    length_seen = False
    for name, value in headers:
        if type(name) is not bytes or type(value) is not bytes:
            return None
        if value not in good_values:  # a value not seen before: checked, then remembered
            if _VALUE.fullmatch(value) is None:
                return None
            if len(value) <= GOOD_VALUE_BYTES:
                if len(good_values) >= GOOD_VALUES_KEPT:
                    good_values.clear()  # numbers churn: start again with today's
                good_values.add(value)
        lower = good_names.get(name)
        if lower is None:  # a name not seen before: checked, then remembered
            if _NAME.fullmatch(name) is None:
                return None
            lower = name.lower()
            if len(good_names) < GOOD_NAMES_KEPT:
                good_names[name] = lower
        if lower == b"content-length":
            if length_seen or not value.isdigit() or len(value) > CONTENT_LENGTH_MAX_DIGITS:
                return None
            length_seen = True
        elif lower == b"transfer-encoding":
            return None
        items.append((name, lower, value))
    return Headers(items)


def stripped_fields(headers: Any) -> list[tuple[bytes, bytes]]:
    """The app's headers as Hypercorn passes them to h11: pseudo-headers refused,
    names and values stripped (h11 then validates each against the RFC's grammar)."""
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name[:1] == b":":
            raise ValueError("Pseudo headers are not valid")
        out.append((bytes(name).strip(), bytes(value).strip()))
    return out
