"""Request heads read as h11 reads them, at a fraction of h11's cost.

h11 reads a request head with a regular expression for the request line and one per
header field; the field-value pattern steps through a value byte by byte, so a 200-byte
bearer token alone costs some 30,000 instructions. Every request through the gateway
pays this before any routing. ``read_request`` reads the common head (CRLF line ends,
no folded lines, names that are tokens, values of visible characters and inner spaces)
with bytes methods that run in C, and checks it with the same grammar h11 uses (RFC 9110
section 5 for fields, RFC 9112 section 3 for the request line). Anything else (a head
not yet complete, bare LF line ends, a folded line, a byte outside the grammar) is left
to h11's own reader on the untouched buffer, so h11 decides, raises or waits exactly as
it would have. The ``Request`` is still built by h11 (``_parsed=True``, as h11's reader
builds it), so ``Host``, ``Content-Length`` and ``Transfer-Encoding`` are judged by h11.
``tests/unit/test_h11_requests.py`` holds this to h11's reader, property-tested.
"""

from __future__ import annotations

from collections.abc import Iterator

from h11 import LocalProtocolError, Request
from h11._headers import CONTENT_LENGTH_MAX_DIGITS, normalize_and_validate
from h11._readers import maybe_read_from_IDLE_client
from h11._receivebuffer import ReceiveBuffer

from edge.http_chars import FIELD_CHAR, OWS, TOKEN, VCHAR
from edge.ingress.h11_fields import NotedHeaders

_DIGITS = b"0123456789"
# every byte a head may hold on the common path: what a field value may (which includes
# the request line's and the names' characters), and the line ends
_HEAD_CHARS = FIELD_CHAR + b"\r\n"
# names seen to be tokens, with their lowercase form: clients send the same few names
_NAMES: dict[bytes, bytes] = {}
NAMES_KEPT = 1024  # a client chooses its names: only so many are kept
# names the one pass looks at: Host (counted), Content-Length (noted) and those that
# change h11's course (``NotedHeaders.special``)
_NOTED = frozenset(
    {b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade", b"expect"}
)


def read_request(buf: ReceiveBuffer) -> Request | None:
    """h11's reader for a client in IDLE: the next request, None for more data, or an error."""
    data = buf._data
    end = data.find(b"\r\n\r\n")
    if end <= 0:
        return maybe_read_from_IDLE_client(buf)
    head = bytes(data[:end])
    lines = head.split(b"\r\n")
    # One pass in C over the whole head: every byte one a field value may hold, and every
    # CR and LF part of a line end. Values need no check of their own after this, and a
    # bare CR or LF (which no token, target, version or value may hold) goes to h11's
    # line rules.
    breaks = len(lines) - 1
    if (
        head.translate(None, _HEAD_CHARS)
        or head.count(b"\n") != breaks
        or head.count(b"\r") != breaks
    ):
        return maybe_read_from_IDLE_client(buf)
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        return maybe_read_from_IDLE_client(buf)
    method, target, version = parts
    if (
        not method
        or method.translate(None, TOKEN)
        or not target
        or target.translate(None, VCHAR)
        or len(version) != 8
        or not version.startswith(b"HTTP/")
        or version[6] != 0x2E  # "."
        or version[5] not in _DIGITS
        or version[7] not in _DIGITS
    ):
        return maybe_read_from_IDLE_client(buf)
    names = _NAMES
    noted = _NOTED
    items = []
    pairs = []
    hosts = 0
    length = None
    special = general = False
    for line in lines[1:]:
        colon = line.find(b":")
        if colon <= 0:
            return maybe_read_from_IDLE_client(buf)
        name = line[:colon]
        lower = names.get(name)
        if lower is None:  # a name not seen before: checked, then remembered
            if name.translate(None, TOKEN):
                return maybe_read_from_IDLE_client(buf)
            lower = name.lower()
            if len(names) < NAMES_KEPT:
                names[name] = lower
        value = line[colon + 1 :].strip(OWS)
        if lower in noted:
            if lower == b"host":
                hosts += 1
            elif lower == b"content-length":
                # one length of plain digits is what h11 keeps as it came; anything
                # else (a list, a repeat, a sign) is h11's normalisation to judge
                if length is not None or not value.isdigit():
                    general = True
                length = value
            elif lower == b"transfer-encoding":
                general = True  # h11 rules on the coding and its framing
            else:
                special = True
        items.append((name, lower, value))
        pairs.append((lower, value))
    buf._extract(end + 4)
    if general or (length is not None and len(length) > CONTENT_LENGTH_MAX_DIGITS):
        return _request(method, target, version[5:], [(raw, v) for raw, _, v in items])
    _check_hosts(hosts, version[5:])
    headers = _new(ListedHeaders)
    headers._full_items = items
    headers.pairs = pairs
    headers.length = length
    headers.special = special
    return _built(method, target, version[5:], headers)


class ListedHeaders(NotedHeaders):
    """h11's ``Headers`` iterated in one C-level pass, with their framing noted.

    ``Headers`` is a ``Sequence``: iterating it calls a Python ``__getitem__`` per field
    until ``IndexError``, and h11 iterates a request's fields several times (keep-alive,
    framing, ``Expect``), as does the scope. ``pairs`` are the (name, value) pairs it
    yields, made in the pass that read the fields. Same pairs, same order.
    """

    __slots__ = ("pairs",)

    pairs: list[tuple[bytes, bytes]]

    def __init__(self, full_items: list[tuple[bytes, bytes, bytes]]) -> None:
        super().__init__(full_items)
        self.pairs = [(name, value) for _, name, value in full_items]
        self.length = None
        self.special = False
        for _, name, value in full_items:
            if name == b"content-length":
                self.length = value
            elif name in _NOTED and name != b"host":
                self.special = True

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self.pairs)


_new = object.__new__
_set = object.__setattr__


def _check_hosts(hosts: int, version: bytes) -> None:
    """h11's rule on Host, with its messages."""
    if hosts == 0 and version == b"1.1":
        raise LocalProtocolError("Missing mandatory Host: header")
    if hosts > 1:
        raise LocalProtocolError("Found multiple Host: headers")


def _request(
    method: bytes, target: bytes, version: bytes, fields: list[tuple[bytes, bytes]]
) -> Request:
    """``Request(..., _parsed=True)`` as h11's reader builds it, less the checks this
    module has already made (method and target characters); the Host rule is h11's."""
    headers = ListedHeaders(normalize_and_validate(fields, _parsed=True)._full_items)
    hosts = 0
    for _, name, _ in headers._full_items:
        if name == b"host":
            hosts += 1
    _check_hosts(hosts, version)
    return _built(method, target, version, headers)


def _built(method: bytes, target: bytes, version: bytes, headers: ListedHeaders) -> Request:
    request = _new(Request)
    _set(request, "headers", headers)
    _set(request, "method", method)
    _set(request, "target", target)
    _set(request, "http_version", version)
    return request
