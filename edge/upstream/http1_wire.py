"""HTTP/1.1 as the proxy speaks it to an upstream: request heads out, responses in (sans-IO).

The proxy's client (``edge.upstream.http1_client``) does its I/O; everything that decides
what the bytes mean is here, so it is tested without a socket: the request head the
gateway writes, the response head it accepts (RFC 9112 section 4 and RFC 9110 section 5,
strictly: a reply edge cannot read for certain is a 502, never a guess), how the body is
framed (section 6.3, in its order of precedence), and the chunked coding (section 7.1)
read incrementally with every line bounded.

Why strict: a response is passed on to a client, so a header that could split the
client's reply, two lengths that disagree, or a length and a chunked coding together
(the shape of response smuggling, refused as RFC 9112 section 6.3 advises) must stop
here. Leniencies kept, as aiohttp's parser
and nginx keep them: bare-LF line ends and a missing reason phrase.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from edge.http_chars import FIELD_CHAR, OWS, TOKEN

MAX_HEAD_BYTES = 64 * 1024  # a response head larger than this is refused (nginx: 4-8 KiB)
MAX_FIELDS = 256
MAX_CHUNK_LINE = 4096  # a chunk-size line, extensions included
MAX_TRAILER_BYTES = 64 * 1024  # trailers are read and dropped, up to this much


_HEAD_END = re.compile(rb"\r?\n\r?\n")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [\t \x21-\x7e\x80-\xff]*)?")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")

# what a field name means to the framing; names an upstream sent before, as they were
# spelled, are remembered valid with their meaning (a reply repeats the same few names)
_OTHER, _LENGTH, _CODINGS, _CONNECTION = "other", "length", "codings", "connection"
_FRAMING = {b"content-length": _LENGTH, b"transfer-encoding": _CODINGS, b"connection": _CONNECTION}
_KNOWN_NAMES: dict[bytes, str] = {}
KNOWN_NAMES_KEPT = 1024  # names come from upstreams: only so many are remembered

# framings
LENGTH = 0  # Content-Length bytes (possibly 0)
CHUNKED = 1
UNTIL_CLOSE = 2  # the body ends when the upstream closes; the connection is not reused


class UpstreamProtocolError(Exception):
    """The upstream's bytes are not an HTTP/1.1 response edge can pass on (a 502)."""


class ResponseHead(NamedTuple):
    status: int
    headers: list[tuple[bytes, bytes]]  # names as sent (case kept), values without OWS
    framing: int
    length: int  # for LENGTH
    reusable: bool  # the connection may carry another request once this body is read


def find_head_end(buffer: bytes | bytearray, start: int = 0) -> int:
    """Where the head ends (the index after its blank line), or -1 while incomplete."""
    match = _HEAD_END.search(buffer, max(0, start - 3))
    return -1 if match is None else match.end()


def parse_response_head(head: bytes, method: str) -> ResponseHead:
    """One response head (the bytes up to and including its blank line).

    ``method`` is the request's: a reply to HEAD has no body whatever it declares.
    Raises ``UpstreamProtocolError`` for anything that is not a well-formed response.
    """
    lines = head.split(b"\n")
    del lines[-2:]  # the blank line's two empty pieces
    status_line = lines[0].removesuffix(b"\r")
    match = _STATUS_LINE.fullmatch(status_line)
    if match is None:
        raise UpstreamProtocolError(f"not an HTTP/1.x status line: {status_line[:64]!r}")
    minor, status = match.group(1), int(match.group(2))
    if not 100 <= status <= 599:  # RFC 9110 15: the classes are 1xx to 5xx
        raise UpstreamProtocolError(f"status {status} is not an HTTP status")
    if len(lines) - 1 > MAX_FIELDS:
        raise UpstreamProtocolError(f"more than {MAX_FIELDS} header fields")
    headers: list[tuple[bytes, bytes]] = []
    lengths: list[bytes] = []
    codings: list[bytes] = []
    close = minor == b"0"
    known = _KNOWN_NAMES
    for raw in lines[1:]:
        line = raw.removesuffix(b"\r")
        colon = line.find(b":")
        if colon <= 0:
            raise UpstreamProtocolError(f"malformed header line: {line[:64]!r}")
        name = line[:colon]
        kind = known.get(name)
        if kind is None:  # a name not seen before: checked, then remembered
            if name.translate(None, TOKEN):
                raise UpstreamProtocolError(f"malformed header line: {line[:64]!r}")
            kind = _FRAMING.get(name.lower(), _OTHER)
            if len(known) < KNOWN_NAMES_KEPT:
                known[name] = kind
        value = line[colon + 1 :].strip(OWS)
        if value.translate(None, FIELD_CHAR):
            raise UpstreamProtocolError(f"forbidden bytes in header {name[:64]!r}")
        headers.append((name, value))
        if kind is _OTHER:
            continue
        if kind is _LENGTH:
            lengths.append(value)
        elif kind is _CODINGS:
            codings.extend(part.strip(OWS).lower() for part in value.split(b","))
        else:  # Connection
            tokens = {part.strip(OWS).lower() for part in value.split(b",")}
            if b"close" in tokens:
                close = True
            elif minor == b"0" and b"keep-alive" in tokens:
                close = False
    length = -1
    if lengths:
        if len(lengths) != 1:  # even when equal, as nginx and aiohttp refuse them
            raise UpstreamProtocolError("more than one Content-Length")
        (text,) = lengths
        if not text.isdigit() or len(text) > 18:
            raise UpstreamProtocolError(f"bad Content-Length: {text[:32]!r}")
        if codings:  # RFC 9112 6.3: "ought to be handled as an error" (smuggling's shape)
            raise UpstreamProtocolError("both Content-Length and Transfer-Encoding")
        length = int(text)
    if status < 200 or status in (204, 304) or method == "HEAD":
        # no body (RFC 9112 6.3, rules 1 and 2), whatever the fields say
        return ResponseHead(status, headers, LENGTH, 0, not close)
    if codings:
        if minor == b"0":  # RFC 9112 6.1: chunked from HTTP/1.0 ends the connection
            close = True
        if codings[-1] != b"chunked":
            return ResponseHead(status, headers, UNTIL_CLOSE, 0, False)
        return ResponseHead(status, headers, CHUNKED, 0, not close)
    if length >= 0:
        return ResponseHead(status, headers, LENGTH, length, not close)
    return ResponseHead(status, headers, UNTIL_CLOSE, 0, False)


