"""edge.pipeline.credentials, pinned where mutation testing found the tests loose.

``find_token``'s order (header, then the configured query parameter, then the cookie) had
no unit test; the X-Forwarded-For walk was not tested on hops that are empty or not
addresses at all, where a wrong step would believe an address the client wrote.
"""

from __future__ import annotations

import ipaddress

import pytest

from edge.pipeline.credentials import (
    client_address,
    cookie_value,
    find_token,
    parse_networks,
)

COOKIE = [(b"cookie", b"theme=dark; edge_token=from-cookie")]
BEARER = [(b"authorization", b"Bearer from-header")]
QUERY = b"page=2&access_token=from-query"


@pytest.mark.parametrize(
    ("headers", "query", "query_name", "cookie_name", "expected"),
    [
        (BEARER + COOKIE, QUERY, "access_token", "edge_token", "from-header"),
        (COOKIE, QUERY, "access_token", "edge_token", "from-query"),
        (COOKIE, b"page=2", "access_token", "edge_token", "from-cookie"),
        (COOKIE, QUERY, None, "edge_token", "from-cookie"),  # the query is not configured
        (COOKIE, QUERY, "access_token", None, "from-query"),
        (COOKIE, QUERY, None, None, None),  # neither is configured: the header only
        ([], b"", "access_token", "edge_token", None),
    ],
)
def test_find_token_looks_in_order_and_only_where_configured(
    headers: list[tuple[bytes, bytes]],
    query: bytes,
    query_name: str | None,
    cookie_name: str | None,
    expected: str | None,
) -> None:
    assert find_token(headers, query, query_name, cookie_name) == expected


def test_a_cookie_value_may_hold_equals_signs() -> None:
    headers = [(b"cookie", b"edge_token=abc==; other=x")]
    assert cookie_value(headers, "edge_token") == "abc=="


TRUSTED = parse_networks(["10.0.0.0/8"])


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        # a hop that is not an address ends the walk: it is what the last trusted proxy
        # saw, and anything left of it was written by the client
        (b"203.0.113.9, not-an-address", "not-an-address"),
        (b"203.0.113.9, 10.0.0.7, garbage", "garbage"),
        # empty entries (",," or a trailing comma) are skipped, not taken as the end
        (b"203.0.113.9, ", "203.0.113.9"),
        (b"198.51.100.1, 203.0.113.9,,10.0.0.7", "203.0.113.9"),
    ],
)
def test_the_forwarded_walk_on_odd_hops(forwarded: bytes, expected: str) -> None:
    headers = [(b"x-forwarded-for", forwarded)]
    assert client_address("10.0.0.1", headers, TRUSTED) == expected


def test_networks_may_be_written_with_host_bits_set() -> None:
    assert parse_networks(["10.1.2.3/8", "2001:db8::1/32"]) == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
    )
