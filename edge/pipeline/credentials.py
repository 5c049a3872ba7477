"""Where credentials and client identity live in a request (pure).

Every ingress asks these functions, so a token or a client address is found the same way
whichever protocol carried it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import parse_qsl

Headers = Sequence[tuple[bytes, bytes]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def header_value(headers: Headers, name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def bearer_token(headers: Headers) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive)."""
    for name, raw in headers:  # header_value, inline: asked for on every request
        if name == b"authorization":
            scheme, _, token = raw.decode("latin-1").strip().partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
    return None


def cookie_value(headers: Headers, name: str) -> str | None:
    for key, value in headers:
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                cookie, _, found = part.strip().partition("=")
                if cookie == name:
                    return found
    return None


def query_value(query: bytes, name: str) -> str | None:
    if not query:
        return None
    for key, value in parse_qsl(query.decode("latin-1")):
        if key == name:
            return value
    return None


def find_token(
    headers: Headers, query: bytes, query_name: str | None, cookie_name: str | None
) -> str | None:
    """A bearer token from the Authorization header, else the configured query or cookie."""
    token = bearer_token(headers)
    if token is None and query_name:
        token = query_value(query, query_name)
    if token is None and cookie_name:
        token = cookie_value(headers, cookie_name)
    return token


def parse_networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def unmapped(address: str) -> str:
    """An IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) as the IPv4 address it is.

    A dual-stack listener (``[::]:8080``) reports IPv4 clients in mapped form; keyed as
    IPv6 they would share one /64 (every IPv4 client in one rate-limit bucket) and miss
    IPv4 trusted-proxy networks. Anything else is returned as it is.
    """
    if address.startswith("::ffff:") or address.startswith("::FFFF:"):
        try:
            mapped = ipaddress.IPv6Address(address).ipv4_mapped
        except ValueError:
            return address
        if mapped is not None:
            return str(mapped)
    return address


def is_trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(unmapped(address))
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(peer: str | None, headers: Headers, trusted: Sequence[Network]) -> str | None:
    """The client's address, believing ``X-Forwarded-For`` only from trusted proxies.

    Walks the chain from the nearest hop outwards and stops at the first address that is
    not a trusted proxy: entries further left were written by the client and may be forged.
    """
    if peer is None:
        return None
    peer = unmapped(peer)
    if not trusted or not is_trusted(peer, trusted):
        return peer
    hops: list[str] = []
    for key, value in headers:
        if key == b"x-forwarded-for":
            hops.extend(hop.strip() for hop in value.decode("latin-1").split(","))
    address = peer
    for hop in reversed(hops):
        if not hop:
            continue
        address = unmapped(hop)
        if not is_trusted(hop, trusted):
            break
    return address
