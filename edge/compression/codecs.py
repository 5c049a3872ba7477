"""gzip and br: a reply compressed whole or message by message, a request body decoded in
bounded pieces (pure).

**Encoding.** A unary reply is compressed in one call. A stream gets one compressor for
its life, and each message is compressed and *flushed* (zlib's ``Z_SYNC_FLUSH``,
brotli's ``flush``): the bytes sent for a message decode to that whole message at once,
so an SSE or NDJSON stream is as live compressed as it is plain; the stream's end writes
the coding's trailer. A stream's compressor keeps a smaller window than a unary reply's
(``STREAM_WINDOW_BITS``): it lives as long as the stream, and at zlib's defaults 10,000
open streams would hold 2.5 GB; messages of a stream repeat their field names, which a
small window still finds. brotli's hash tables do not shrink with its window: what a
brotli stream holds depends on its quality (~525 KiB at 4, ~273 KiB at 5, ~16 KiB at 1,
against gzip's ~43 KiB), so a stream has its own quality (``Encoding``'s
``stream_level``).

**Decoding.** A request body is fed in as it arrives and comes out in pieces of about
``PIECE`` bytes (zlib's ``max_length``, brotli's ``output_buffer_limit``): the caller
counts them and stops at its limit, so a 10 KB bomb that would inflate to gigabytes costs
one limit's worth of output, never more. A gzip body may hold several members (RFC
1952), decoded one after the other; bytes after a brotli stream's end, a truncated
stream or one that is not the coding at all are ``CorruptBody``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Protocol

import brotli

from edge.errors import BadRequest, BodyTooLarge

GZIP = b"gzip"
BR = b"br"
CODINGS = (BR, GZIP)  # every coding this module speaks, the default preference first

PIECE = 64 * 1024  # decoded bytes per piece (brotli may give up to ~1.5x: a soft limit)
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip wrapper, 32 KiB window
STREAM_WINDOW_BITS = 13  # 8 KiB: a stream's gzip window (memory: 2^(w+2) + 2^(m+9) bytes)
_STREAM_MEM_LEVEL = 6
STREAM_BROTLI_LGWIN = 16  # 64 KiB: a stream's brotli window (unary replies: 4 MiB)


class CorruptBody(BadRequest):
    """A request body that is not valid in its declared coding (400)."""


class StreamEncoder(Protocol):
    """One stream's compressor: every call returns bytes that decode to all input so far."""

    def chunk(self, data: bytes) -> bytes:
        """``data`` compressed and flushed."""

    def finish(self, data: bytes) -> bytes:
        """``data`` compressed, then the coding's end; the encoder is spent."""


class _GzipStream:
    __slots__ = ("_zlib",)

    def __init__(self, level: int) -> None:
        self._zlib = zlib.compressobj(
            level, zlib.DEFLATED, 16 + STREAM_WINDOW_BITS, _STREAM_MEM_LEVEL
        )

    def chunk(self, data: bytes) -> bytes:
        return self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)

    def finish(self, data: bytes) -> bytes:
        return self._zlib.compress(data) + self._zlib.flush(zlib.Z_FINISH)


class _BrotliStream:
    __slots__ = ("_brotli",)

    def __init__(self, quality: int) -> None:
        self._brotli = brotli.Compressor(
            mode=brotli.MODE_TEXT, quality=quality, lgwin=STREAM_BROTLI_LGWIN
        )

    def chunk(self, data: bytes) -> bytes:
        out: bytes = self._brotli.process(data) + self._brotli.flush()
        return out

    def finish(self, data: bytes) -> bytes:
        out: bytes = self._brotli.process(data) + self._brotli.finish()
        return out


