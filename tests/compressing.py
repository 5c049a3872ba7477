"""Helpers for the compression tests: raw answers, codings, and the bombs.

The responses are read raw (``aiter_raw``), never through httpx's own decoding, so a test
sees exactly the bytes and headers a client gets on the wire.
"""

from __future__ import annotations

import functools
import gzip
import zlib
from dataclasses import dataclass
from typing import Any

import brotli
import httpx


@dataclass
class Raw:
    status: int
    headers: httpx.Headers
    body: bytes  # as sent, still encoded


async def fetch_raw(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> Raw:
    async with client.stream(method, url, **kwargs) as response:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    return Raw(response.status_code, response.headers, body)


def gzip_bytes(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def decode(coding: str | None, body: bytes) -> bytes:
    if coding == "gzip":
        return zlib.decompress(body, 31)
    if coding == "br":
        out: bytes = brotli.decompress(body)
        return out
    assert coding is None, coding
    return body


def vary_items(headers: httpx.Headers) -> list[str]:
    values = headers.get_list("vary")
    assert len(values) <= 1, values  # one Vary header, merged
    return [item.strip().lower() for value in values for item in value.split(",")]


def _gzip_of_zeros(mebibytes: int) -> bytes:
    """gzip of ``mebibytes`` MiB of zeros, built fast: after a full flush deflate forgets
    what came before, so every MiB of zeros compresses to the same bytes, repeated."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(1024 * 1024)
    piece = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mebibytes):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    size = (mebibytes * len(block)) & 0xFFFFFFFF
    trailer = crc.to_bytes(4, "little") + size.to_bytes(4, "little")
    return header + piece * mebibytes + deflate.flush() + trailer


@functools.cache
def gzip_bomb() -> bytes:
    """About 64 KB of gzip that inflates to 64 MiB of zeros (gzip's ratio is ~1,000:1)."""
    return _gzip_of_zeros(64)


@functools.cache
def nested_gzip_bomb() -> bytes:
    """gzip inside gzip (``Content-Encoding: gzip, gzip``): a few KB, 1 GiB once both
    layers are decoded."""
    return gzip_bytes(_gzip_of_zeros(1024))


@functools.cache
def brotli_bomb() -> bytes:
    """About 3 KB of brotli that inflates to 1 GiB of zeros."""
    compressor = brotli.Compressor(quality=2)
    block = bytes(4 * 1024 * 1024)
    out = [compressor.process(block) for _ in range(256)]
    return b"".join(out) + compressor.finish()


@functools.cache
def empty_members_bomb() -> bytes:
    """brotli around 256 MiB of empty gzip members (``Content-Encoding: gzip, br``): about
    a kilobyte whose final output is nothing, so only a bound on what passes between the
    two layers stops it."""
    compressor = brotli.Compressor(quality=2)
    member = gzip.compress(b"", mtime=0)
    block = member * (4 * 1024 * 1024 // len(member))
    out = [compressor.process(block) for _ in range(64)]
    return b"".join(out) + compressor.finish()
