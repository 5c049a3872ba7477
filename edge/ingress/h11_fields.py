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
``tests/unit/test_h11_fields.py`` holds this to h11's own validation, property-tested.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?")
_GOOD_NAMES: set[bytes] = set()  # names seen valid: a reply repeats the same few
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
                good_names.add(name)
    return True
