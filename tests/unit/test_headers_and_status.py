from __future__ import annotations

import pytest

from edge.errors import BadRequest
from edge.transcode.status import HTTP_STATUS_BY_GRPC_CODE, http_status_for
from edge.upstream.headers import (
    HeaderPolicy,
    parse_grpc_timeout,
    request_metadata,
    response_headers,
)

POLICY = HeaderPolicy.of(["authorization", "x-request-id", "te", "upgrade"], ["x-shard"])


def test_status_table_is_complete() -> None:
    assert sorted(HTTP_STATUS_BY_GRPC_CODE) == list(range(17))
    assert http_status_for(99) == 500


def test_request_metadata() -> None:
    headers = [
        (b"host", b"gw:8080"),
        (b"authorization", b"Bearer t"),
        (b"x-request-id", b"r1"),
        (b"x-other", b"no"),
        (b"grpc-metadata-tenant", b"acme"),
        (b"grpc-metadata-grpc-status", b"0"),  # reserved names never pass
        (b"grpc-metadata-content-type", b"text/evil"),
        (b"grpc-metadata-raw-bin", b"AP8="),
        (b"te", b"trailers"),  # hop-by-hop even when allowlisted
        (b"upgrade", b"h2c"),
        (b"connection", b"x-request-id"),  # names a header as hop-by-hop
        (b"x-forwarded-for", b"198.51.100.1"),
    ]
    assert request_metadata(headers, POLICY, "10.0.0.1") == [
        ("authorization", "Bearer t"),
        ("tenant", "acme"),
        ("raw-bin", b"\x00\xff"),
        ("x-forwarded-for", "198.51.100.1, 10.0.0.1"),
        ("x-forwarded-host", "gw:8080"),
    ]


def test_bad_binary_metadata() -> None:
    with pytest.raises(BadRequest):
        request_metadata([(b"grpc-metadata-k-bin", b"!!")], POLICY, None)


def test_response_headers() -> None:
    out = response_headers(
        [("x-shard", "1"), ("x-a", "b"), ("content-type", "application/grpc")],
        [("grpc-status", "0"), ("x-t", "2"), ("x-b-bin", b"\x01")],
        POLICY,
    )
    assert out == [
        (b"x-shard", b"1"),
        (b"grpc-metadata-x-a", b"b"),
        (b"grpc-trailer-x-t", b"2"),
        (b"grpc-trailer-x-b-bin", b"AQ=="),
    ]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1H", 3600.0),
        ("2M", 120.0),
        ("3S", 3.0),
        ("250m", 0.25),
        ("5u", 5e-6),
        ("99999999n", 0.099999999),
    ],
)
def test_grpc_timeout(value: str, seconds: float) -> None:
    assert parse_grpc_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "S", "1", "1s", "123456789S", "-1S", "1.5S"])
def test_bad_grpc_timeout(value: str) -> None:
    with pytest.raises(BadRequest):
        parse_grpc_timeout(value)
