"""The compression core (edge/upstream/compression.py) and its settings, without a network.

The sizes and words below are what grpc.aio (C-core) answered to the same replies from
the raw upstream of tests/grpc_raw_upstream.py with ``max_receive_message_length`` 4000;
tests/e2e/test_grpc_compression_e2e.py holds the lean client to grpc.aio reply by reply.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import pytest
from conftest import make_config

from edge.errors import ConfigError, UpstreamStatus
from edge.upstream.compression import (
    accept_value,
    compress,
    decompress,
    encoding_error,
    encoding_of,
)
from edge.upstream.lean_wire import outcome, request_block
from edge.upstream_settings import upstream_settings

LIMIT = 4000


def failure(encoding: bytes | None, flag: int, payload: bytes) -> tuple[int, str]:
    with pytest.raises(UpstreamStatus) as caught:
        decompress(encoding, flag, payload, LIMIT)
    return caught.value.grpc_code, caught.value.message


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (4000, None),
        (4001, (8, "CLIENT: Received message larger than max (4001 vs. 4000)")),
        (5023, (8, "CLIENT: Received message larger than max (5023 vs. 4000)")),
        (5024, (8, "Decompressed message larger than max")),
        (50_000_000, (8, "Decompressed message larger than max")),
    ],
)
@pytest.mark.parametrize("algorithm", [b"gzip", b"deflate"])
def test_inflating_stops_at_the_limit_as_grpc_does(
    algorithm: bytes, size: int, expected: tuple[int, str] | None
) -> None:
    packed = zlib.compress(bytes(size), 9, 31 if algorithm == b"gzip" else 15)
    if expected is None:
        assert decompress(algorithm, 1, packed, LIMIT) == bytes(size)
    else:
        assert failure(algorithm, 1, packed) == expected


GOOD = b"\x0a\x04fine" * 20


@pytest.mark.parametrize(
    ("encoding", "flag", "payload", "expected"),
    [
        (None, 1, gzip.compress(GOOD), (13, "Compression bit set but no encoding configured")),
        (b"identity", 1, GOOD, (13, "Compression bit set but no encoding configured")),
        (b"gzip", 2, GOOD, (13, "Invalid gRPC compression flag (must be 0 or 1)")),
        (
            b"gzip",
            1,
            gzip.compress(GOOD)[:-8] + bytes(8),
            (13, "Decompression failed due to zlib error"),
        ),
        (b"gzip", 1, zlib.compress(GOOD), (13, "Decompression failed due to zlib error")),
        (b"gzip", 1, gzip.compress(GOOD)[:-3], (13, "Decompression failed due to data error")),
        (
            b"gzip",
            1,
            gzip.compress(GOOD) * 2,
            (13, "Decompression failed due to not all input consumed"),
        ),
    ],
)
def test_bad_compressed_replies_fail_with_grpcs_words(
    encoding: bytes | None, flag: int, payload: bytes, expected: tuple[int, str]
) -> None:
    assert failure(encoding, flag, payload) == expected


def test_good_replies_decode() -> None:
    assert decompress(b"gzip", 1, gzip.compress(GOOD), LIMIT) == GOOD
    assert decompress(b"deflate", 1, zlib.compress(GOOD), LIMIT) == GOOD
    assert decompress(b"gzip", 0, GOOD, LIMIT) == GOOD  # flag clear: as it is
    assert decompress(None, 0, GOOD, LIMIT) == GOOD
    assert decompress(b"gzip", 1, b"", LIMIT) == b""  # C-core inflates nothing to nothing


@pytest.mark.parametrize("value", [b"identity", b"gzip", b"deflate", b" gzip", b"gzip\t"])
def test_grpcs_encoding_names_are_accepted(value: bytes) -> None:
    assert encoding_error(value) is None


@pytest.mark.parametrize("value", [b"GZIP", b"snappy", b"", b"gzip, deflate", b"br"])
def test_other_encodings_fail_the_reply(value: bytes) -> None:
    error = encoding_error(value)
    assert error is not None and error.grpc_code == 13


def test_an_unknown_encoding_fails_even_an_error_status() -> None:
    headers = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    block = [*headers, (b"grpc-encoding", b"br"), (b"grpc-status", b"5")]
    with pytest.raises(UpstreamStatus) as caught:
        outcome(block, None, [], LIMIT)  # trailers-only
    assert caught.value.grpc_code == 13 and "grpc-encoding" in caught.value.message


def test_outcome_inflates_a_compressed_message() -> None:
    headers = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    packed = gzip.compress(GOOD)
    body = bytes((1,)) + len(packed).to_bytes(4, "big") + packed
    trailers = [(b"grpc-status", b"0")]
    message, initial, _ = outcome([*headers, (b"grpc-encoding", b"gzip")], trailers, [body], LIMIT)
    assert message == GOOD
    assert initial == ()  # grpc-encoding is transport, never metadata (as in grpc.aio)
    assert encoding_of([(b"grpc-encoding", b" deflate ")]) == b"deflate"


def test_requests_are_compressed_only_when_smaller() -> None:
    flag, packed = compress("gzip", GOOD)
    assert flag == 1 and gzip.decompress(packed) == GOOD and len(packed) < len(GOOD)
    flag, packed = compress("deflate", GOOD)
    assert flag == 1 and zlib.decompress(packed) == GOOD
    assert compress("gzip", b"\x0a\x01x") == (0, b"\x0a\x01x")


def test_the_request_block_carries_the_encodings_only_when_set() -> None:
    plain = request_block("/p.S/M", "upstream")
    assert b"grpc-encoding" not in plain and b"grpc-accept-encoding" not in plain
    block = request_block("/p.S/M", "upstream", False, b"gzip", b"identity, gzip")
    assert block.startswith(plain)
    assert b"\x0dgrpc-encoding\x04gzip" in block
    assert b"\x14grpc-accept-encoding\x0eidentity, gzip" in block


@pytest.mark.parametrize(
    ("upstream", "compressing", "advertised"),
    [
        ({}, None, None),
        ({"accept_compression": ["gzip"]}, None, b"identity, gzip"),
        ({"accept_compression": ["gzip", "deflate"]}, None, b"identity, deflate, gzip"),
        ({"request_compression": "deflate"}, "deflate", b"identity, deflate"),
        ({"request_compression": "none"}, None, None),
    ],
)
def test_settings_from_config(
    upstream: dict[str, Any], compressing: str | None, advertised: bytes | None
) -> None:
    config = make_config(
        1, extra={"upstreams": {"kitchen": {"address": "127.0.0.1:1", **upstream}}}
    )
    settings = upstream_settings(config)["kitchen"]
    assert settings.request_compression == compressing
    assert accept_value(settings.accept_compression) == advertised


@pytest.mark.parametrize(
    ("upstream", "problem"),
    [
        ({"accept_compression": ["gzip", "gzip"]}, "lists gzip twice"),
        ({"accept_compression": ["identity"]}, "accept_compression"),
        ({"accept_compression": "gzip"}, "accept_compression"),
        ({"request_compression": "br"}, "request_compression"),
        ({"request_compresion": "gzip"}, "request_compresion"),
    ],
)
def test_bad_compression_settings_are_refused_at_load(
    upstream: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        make_config(1, extra={"upstreams": {"kitchen": {"address": "127.0.0.1:1", **upstream}}})
    assert "upstreams.kitchen" in str(caught.value)