class ChunkedReader:
    """The chunked coding, decoded as bytes arrive.

    ``feed`` takes whatever came off the socket and returns the payload found in it;
    ``done`` turns true after the last chunk and its trailer section (dropped); ``extra``
    holds any bytes after that, which an upstream must not send.
    """

    __slots__ = ("_buffer", "_left", "_state", "_trailer", "done", "extra")

    def __init__(self) -> None:
        self._buffer = b""
        self._left = 0  # payload bytes still owed by the current chunk
        self._state = 0  # 0: size line, 1: data, 2: CRLF after data, 3: trailers
        self._trailer = 0
        self.done = False
        self.extra = b""

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        buffer = self._buffer + data if self._buffer else data
        at = 0
        end = len(buffer)
        while at < end and not self.done:
            state = self._state
            if state == 1:
                take = min(self._left, end - at)
                out.append(buffer[at : at + take])
                at += take
                self._left -= take
                if self._left == 0:
                    self._state = 2
            elif state == 2 or state == 0:
                newline = buffer.find(b"\n", at)
                if newline < 0:
                    if end - at > MAX_CHUNK_LINE:
                        raise UpstreamProtocolError("chunk-size line too long")
                    break
                line = buffer[at:newline].removesuffix(b"\r")
                at = newline + 1
                if state == 2:
                    if line:
                        raise UpstreamProtocolError("chunk data longer than its size")
                    self._state = 0
                    continue
                size = line.split(b";", 1)[0].strip(OWS)
                if _HEX.fullmatch(size) is None:
                    raise UpstreamProtocolError(f"bad chunk size: {line[:32]!r}")
                self._left = int(size, 16)
                self._state = 1 if self._left else 3
            else:  # trailers, up to an empty line
                newline = buffer.find(b"\n", at)
                if newline < 0:
                    if self._trailer + end - at > MAX_TRAILER_BYTES:
                        raise UpstreamProtocolError("trailers too large")
                    break
                line = buffer[at:newline].removesuffix(b"\r")
                self._trailer += newline + 1 - at
                at = newline + 1
                if self._trailer > MAX_TRAILER_BYTES:
                    raise UpstreamProtocolError("trailers too large")
                if not line:
                    self.done = True
        rest = buffer[at:]
        if self.done:
            self.extra, self._buffer = rest, b""
        else:
            self._buffer = rest
        return out


def request_head(
    method: str, target: bytes, host: bytes, fields: list[tuple[bytes, bytes]]
) -> bytes:
    """The request line, ``Host`` and ``fields``, ending with the blank line.

    Raises ``ValueError`` if any part would break the head (a CR, LF or NUL in it):
    the fields come from a client through a server that has already refused those, so
    this is the last fence, not the first.
    """
    parts = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
    for name, value in fields:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    head = b"".join(parts)
    lines = len(fields) + 3
    if head.count(b"\n") != lines or head.count(b"\r") != lines or b"\0" in head:
        raise ValueError("a request field holds CR, LF or NUL")
    return head
