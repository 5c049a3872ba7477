from __future__ import annotations

import pytest

from edge.pipeline.credentials import (
    bearer_token,
    client_address,
    cookie_value,
    parse_networks,
    query_value,
)


@pytest.mark.parametrize(
    ("value", "token"),
    [(b"Bearer abc", "abc"), (b"bearer  abc ", "abc"), (b"Basic abc", None), (b"Bearer", None)],
)
def test_bearer(value: bytes, token: str | None) -> None:
    assert bearer_token([(b"authorization", value)]) == token


def test_cookie_and_query() -> None:
    headers = [(b"cookie", b"a=1; edge_token=tok; b=2")]
    assert cookie_value(headers, "edge_token") == "tok"
    assert cookie_value(headers, "missing") is None
    assert query_value(b"x=1&access_token=t%2B", "access_token") == "t+"


TRUSTED = parse_networks(["10.0.0.0/8", "127.0.0.1/32"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.5", "1.2.3.4", "203.0.113.5"),  # untrusted peer: its header is ignored
        ("10.0.0.2", "198.51.100.7", "198.51.100.7"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.7, 10.0.0.9", "198.51.100.7"),  # forged left part
        ("10.0.0.2", "", "10.0.0.2"),
        ("10.0.0.2", "10.0.0.3, 10.0.0.4", "10.0.0.3"),  # all trusted: the farthest
    ],
)
def test_client_address(peer: str, forwarded: str, expected: str) -> None:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    assert client_address(peer, headers, TRUSTED) == expected
    assert client_address(peer, headers, ()) == peer


def test_ipv6_clients_are_limited_per_64() -> None:
    from edge.call import Call
    from edge.pipeline.limit_keys import limit_key
    from edge.pipeline.limiter_core import LimitSpec
    from edge.pipeline.policy import Limit

    limit = Limit(LimitSpec("token_bucket", 1, 1.0), ("ip",), "p0.0", "1;w=1")

    def key(address: str) -> str:
        return limit_key(limit, Call("u", "r", [], None, client=address), ())

    assert key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff::9")
    assert key("2001:db8:1:2::1") != key("2001:db8:1:3::1")
    assert key("192.0.2.1") == "p0.0|192.0.2.1"


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("::ffff:203.0.113.5", "", "203.0.113.5"),  # a dual-stack bind reports IPv4 mapped
        ("::FFFF:203.0.113.5", "", "203.0.113.5"),
        ("::ffff:10.0.0.2", "198.51.100.7", "198.51.100.7"),  # IPv4 trusted networks apply
        ("::ffff:10.0.0.2", "::ffff:198.51.100.7", "198.51.100.7"),
        ("::ffff:203.0.113.5", "1.2.3.4", "203.0.113.5"),  # still untrusted
        ("2001:db8::1", "", "2001:db8::1"),
        ("::ffff:zz", "", "::ffff:zz"),  # not an address: left as it is
    ],
)
def test_ipv4_mapped_clients_are_ipv4_clients(peer: str, forwarded: str, expected: str) -> None:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    assert client_address(peer, headers, TRUSTED) == expected


def test_ipv4_mapped_clients_get_a_limit_each() -> None:
    from edge.call import Call
    from edge.pipeline.limit_keys import limit_key
    from edge.pipeline.limiter_core import LimitSpec
    from edge.pipeline.policy import Limit

    limit = Limit(LimitSpec("token_bucket", 1, 1.0), ("ip",), "p0.0", "1;w=1")

    def key(address: str) -> str:
        return limit_key(limit, Call("u", "r", [], None, client=address), ())

    assert key("::ffff:192.0.2.1") == key("192.0.2.1") == "p0.0|192.0.2.1"
    assert key("::ffff:192.0.2.1") != key("::ffff:192.0.2.2")
