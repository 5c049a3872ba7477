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
from h11._headers import Headers, normalize_and_validate
from h11._readers import maybe_read_from_IDLE_client
from h11._receivebuffer import ReceiveBuffer

from edge.http_chars import FIELD_CHAR, OWS, TOKEN, VCHAR

_DIGITS = b"0123456789"


def read_request(buf: ReceiveBuffer) -> Request | None:
    """h11's reader for a client in IDLE: the next request, None for more data, or an error."""
    data = buf._data
    end = data.find(b"\r\n\r\n")
    if end <= 0:
        return maybe_read_from_IDLE_client(buf)
    # A bare CR or LF anywhere in the head fails one of the checks below (no token,
    # target, version or field value holds one), so h11's line rules decide it.
    lines = bytes(data[:end]).split(b"\r\n")
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
    headers = []
    for line in lines[1:]:
        colon = line.find(b":")
        if colon <= 0:
            return maybe_read_from_IDLE_client(buf)
        name = line[:colon]
        value = line[colon + 1 :].strip(OWS)
        if name.translate(None, TOKEN) or value.translate(None, FIELD_CHAR):
            return maybe_read_from_IDLE_client(buf)
        headers.append((name, value))
    buf._extract(end + 4)
    return _request(method, target, version[5:], headers)


class ListedHeaders(Headers):
    """h11's ``Headers`` iterated in one C-level pass.

    ``Headers`` is a ``Sequence``: iterating it calls a Python ``__getitem__`` per field
    until ``IndexError``, and h11 iterates a request's fields several times (keep-alive,
    framing, ``Expect``), as does the scope. Same pairs, same order.
    """

    __slots__ = ()

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return iter([(name, value) for _, name, value in self._full_items])


_new = object.__new__
_set = object.__setattr__


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
    if hosts == 0 and version == b"1.1":
        raise LocalProtocolError("Missing mandatory Host: header")
    if hosts > 1:
        raise LocalProtocolError("Found multiple Host: headers")
    request = _new(Request)
    _set(request, "headers", headers)
    _set(request, "method", method)
    _set(request, "target", target)
    _set(request, "http_version", version)
    return request