class Encoding:
    """One coding with its levels, chosen at load: compresses whole replies at ``level``,
    opens streams at ``stream_level`` (``level`` unless given)."""

    __slots__ = ("level", "name", "stream_level")

    def __init__(self, name: bytes, level: int, stream_level: int | None = None) -> None:
        if name not in CODINGS:
            raise ValueError(f"unknown coding {name!r}")
        self.name = name
        self.level = level
        self.stream_level = level if stream_level is None else stream_level

    def whole(self, data: bytes) -> bytes:
        """A unary reply, compressed in one call."""
        if self.name == GZIP:
            compressor = zlib.compressobj(self.level, zlib.DEFLATED, _GZIP_WBITS)
            return compressor.compress(data) + compressor.flush()
        out: bytes = brotli.compress(data, mode=brotli.MODE_TEXT, quality=self.level)
        return out

    def stream(self) -> StreamEncoder:
        level = self.stream_level
        return _GzipStream(level) if self.name == GZIP else _BrotliStream(level)


class Decoder(Protocol):
    """One coding's decoder for one body: bounded pieces out, then a check of its end."""

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decoded pieces of ``data`` (each about ``PIECE`` bytes at most), lazily:
        the caller stops pulling, and nothing more is inflated."""

    def end(self) -> None:
        """CorruptBody unless the input so far was one complete stream."""


class _GzipDecoder:
    __slots__ = ("_seen", "_zlib")

    def __init__(self) -> None:
        self._zlib = zlib.decompressobj(_GZIP_WBITS)
        self._seen = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        if data:
            self._seen = True
        try:
            while data:
                decoder = self._zlib
                out = decoder.decompress(data, PIECE)
                if out:
                    yield out
                if decoder.eof:
                    data = decoder.unused_data
                    if data:  # the next member (RFC 1952 2.2)
                        self._zlib = zlib.decompressobj(_GZIP_WBITS)
                else:
                    data = decoder.unconsumed_tail
        except zlib.error as exc:
            raise CorruptBody("the request body is not valid gzip") from exc

    def end(self) -> None:
        if self._seen and not self._zlib.eof:
            raise CorruptBody("the request body's gzip stream is truncated")


class _BrotliDecoder:
    __slots__ = ("_brotli", "_seen")

    def __init__(self) -> None:
        self._brotli = brotli.Decompressor()
        self._seen = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        if not data:
            return
        self._seen = True
        decoder = self._brotli
        try:
            if decoder.is_finished():
                raise CorruptBody("the request body has bytes after its brotli stream")
            out: bytes = decoder.process(data, output_buffer_limit=PIECE)
            while out:
                yield out
                if decoder.is_finished():
                    break
                # more output is pending until a call with no input gives none
                out = decoder.process(b"", output_buffer_limit=PIECE)
        except brotli.error as exc:
            raise CorruptBody("the request body is not valid brotli") from exc

    def end(self) -> None:
        if self._seen and not self._brotli.is_finished():
            raise CorruptBody("the request body's brotli stream is truncated")


class _Chain:
    """Stacked codings: the outer decoder's pieces are fed to the inner one as they come.

    What passes between the two is held to ``limit`` bytes too: the final output alone
    is not enough, since a brotli layer can inflate a hundred bytes into millions of empty
    gzip members, which decode to nothing and would otherwise be decoded for as long as
    the CPU lasts.
    """

    __slots__ = ("_between", "_inner", "_limit", "_outer")

    def __init__(self, outer: Decoder, inner: Decoder, limit: int) -> None:
        self._outer = outer
        self._inner = inner
        self._limit = limit
        self._between = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        for piece in self._outer.feed(data):
            self._between += len(piece)
            if self._between > self._limit:
                raise BodyTooLarge(
                    f"the request body's inner coding exceeds the limit of {self._limit} bytes"
                )
            yield from self._inner.feed(piece)

    def end(self) -> None:
        self._outer.end()
        self._inner.end()


def decoder_for(codings: tuple[bytes, ...], limit: int) -> Decoder:
    """The decoder of a body whose codings were applied in ``codings`` order (non-empty);
    every layer's output is held to ``limit`` bytes (the last one's by the caller)."""
    made: Decoder | None = None
    for coding in codings:  # the first applied is decoded last: innermost
        one: Decoder = _GzipDecoder() if coding == GZIP else _BrotliDecoder()
        made = one if made is None else _Chain(one, made, limit)
    assert made is not None
    return made
