"""Compression at the transcoding adapter's edge: a ``send`` that compresses, a ``receive``
that decodes, chosen once per request.

A request that neither sends ``Accept-Encoding`` nor ``Content-Encoding`` gets no wrapper
at all: the hot path pays one pass over the headers (``Compression.wrap``). Otherwise:

* **Responses** (``CompressingSend``): decided at ``http.response.start``. Left as they
  are: a status without a body (1xx, 204, 304), a HEAD, a body already encoded, a
  ``Cache-Control: no-transform``, a media type not in ``content_types``, or a
  ``Content-Length`` below ``min_size``. A reply with a ``Content-Length`` (unary, the
  gateway's own errors) is compressed in one call and sent with the new length; one
  without (a stream) is compressed message by message, each flushed, so SSE and NDJSON
  stay live. A compressed reply gets ``Content-Encoding``, ``Vary: Accept-Encoding``
  (merged with the one CORS sets) and a weak ``ETag`` in place of a strong one: it is a
  different representation, byte for byte (RFC 9110 8.8.1), but the same content.
* **Request bodies** (``_DecodingReceive``): ``Content-Encoding: gzip``/``br`` (stacked,
  ``x-gzip``, ``identity``) decoded as the body arrives, in bounded pieces, counted
  against ``transcoding.max_body_bytes``: a bomb is refused (413) once its decoded size
  passes the limit, having inflated no more than that. ``Content-Length`` and the request
  guard's rate rules see the compressed bytes on the wire; the size limit sees the
  decoded ones. A corrupt or truncated stream is 400; an unknown coding 415, with
  ``Accept-Encoding`` naming what is accepted. Once a body is refused, the wrapper steps
  aside, so the refusal's lingering drains the raw bytes without decoding them.

Only the transcoding adapter uses this: proxied responses are the upstream's business,
gRPC-Web and Connect negotiate their own compression, WebSockets have none here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from fnmatch import fnmatchcase
from operator import itemgetter
from typing import TYPE_CHECKING

from edge.compression.codecs import (
    CODINGS,
    CorruptBody,
    Decoder,
    Encoding,
    StreamEncoder,
    decoder_for,
)
from edge.compression.config import CompressionConfig
from edge.compression.negotiate import UnknownCoding, accepted_weights, content_codings, pick
from edge.errors import BodyTooLarge, EdgeError
from edge.ingress.asgi import Message, Receive, Scope, Send

if TYPE_CHECKING:
    from edge.routes import TranscodeRoute

_ASKED = frozenset({b"accept-encoding", b"content-encoding"})
_name = itemgetter(0)
_CACHED = 1024  # distinct Accept-Encoding values remembered (least recently used go)
_CACHED_VALUE = 128  # the longest Accept-Encoding value remembered, in bytes


class UnsupportedEncoding(EdgeError):
    """A request body in a content coding the gateway does not decode (415).

    UNIMPLEMENTED, as a gRPC server answers a ``grpc-encoding`` it does not support.
    """

    grpc_code = 12
    http_status = 415


# The refusals of a body the client may still be sending: answered while it is drained.
REFUSED_BODIES = (BodyTooLarge, UnsupportedEncoding, CorruptBody)


class Compression:
    """The ``compression:`` section made ready at load; ``wrap`` is all a request costs."""

    def __init__(
        self,
        config: CompressionConfig,
        policies: Sequence[tuple[Sequence[str], bool | None]] = (),
        default: bool | None = None,
        *,
        max_body_bytes: int,
    ) -> None:
        levels = {
            b"gzip": (config.gzip_level, config.gzip_level),
            b"br": (config.brotli_quality, config.stream_brotli_quality),
        }
        self._offered = tuple(name.encode() for name in config.algorithms)
        self._stream_offered = tuple(name.encode() for name in config.stream_algorithms)
        self._encodings = {
            name: Encoding(name, *levels[name]) for name in {*self._offered, *self._stream_offered}
        }
        kinds = [kind.encode() for kind in config.content_types]
        # "text/*" is resolved here: a response costs one set lookup and one prefix check
        self.content_types = frozenset(kind for kind in kinds if not kind.endswith(b"/*"))
        self.content_prefixes = tuple(kind[:-1] for kind in kinds if kind.endswith(b"/*"))
        self.min_size = config.min_size
        self.max_body_bytes = max_body_bytes
        self._enabled = config.enabled
        self._policies = [(tuple(patterns), on) for patterns, on in policies]
        self._default = default
        self._decode = config.decode_requests
        self._max_codings = config.max_request_codings
        accepted = [*CODINGS, b"identity"] if self._decode else [b"identity"]
        self._accepted = b", ".join(accepted).decode()
        self._supported = frozenset(CODINGS)
        # route names come from the descriptors (finite, and this object is rebuilt on
        # reload): all are remembered; Accept-Encoding values come from clients: a bounded LRU
        self._routes: dict[str, bool] = {}
        self._chosen: OrderedDict[bytes, Choice | None] = OrderedDict()
        self.responses = config.enabled or any(on for _, on in self._policies) or bool(default)

    def wrap(
        self, scope: Scope, route: TranscodeRoute, send: Send, receive: Receive
    ) -> tuple[Send, Receive]:
        """``send`` and ``receive`` for this request: themselves unless it asks for more.

        The hot path: a request with neither header costs one C-level pass over the
        header names (measured: a Python loop here was 1.8% of a JSON POST's
        instructions).
        """
        if _ASKED.isdisjoint(map(_name, scope["headers"])):
            return send, receive
        accept: bytes | None = None
        encoded: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"accept-encoding":
                accept = value if accept is None else accept + b"," + value
            elif name == b"content-encoding":
                encoded = value if encoded is None else encoded + b"," + value
        if accept is not None and self.responses and scope["method"] != "HEAD":
            choice = self.negotiate(accept)
            if choice is not None and self.on_for(route.method.full_name):
                send = CompressingSend(send, choice, self)
        if encoded is not None and (route.binder.takes_body or route.method.client_streaming):
            receive = self.decoding(receive, encoded)
        return send, receive

    def negotiate(self, accept: bytes) -> Choice | None:
        """The encodings ``Accept-Encoding`` asks for, for a whole reply and for a stream
        (None: identity for both), remembered per header value."""
        chosen = self._chosen
        try:
            found = chosen[accept]
        except KeyError:
            pass
        else:
            chosen.move_to_end(accept)
            return found
        weights = accepted_weights(accept)  # parsed once, for both lists
        whole = pick(weights, self._offered)
        stream = pick(weights, self._stream_offered)
        found = (
            None
            if whole is None and stream is None
            else (
                self._encodings[whole] if whole is not None else None,
                self._encodings[stream] if stream is not None else None,
            )
        )
        # browsers send a handful of short values; a flood of long distinct ones is not
        # kept, and one of short ones pushes out the least recently used, never the lot
        if len(accept) <= _CACHED_VALUE:
            chosen[accept] = found
            if len(chosen) > _CACHED:
                chosen.popitem(last=False)
        return found

    def on_for(self, route: str) -> bool:
        """Whether ``route``'s responses are compressed: the first policy that matches it
        decides (``compression: true/false``), else ``enabled``; as CORS is resolved."""
        try:
            return self._routes[route]
        except KeyError:
            pass
        found = self._enabled if self._default is None else self._default
        for patterns, on in self._policies:
            if any(fnmatchcase(route, pattern) for pattern in patterns):
                found = self._enabled if on is None else on
                break
        self._routes[route] = found
        return found

    def decoding(self, receive: Receive, header: bytes) -> Receive:
        """``receive`` giving the body decoded, or refusing it (415) on the first read."""
        try:
            codings = content_codings(header, self._supported, self._max_codings)
        except UnknownCoding as exc:
            return _Refusing(receive, self._unsupported(str(exc)))
        if not codings:
            return receive  # identity
        if not self._decode:
            return _Refusing(receive, self._unsupported("compressed request bodies are off"))
        limit = self.max_body_bytes
        return _DecodingReceive(receive, decoder_for(codings, limit), limit)

    def _unsupported(self, message: str) -> UnsupportedEncoding:
        return UnsupportedEncoding(message, headers={"accept-encoding": self._accepted})


# the encodings a request accepts: (for a reply with a length, for a stream); None: identity
Choice = tuple[Encoding | None, Encoding | None]

# CompressingSend states
_START, _HOLD, _STREAM, _PASS = range(4)


class CompressingSend:
    """``send`` compressing a response the rules allow (see the module's docstring)."""

    __slots__ = (
        "_choice",
        "_encoding",
        "_length",
        "_rules",
        "_send",
        "_start",
        "_state",
        "_stream",
    )

    def __init__(self, send: Send, choice: Choice, rules: Compression) -> None:
        self._send = send
        self._choice = choice
        self._encoding: Encoding | None = None
        self._rules = rules
        self._state = _START
        self._start: Message | None = None
        self._length = 0
        self._stream: StreamEncoder | None = None

    async def __call__(self, message: Message) -> None:
        state = self._state
        if state == _PASS:
            await self._send(message)
        elif message["type"] == "http.response.start":
            start = self._started(message)  # not a coroutine: one frame less per answer
            if start is not None:
                await self._send(start)
        elif message["type"] != "http.response.body":
            await self._send(message)
        elif state == _HOLD:
            await self._whole(message)
        else:
            await self._chunk(message)

    def for_whole(self, length: int) -> Send:
        """The send for a reply whose body, all ``length`` bytes of it, is known before it
        starts (a unary answer): the bare send when it is under ``min_size`` or the client
        takes no encoding for whole replies, so the common small answer of a browser (which
        always sends Accept-Encoding) skips this wrapper instead of being looked at twice."""
        if length < self._rules.min_size or self._choice[0] is None:
            return self._send
        return self

    def _started(self, message: Message) -> Message | None:
        """The start to send now (None: held until the body, to know its new length)."""
        length = self._eligible(message)
        # a stream's own preference: it holds its compressor for as long as it is open
        encoding = None if length is None else self._choice[length < 0]
        if encoding is None:
            self._state = _PASS
            return message
        self._encoding = encoding
        if length is not None and length >= 0:  # known: compressed whole when the body comes
            self._state, self._start, self._length = _HOLD, message, length
            return None
        self._begin_stream(encoding)
        return self._start_message(message, None)

    def _eligible(self, message: Message) -> int | None:
        """None: send as it is; else the Content-Length, or -1 when there is none."""
        status = message["status"]
        if status < 200 or status == 204 or status == 304:
            return None
        length = -1
        media: bytes | None = None
        for name, value in message.get("headers", ()):
            lowered = name.lower()
            if lowered == b"content-type":
                media = value.partition(b";")[0].strip().lower()
            elif lowered == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return None
            elif lowered == b"content-encoding":
                return None  # already encoded: not ours to touch
            elif lowered == b"cache-control" and b"no-transform" in value.lower():
                return None  # RFC 9111 5.2.2.6
        rules = self._rules
        if media not in rules.content_types and not (
            media is not None
            and rules.content_prefixes
            and media.startswith(rules.content_prefixes)
        ):
            return None
        if 0 <= length < rules.min_size:
            return None
        return length

    def _begin_stream(self, encoding: Encoding) -> None:
        self._state = _STREAM
        self._stream = encoding.stream()

    def _start_message(self, message: Message, length: int | None) -> Message:
        assert self._encoding is not None
        headers = encoded_headers(message.get("headers", ()), self._encoding.name, length)
        return {**message, "headers": headers}

    async def _whole(self, message: Message) -> None:
        start, encoding = self._start, self._encoding
        assert start is not None and encoding is not None
        body: bytes = message.get("body", b"")
        if len(body) != self._length:  # a known length sent in parts: compress as a stream
            self._begin_stream(encoding)
            await self._send(self._start_message(start, None))
            await self._chunk(message)
            return
        compressed = encoding.whole(body)
        self._state = _PASS  # what follows (the end of a lingering refusal) is empty
        await self._send(self._start_message(start, len(compressed)))
        await self._send({**message, "body": compressed})

    async def _chunk(self, message: Message) -> None:
        stream = self._stream
        assert stream is not None
        body: bytes = message.get("body", b"")
        if message.get("more_body", False):
            if body:  # an empty message stays empty (a flush of nothing is still bytes)
                await self._send({**message, "body": stream.chunk(body)})
            else:
                await self._send(message)
            return
        self._state = _PASS
        await self._send({**message, "body": stream.finish(body)})


def encoded_headers(
    headers: Sequence[tuple[bytes, bytes]], coding: bytes, length: int | None
) -> list[tuple[bytes, bytes]]:
    """A response's headers once its body is in ``coding``: the length replaced (or
    dropped, for a stream), ``Vary: Accept-Encoding`` merged in, a strong ETag weakened."""
    out: list[tuple[bytes, bytes]] = []
    vary: list[bytes] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length":
            continue
        if lowered == b"vary":
            vary.extend(item.strip() for item in value.split(b",") if item.strip())
            continue
        if lowered == b"etag" and not value.startswith(b"W/"):
            value = b"W/" + value
        out.append((name, value))
    out.append((b"content-encoding", coding))
    if length is not None:
        out.append((b"content-length", str(length).encode()))
    if b"*" not in vary and not any(item.lower() == b"accept-encoding" for item in vary):
        vary.append(b"Accept-Encoding")
    out.append((b"vary", b", ".join(vary)))
    return out


class _DecodingReceive:
    """``receive`` giving a compressed body decoded, in pieces, held to ``limit`` bytes."""

    __slots__ = (
        "_decoder",
        "_done",
        "_last",
        "_limit",
        "_pieces",
        "_raw",
        "_raw_limit",
        "_receive",
        "_size",
    )

    def __init__(self, receive: Receive, decoder: Decoder, limit: int) -> None:
        self._receive = receive
        self._decoder = decoder
        self._limit = limit
        self._size = 0
        # the bytes on the wire are held to about the limit too: a body of empty gzip
        # members (or brotli padding) decodes to nothing, and would otherwise run for ever
        self._raw = 0
        self._raw_limit = limit + limit // 64 + 64 * 1024
        self._pieces: Iterator[bytes] | None = None
        self._last = False
        self._done = False

    async def __call__(self) -> Message:
        if self._done:  # the body has ended, or was refused: the raw events
            if self._last:  # refused at its very end: no more body to drain
                self._last = False
                return {"type": "http.request", "body": b"", "more_body": False}
            return await self._receive()
        decoder = self._decoder
        try:
            while True:
                if self._pieces is not None:
                    piece = next(self._pieces, None)
                    if piece is not None:
                        self._size += len(piece)
                        if self._size > self._limit:
                            raise BodyTooLarge(
                                f"the decompressed request body exceeds the limit of "
                                f"{self._limit} bytes"
                            )
                        return {"type": "http.request", "body": piece, "more_body": True}
                    self._pieces = None
                    if self._last:
                        self._done = True
                        decoder.end()
                        self._last = False
                        return {"type": "http.request", "body": b"", "more_body": False}
                message = await self._receive()
                if message["type"] != "http.request":
                    self._done = True
                    return message
                self._last = not message.get("more_body", False)
                raw = message.get("body", b"")
                self._raw += len(raw)
                if self._raw > self._raw_limit:
                    raise BodyTooLarge(
                        f"the compressed request body exceeds the limit of {self._limit} bytes"
                    )
                self._pieces = decoder.feed(raw)
        except EdgeError:
            self._done = True
            self._pieces = None
            raise


class _Refusing:
    """``receive`` raising ``error`` on its first call, then giving the raw events."""

    __slots__ = ("_error", "_receive")

    def __init__(self, receive: Receive, error: EdgeError) -> None:
        self._receive = receive
        self._error: EdgeError | None = error

    async def __call__(self) -> Message:
        error = self._error
        if error is not None:
            self._error = None
            raise error
        return await self._receive()


__all__ = ["REFUSED_BODIES", "Compression", "UnsupportedEncoding", "encoded_headers"]
