"""edge.upstream.headers, pinned where mutation testing found the tests loose.

Several X-Forwarded-For headers, headers after one, a client without one, a ``Connection``
list written without spaces, unpadded ``-bin`` values, pseudo-headers in upstream metadata,
a metadata value latin-1 cannot hold, and the exact 400 messages.
"""

from __future__ import annotations

import pytest

from edge.errors import BadRequest
from edge.upstream.headers import (
    HeaderPolicy,
    parse_grpc_timeout,
    request_metadata,
    response_headers,
)

POLICY = HeaderPolicy.of(["X-Request-Id", "X-Tenant"], ["X-Shard"])


def test_allowlists_are_matched_case_insensitively() -> None:
    # built here, not at import: mutmut only sees calls made while a test runs
    policy = HeaderPolicy.of(["X-Request-Id", "X-Tenant"], ["X-Shard"])
    assert policy.request_allowlist == frozenset({"x-request-id", "x-tenant"})
    assert policy.response_allowlist == frozenset({"x-shard"})


def test_every_forwarded_for_header_is_kept_in_order_and_the_rest_still_read() -> None:
    headers = [
        (b"x-forwarded-for", b"198.51.100.1"),
        (b"x-forwarded-for", b"203.0.113.2, 10.0.0.3"),
        (b"x-request-id", b"r1"),  # after the forwarded headers: still copied
    ]
    assert request_metadata(headers, POLICY, "10.0.0.9") == [
        ("x-request-id", "r1"),
        ("x-forwarded-for", "198.51.100.1, 203.0.113.2, 10.0.0.3, 10.0.0.9"),
    ]


def test_without_a_forwarded_header_the_client_alone_is_forwarded() -> None:
    assert request_metadata([], POLICY, "10.0.0.9") == [("x-forwarded-for", "10.0.0.9")]
    assert request_metadata([], POLICY, None) == []


def test_a_connection_list_without_spaces_still_names_each_header() -> None:
    headers = [
        (b"x-request-id", b"r1"),
        (b"x-tenant", b"acme"),
        (b"connection", b"x-request-id,X-Tenant"),
    ]
    assert request_metadata(headers, POLICY, None) == []


@pytest.mark.parametrize(
    ("raw", "value"),
    [(b"AAE", b"\x00\x01"), (b"AAE=", b"\x00\x01"), (b"AA", b"\x00"), (b"AAEC", b"\x00\x01\x02")],
)
def test_binary_metadata_may_come_without_padding(raw: bytes, value: bytes) -> None:
    headers = [(b"grpc-metadata-trace-bin", raw)]
    assert request_metadata(headers, POLICY, None) == [("trace-bin", value)]


def test_bad_binary_metadata_is_named() -> None:
    with pytest.raises(BadRequest) as refused:
        request_metadata([(b"grpc-metadata-trace-bin", b"!!")], POLICY, None)
    assert str(refused.value) == "header 'trace-bin' must be base64 (a -bin metadata key)"


def test_pseudo_headers_in_metadata_never_become_response_headers() -> None:
    out = response_headers([(":status", "200"), ("x-shard", "3")], [(":path", "/x")], POLICY)
    assert out == [(b"x-shard", b"3")]


def test_a_value_latin_1_cannot_hold_does_not_fail_the_response() -> None:
    out = response_headers([("x-note", "caf\u20ac")], [], POLICY)
    assert out == [(b"grpc-metadata-x-note", b"caf?")]


def test_a_malformed_grpc_timeout_is_named() -> None:
    with pytest.raises(BadRequest) as refused:
        parse_grpc_timeout("10x")
    assert str(refused.value) == "malformed grpc-timeout header '10x'"
