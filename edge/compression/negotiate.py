"""Which coding a response gets, and which codings a request body carries (pure).

``Accept-Encoding`` (RFC 9110 12.5.3) is a list of codings with optional weights,
``gzip;q=0.8, br, *;q=0``. The coding chosen is the offered one with the highest weight
above zero; equal weights go to the server's order of preference (the config's
``algorithms``); ``*`` weighs every offered coding the header does not name; ``x-gzip`` is
``gzip`` (RFC 9110 8.4.1.3). ``identity`` is a candidate too when the header weighs it,
by name or through ``*``: ``gzip;q=0.5, identity`` is answered unencoded, since the client
prefers that; a coding weighing as much as identity still wins (compressing is why the
client listed it). Envoy's compressor filter also answers in identity when identity weighs
most (a tie goes to the header's first there, to the coding here); it reads ``*`` as "any
of my compressors" rather than as identity too, which only differs for a coding weighed
below ``*``. Identity not named and no ``*``: it is the fallback only. Nothing acceptable
means identity, *even when the header refuses identity* (``identity;q=0`` or ``*;q=0``):
the RFC allows a 406 there but does not require it, and nginx and Envoy both send the
unencoded body, which a client that refused it can still read better than it can read an
error.

Hostile headers cost bounded work: past ``MAX_HEADER`` bytes the rest is ignored, at most
``MAX_ITEMS`` items are split off and read, and an item whose weight is not RFC 9110's
``qvalue`` (``q=2``, ``q=abc``, ``q=0.1234``) is ignored, as if the client had not named it.
The weights are parsed once per header value (``accepted_weights``) and ``pick`` chooses
from them for each list of codings offered.

``Content-Encoding`` on a request lists the codings in the order they were applied;
``content_codings`` returns them in that order without ``identity``, so the body is
decoded from the last to the first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MAX_HEADER = 4096  # bytes of Accept-Encoding read; real browsers send under 40
MAX_ITEMS = 32
# RFC 9110 12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE = re.compile(rb"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
_ALIASES = {b"x-gzip": b"gzip"}


def accepted_weights(header: bytes) -> dict[bytes, float]:
    """Coding (lower case, aliases resolved) -> weight, from an ``Accept-Encoding`` value.

    Items with a malformed weight are left out; a coding named twice keeps its first
    weight (RFC 9110 does not say; the first is what nginx reads).
    """
    weights: dict[bytes, float] = {}
    # split no further than the items read: the rest stays one piece, never looked at
    for item in header[:MAX_HEADER].split(b",", MAX_ITEMS)[:MAX_ITEMS]:
        name, _, params = item.partition(b";")
        coding = name.strip().lower()
        if not coding:
            continue
        coding = _ALIASES.get(coding, coding)
        weight = 1.0
        for param in params.split(b";"):
            key, eq, value = param.partition(b"=")
            if not eq:
                if param.strip():
                    weight = -1.0  # a parameter that is not key=value: not understood
                continue
            if key.strip().lower() == b"q":
                value = value.strip()
                weight = float(value) if _QVALUE.fullmatch(value) else -1.0
        if weight >= 0 and coding not in weights:
            weights[coding] = weight
    return weights


def choose_coding(header: bytes, offered: Sequence[bytes]) -> bytes | None:
    """The coding to answer in (one of ``offered``, in preference order), or None: identity."""
    return pick(accepted_weights(header), offered)


def pick(weights: dict[bytes, float], offered: Sequence[bytes]) -> bytes | None:
    """The coding to answer in from ``accepted_weights``' result, or None: identity (also
    when the client weighs identity, named or through ``*``, above every offered coding)."""
    star = weights.get(b"*")
    best: bytes | None = None
    best_weight = 0.0
    for coding in offered:
        weight = weights.get(coding, star)
        if weight is not None and weight > best_weight:
            best, best_weight = coding, weight
    identity = weights.get(b"identity", star)
    if best is not None and identity is not None and identity > best_weight:
        return None
    return best


class UnknownCoding(ValueError):
    """A request names a content coding the gateway cannot decode (415)."""


def content_codings(header: bytes, supported: frozenset[bytes], limit: int) -> tuple[bytes, ...]:
    """The codings of a request body as applied, first to last, ``identity`` left out.

    UnknownCoding for a coding not in ``supported``, or for more than ``limit`` of them
    (a legitimate client applies one; a stack of many is only good for burning CPU).
    """
    codings: list[bytes] = []
    for item in header.split(b","):
        coding = item.strip().lower()
        if not coding or coding == b"identity":
            continue
        coding = _ALIASES.get(coding, coding)
        if coding not in supported:
            raise UnknownCoding(f"content coding {_shown(coding)} is not supported")
        codings.append(coding)
        if len(codings) > limit:
            raise UnknownCoding(f"more than {limit} content codings")
    return tuple(codings)


def _shown(coding: bytes) -> str:
    """A client's coding name as an error message may show it: printable, cut short."""
    text = coding[:32].decode("ascii", "replace")
    return repr("".join(c if c.isprintable() else "?" for c in text))
