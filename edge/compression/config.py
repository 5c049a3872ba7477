"""The ``compression:`` section, checked at load (docs/compression.md).

Kept apart from ``edge.config`` as ``edge.cors_config`` is: the policies (per-route
switch) and the config both hold it, and neither imports the ingress.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge.units import Bytes

Algorithm = Literal["br", "gzip"]

DEFAULT_CONTENT_TYPES = ["application/json", "application/x-ndjson", "text/event-stream"]


class CompressionConfig(BaseModel):
    """Response compression of transcoded routes, and compressed request bodies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # compress responses (a policy's ``compression: false`` turns it off for its routes)
    enabled: bool = True
    # the codings offered, most preferred first: the tie-break between codings a client
    # weighs equally (browsers send "gzip, deflate, br, zstd", all at q=1)
    algorithms: list[Algorithm] = Field(default_factory=lambda: list[Algorithm](["br", "gzip"]))
    # the same for streams (NDJSON, SSE, JSON arrays), whose compressor lives as long as
    # the stream, for every open stream: gzip's holds ~43 KiB, so gzip only by default (a
    # client that accepts only br gets its stream unencoded); add br to offer brotli at
    # stream_brotli_quality (docs/compression.md: the memory each costs)
    stream_algorithms: list[Algorithm] = Field(default_factory=lambda: list[Algorithm](["gzip"]))
    # a stream's brotli quality, apart from brotli_quality: brotli's per-stream memory does
    # not grow with quality (q4 holds ~525 KiB, q5 ~273 KiB, q1 ~16 KiB), and flushed per
    # message q5 compresses better than q4
    stream_brotli_quality: int = Field(default=5, ge=0, le=11)
    # a response with a Content-Length below this is sent as it is (a stream is always
    # compressed: its size is not known when it starts)
    min_size: Bytes = 1024
    # media types compressed (parameters such as charset are ignored when comparing);
    # "text/*" names every subtype of a type ("*/*" is refused: images, archives)
    content_types: list[str] = Field(default_factory=lambda: list(DEFAULT_CONTENT_TYPES))
    gzip_level: int = Field(default=6, ge=1, le=9)  # zlib's default
    # brotli's quality: 4 compresses JSON about as well as gzip 6, faster; 11 (brotli's
    # own default) is for static files, tens of times slower
    brotli_quality: int = Field(default=4, ge=0, le=11)
    # decode request bodies sent with Content-Encoding: gzip or br (JSON and NDJSON);
    # false: such a body is refused with 415
    decode_requests: bool = True
    # the most codings one request body may stack (Content-Encoding: gzip, br is two)
    max_request_codings: int = Field(default=2, ge=1, le=4)

    @field_validator("algorithms", "stream_algorithms")
    @classmethod
    def _distinct(cls, value: list[Algorithm]) -> list[Algorithm]:
        if not value:
            raise ValueError("name at least one algorithm (or set enabled: false)")
        if len(set(value)) != len(value):
            raise ValueError("an algorithm is named twice")
        return value

    @field_validator("content_types")
    @classmethod
    def _media_types(cls, value: list[str]) -> list[str]:
        out = []
        for item in value:
            kind = item.strip().lower()
            if kind.count("/") != 1 or ";" in kind or " " in kind:
                raise ValueError(f"{item!r} is not a media type like application/json")
            main, _, sub = kind.partition("/")
            if not main or not sub or "*" in main or ("*" in sub and sub != "*"):
                raise ValueError(
                    f"{item!r}: name a media type (application/json) or all of one type's "
                    "(text/*); */* and partial wildcards are not accepted"
                )
            out.append(kind)
        return out
