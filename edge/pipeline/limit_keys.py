"""Rate-limit keys (pure): which counter a call is counted against.

Keys are built from the call (client address behind trusted proxies, JWT subject or any
claim, API key name, route, a header), so the same policy limits a REST client, a
WebSocket and a proxied request alike.

``limit_key`` is the definition. ``key_builder`` makes, once per limit at load time, the
function the rate-limit layer calls on every request: for the common one-part key (``ip``,
``sub``, ``api_key``, ``route``, a claim or a header) one small function that reads the
part and bounds it in place, instead of a loop over the parts, a branch per part kind and
a join. ``tests/unit/test_limit_key.py`` holds every builder to ``limit_key`` on
arbitrary values (property test).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from edge.call import Call
from edge.pipeline.credentials import Network, client_address, header_value

if TYPE_CHECKING:
    from edge.pipeline.policy import Limit

KeyBuilder = Callable[[Call, Sequence[Network]], str]

MAX_KEY_PART = 64  # longer key parts (ASCII characters) are replaced by their digest
DIGEST_MARK = "#"  # starts every digest, and no part kept as it is
# keys remembered per builder, by the text they were made from: a client sends the same
# subject or address again and again. The first ones only: values come from clients.
KEPT_KEYS = 4096


def subject_address(address: str | None) -> str:
    """IPv4 addresses as they are; IPv6 by /64, the block one client usually holds."""
    if address is None:
        return "-"
    if ":" in address:
        try:
            network = ipaddress.ip_network(f"{address}/64", strict=False)
        except ValueError:
            return address
        return str(network)
    return address


def bounded_part(value: str) -> str:
    """``value`` when it is short, plain ASCII; otherwise ``#`` and a 128-bit digest of it.

    Key parts come from the client (a header, a claim), so a key could be as long as the
    longest header a client may send, and the memory store and Redis would keep every
    byte of it. A part kept as it is is at most ``MAX_KEY_PART`` ASCII characters and
    holds neither the ``|`` separator nor a leading ``#``; every other value (long,
    non-ASCII, or one of those) becomes ``#`` and 32 hex digits (BLAKE2b-128), so a key
    has a bounded length and is ASCII, a client cannot make its value read as another
    key's parts, and a literal value can never equal a digest.
    """
    if (
        len(value) <= MAX_KEY_PART
        and value.isascii()
        and "|" not in value
        and not value.startswith(DIGEST_MARK)
    ):
        return value
    return _digest(value)


def _digest(value: str) -> str:
    data = value.encode("utf-8", "surrogatepass")  # claims may hold lone surrogates
    return DIGEST_MARK + hashlib.blake2b(data, digest_size=16).hexdigest()


def limit_key(limit: Limit, call: Call, trusted: Sequence[Network]) -> str:
    """The counter a call is counted against: the limit's prefix and the call's parts.

    Parts are joined with ``|`` after ``bounded_part``, so the key of any call is at most
    ``len(prefix) + parts * (MAX_KEY_PART + 1)`` ASCII characters, whatever it sent.
    """
    return _joined_key(limit.key_parts, limit.key_prefix, call, trusted)


def _joined_key(
    key_parts: tuple[str, ...], prefix: str, call: Call, trusted: Sequence[Network]
) -> str:
    parts = [prefix]
    claims = call.state.get("claims") or {}
    for part in key_parts:
        if part == "ip":
            value = subject_address(client_address(call.client, call.headers, trusted))
        elif part == "route":
            value = call.route
        elif part == "sub":
            value = str(claims.get("sub", "-"))
        elif part == "api_key":
            value = str(call.state.get("api_key", "-"))
        elif part.startswith("claim:"):
            value = str(claims.get(part[6:], "-"))
        else:  # header:<name>
            value = header_value(call.headers, part[7:].lower().encode()) or "-"
        parts.append(bounded_part(value))
    return "|".join(parts)


def key_builder(parts: tuple[str, ...], prefix: str) -> KeyBuilder:
    """``limit_key`` for a limit with these ``parts`` and ``prefix``, made once.

    Each one-part builder reads its part and bounds it as ``bounded_part`` does, inline:
    a key is made on every limited request, and a call less is most of what it costs.
    A claim's and an address's builder remember the keys they made (``KEPT_KEYS``), so a
    subject or client seen before costs one probe.
    """
    if len(parts) != 1:
        return _general(parts, prefix)
    part = parts[0]
    head = prefix + "|"
    if part == "sub" or part.startswith("claim:"):
        claim = "sub" if part == "sub" else part[6:]

        kept: dict[str, str] = {}

        def claim_key(call: Call, trusted: Sequence[Network]) -> str:
            claims = call.state.get("claims")
            found = claims.get(claim, "-") if claims else "-"
            if type(found) is str:  # a claim may be any JSON value: only text is kept
                key = kept.get(found)
                if key is not None:
                    return key
            value = str(found)
            if (
                len(value) <= MAX_KEY_PART
                and value.isascii()
                and "|" not in value
                and value[:1] != DIGEST_MARK
            ):
                key = head + value
            else:
                key = head + _digest(value)
            return _remembered(kept, found, key) if type(found) is str else key

        return claim_key
    if part == "ip":
        known: dict[str, str] = {}

        def ip_key(call: Call, trusted: Sequence[Network]) -> str:
            peer = call.client
            if not trusted and peer is not None and ":" not in peer:  # no proxy, not IPv6
                key = known.get(peer)
                if key is None:
                    key = _remembered(known, peer, head + bounded_part(peer))
                return key
            return head + bounded_part(subject_address(client_address(peer, call.headers, trusted)))

        return ip_key
    if part == "route":

        def route_key(call: Call, trusted: Sequence[Network]) -> str:
            return head + bounded_part(call.route)

        return route_key
    if part == "api_key":

        def api_key_key(call: Call, trusted: Sequence[Network]) -> str:
            return head + bounded_part(str(call.state.get("api_key", "-")))

        return api_key_key
    name = part[7:].lower().encode()  # header:<name>, as limit_key reads any other part

    def header_key(call: Call, trusted: Sequence[Network]) -> str:
        return head + bounded_part(header_value(call.headers, name) or "-")

    return header_key


def _remembered(memory: dict[str, str], value: str, key: str) -> str:
    """``key``, kept in ``memory`` as ``value``'s when there is room and ``value`` is short
    (a claim can be as long as a token): at most ``KEPT_KEYS`` small keys a builder."""
    if len(value) <= MAX_KEY_PART and len(memory) < KEPT_KEYS:
        memory[value] = key
    return key


def _general(parts: tuple[str, ...], prefix: str) -> KeyBuilder:
    def general_key(call: Call, trusted: Sequence[Network]) -> str:
        return _joined_key(parts, prefix, call, trusted)

    return general_key
