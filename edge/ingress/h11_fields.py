"""Response header fields checked and normalised as h11 would, at a fraction of h11's cost.

h11 validates every field of every response it is given (two regular expressions and two
type coercions per field, about 8,000 instructions each), lowercases the names and rules
on ``Content-Length`` and ``Transfer-Encoding``; then it scans the fields twice more for
its framing and formats each into the head. A gateway's reply carries the same few fields
every time, with values it mostly made itself (``RateLimit-*``, the content type, its
length), so ``response_fields`` does it here in one pass, with the grammar of RFC 9110
section 5 (a token for the name; visible characters, obs-text, and spaces or tabs only
between them, for the value). It remembers each valid short field with h11's triple and
the line h11 writes for it, and builds h11's ``Headers`` itself (``FramedHeaders``, which
also carry the framing it saw and the head's field lines), so h11, given them as parsed,
skips its normalisation, and ``edge.ingress.h11_states`` its scans and its formatting.
Anything else (a field that is not plain bytes or does not pass, ``Transfer-Encoding``,
``Host``, a repeated or listed length) goes to h11 as it was, so h11 decides and raises
its own error. ``tests/unit/test_h11_fields.py`` holds this to h11's own validation,
normalisation and writer, property-tested, and ``GuardedH11Protocol.head`` (which checks
an app's fields before Hypercorn's ``stripped_fields`` pass, and strips only those that do
not pass) to Hypercorn's way and h11's.
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
# whole fields seen valid, with what a head makes of them (h11's triple and the line it
# writes): a reply repeats its content type, its length and RateLimit-*'s figures, and a
# dict probe costs a tenth of the regular expression. Only short values are kept: values
# that are new on every reply (request ids) are longer than this, so they are checked each
# time rather than kept. Framing fields are never kept (each is looked at every time).
_Known = tuple[tuple[bytes, bytes, bytes], bytes]  # h11's (raw name, name, value), the line
_GOOD_FIELDS: dict[tuple[object, object], _Known] = {}
GOOD_VALUE_BYTES = 32  # a Date (29 bytes) is kept: it changes once a second
GOOD_FIELDS_KEPT = 4096
# Content-Length fields seen valid, apart: a reply's length is looked at every time
_GOOD_LENGTHS: dict[tuple[object, object], _Known] = {}
# names that make h11 do more than frame a reply by its length (``Connection: close``,
# ``Upgrade``, ``Expect``): passed, but the head is marked for h11's own bookkeeping
_COURSE = frozenset({b"connection", b"upgrade", b"expect"})


class NotedHeaders(Headers):
    """h11's ``Headers`` with the framing that the one pass which built them noted.

    ``length`` (the Content-Length value, or None) and ``special`` (a field that changes
    h11's course: ``Connection``, ``Upgrade``, ``Expect``, ``Transfer-Encoding``) are what
    ``edge.ingress.h11_states`` would otherwise scan the fields for (twice a reply); the
    length is only to be read when ``special`` is false.
    """

    __slots__ = ("length", "special")

    length: bytes | None
    special: bool


class FramedHeaders(NotedHeaders):
    """A reply's ``NotedHeaders``, with its field lines as h11's writer writes them (each
    ``name: value`` line in order; the blank line after them is the writer's)."""

    __slots__ = ("wire",)

    wire: bytes


_new = object.__new__


def response_fields(headers: Sequence[tuple[object, object]]) -> FramedHeaders | None:
    """h11's ``Headers`` for ``headers`` as its normalisation would build them, in one
    pass, or None where h11 must judge for itself: a field that is not a pair of plain
    bytes h11 would accept, ``Transfer-Encoding``, a ``Content-Length`` that is repeated,
    listed or not plain digits."""
    good_fields = _GOOD_FIELDS
    items = []
    lines = []
    length = None
    special = False
    try:
        for field in headers:
            known = good_fields.get(field)
            if known is None:  # not seen before, or a framing field: checked in full
                known = _GOOD_LENGTHS.get(field) or _checked(field)
                if known is None:
                    return None
                lower = known[0][1]
                if lower == b"content-length":
                    if length is not None:
                        return None
                    length = known[0][2]
                elif lower in _COURSE:
                    special = True
            items.append(known[0])
            lines.append(known[1])
    except TypeError:  # an unhashable field (a list, a bytearray): h11 judges it
        return None
    fields = _new(FramedHeaders)
    fields._full_items = items
    fields.length = length
    fields.special = special
    fields.wire = b"".join(lines)
    return fields


def _checked(field: tuple[object, object]) -> _Known | None:
    """One field as h11 would normalise it, with its line; kept if short and not framing."""
    name, value = field
    if type(name) is not bytes or type(value) is not bytes or _VALUE.fullmatch(value) is None:
        return None
    lower = _GOOD_NAMES.get(name)
    if lower is None:  # a name not seen before: checked, then remembered
        if _NAME.fullmatch(name) is None:
            return None
        lower = name.lower()
        if len(_GOOD_NAMES) < GOOD_NAMES_KEPT:
            _GOOD_NAMES[name] = lower
    if lower == b"content-length":
        if not value.isdigit() or len(value) > CONTENT_LENGTH_MAX_DIGITS:
            return None
    elif lower == b"transfer-encoding" or lower == b"host":
        return None  # h11 rules on the coding, and writes a Host first
    known = ((name, lower, value), b"%s: %s\r\n" % (name, value))
    if len(value) <= GOOD_VALUE_BYTES and lower not in _COURSE:
        kept = _GOOD_LENGTHS if lower == b"content-length" else _GOOD_FIELDS
        if len(kept) >= GOOD_FIELDS_KEPT:
            kept.clear()  # figures churn: start again with today's
        kept[(name, value)] = known
    return known


def stripped_fields(headers: Any) -> list[tuple[bytes, bytes]]:
    """The app's headers as Hypercorn passes them to h11: pseudo-headers refused,
    names and values stripped (h11 then validates each against the RFC's grammar)."""
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name[:1] == b":":
            raise ValueError("Pseudo headers are not valid")
        out.append((bytes(name).strip(), bytes(value).strip()))
    return out
