"""Response header fields checked as h11 checks them, at a fraction of h11's cost.

h11 validates every field of every response it is given (two regular expressions and two
type coercions per field, about 8,000 instructions each), then builds the head. A
gateway's reply carries the same few field names every time and values it mostly made
itself (``RateLimit-*``, ``x-request-id``, the content type), so edge checks the fields
here, with the grammar of RFC 9110 section 5 (a token for the name; visible characters,
obs-text, and spaces or tabs only between them, for the value), and hands h11 the fields
as already parsed (``_parsed=True``), which skips only those checks: h11 still lowercases
the names and rules on ``Content-Length`` and ``Transfer-Encoding``. Anything that is not
plain bytes or does not pass goes to h11 unchecked here, so h11 raises its own error.
``response_fields`` goes one step further for the common reply: it also lowercases the
names (remembered with them) and rules on a plain ``Content-Length`` as h11 does, and
builds h11's ``Headers`` itself, so h11 skips its whole normalisation; anything else
(``Transfer-Encoding``, a repeated or comma-listed length) is left to h11.
``tests/unit/test_h11_fields.py`` holds both to h11's own validation, property-tested.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import cast

from h11._headers import CONTENT_LENGTH_MAX_DIGITS, Headers

_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?")
# names seen valid, with their lowercase form: a reply repeats the same few
_GOOD_NAMES: dict[bytes, bytes] = {}
GOOD_NAMES_KEPT = 1024  # names can come from an upstream's reply: only so many are kept


def plain_valid_fields(headers: Sequence[tuple[object, object]]) -> bool:
    """Whether every field is a pair of bytes that h11 would accept as it is."""
    good_names = _GOOD_NAMES
    value_ok = _VALUE.fullmatch
    for name, value in headers:
        if type(name) is not bytes or type(value) is not bytes or value_ok(value) is None:
            return False
        if name not in good_names:
            if _NAME.fullmatch(name) is None:
                return False
            if len(good_names) < GOOD_NAMES_KEPT:
                good_names[name] = name.lower()
    return True


def response_fields(headers: Sequence[tuple[object, object]]) -> Headers | None:
    """h11's ``Headers`` for ``headers`` as its normalisation would build them, or None
    where h11 must judge for itself (a field that is not plain, ``Transfer-Encoding``, a
    ``Content-Length`` that is repeated, listed or not plain digits)."""
    if not plain_valid_fields(headers):
        return None
    good_names = _GOOD_NAMES
    items = []
    length_seen = False
    for name, value in cast(Sequence[tuple[bytes, bytes]], headers):  # plain, as checked
        lower = good_names.get(name) or name.lower()
        if lower == b"content-length":
            if length_seen or not value.isdigit() or len(value) > CONTENT_LENGTH_MAX_DIGITS:
                return None
            length_seen = True
        elif lower == b"transfer-encoding":
            return None
        items.append((name, lower, value))
    return Headers(items)
