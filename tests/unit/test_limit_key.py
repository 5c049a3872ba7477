"""Rate-limit keys (pure): who shares a counter and who does not, for every key part.

``limit_key`` defines a key; each limit's ``key_of`` (made once by
``limit_keys.key_builder``) is what the gateway calls, held to ``limit_key`` by every test
here and by a property test over hostile values.

A key that ignored its part (every user on ``-``) would put all users in one bucket and
still pass a test that only ever sends one user, so each part is checked with two users
(different keys) and with the same user twice (the same key).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.call import Call
from edge.pipeline.credentials import parse_networks
from edge.pipeline.limit_keys import (
    DIGEST_MARK,
    KEPT_KEYS,
    MAX_KEY_PART,
    bounded_part,
    limit_key,
)
from edge.pipeline.limiter_core import LimitSpec
from edge.pipeline.policy import Limit

SPEC = LimitSpec("token_bucket", limit=10, period=1.0)


def limit(*parts: str, prefix: str = "p0.0") -> Limit:
    return Limit(SPEC, parts, prefix, "10;w=1")


def call(
    *,
    client: str = "198.51.100.1",
    route: str = "edgetest.v1.KitchenService.Echo",
    claims: dict[str, Any] | None = None,
    api_key: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Call:
    """A call as the auth layer leaves it: verified claims and the API key's name in state."""
    made = Call(
        upstream="kitchen",
        route=route,
        metadata=[],
        timeout=None,
        client=client,
        headers=headers or [],
    )
    if claims is not None:
        made.state["claims"] = claims
    if api_key is not None:
        made.state["api_key"] = api_key
    return made


def key(parts: tuple[str, ...], made: Call) -> str:
    """The key ``limit_key`` defines, after checking the limit's own builder agrees."""
    defined = limit_key(limit(*parts), made, ())
    assert limit(*parts).key_of(made, ()) == defined
    return defined


# (the key, a call from one user, a call from another), for every kind of key part
USERS: dict[str, tuple[tuple[str, ...], Any, Any]] = {
    "ip": (("ip",), lambda: call(client="198.51.100.1"), lambda: call(client="198.51.100.2")),
    "route": (
        ("route",),
        lambda: call(route="edgetest.v1.KitchenService.Echo"),
        lambda: call(route="edgetest.v1.KitchenService.Inspect"),
    ),
    "sub": (("sub",), lambda: call(claims={"sub": "alice"}), lambda: call(claims={"sub": "bob"})),
    "api_key": (("api_key",), lambda: call(api_key="ci"), lambda: call(api_key="deploy-bot")),
    "claim": (
        ("claim:tenant",),
        lambda: call(claims={"sub": "same", "tenant": "acme"}),
        lambda: call(claims={"sub": "same", "tenant": "globex"}),
    ),
    "header": (
        ("header:X-Tenant",),  # the name as configured; headers arrive lower-cased
        lambda: call(headers=[(b"x-tenant", b"acme")]),
        lambda: call(headers=[(b"x-tenant", b"globex")]),
    ),
    "sub and ip": (
        ("sub", "ip"),
        lambda: call(claims={"sub": "alice"}, client="198.51.100.1"),
        lambda: call(claims={"sub": "alice"}, client="198.51.100.2"),
    ),
}


@pytest.mark.parametrize("kind", sorted(USERS))
def test_two_users_two_keys_one_user_one_key(kind: str) -> None:
    parts, first, second = USERS[kind]
    assert key(parts, first()) != key(parts, second())
    assert key(parts, first()) == key(parts, first())  # a new call from the same user
    assert key(parts, second()) == key(parts, second())


def test_the_readme_sub_example_gives_each_user_a_key() -> None:
    """``key: [sub]`` (docs/policies.md's example): the subject is the key, the address is not."""
    alice = key(("sub",), call(claims={"sub": "alice"}, client="198.51.100.1"))
    assert alice == "p0.0|alice"
    assert key(("sub",), call(claims={"sub": "alice"}, client="203.0.113.9")) == alice
    assert key(("sub",), call(claims={"sub": "bob"}, client="198.51.100.1")) == "p0.0|bob"


@pytest.mark.parametrize(
    ("parts", "made", "expected"),
    [
        (("ip",), call(client="198.51.100.7"), "p0.0|198.51.100.7"),
        (("route",), call(), "p0.0|edgetest.v1.KitchenService.Echo"),
        (("sub",), call(claims={"sub": "alice"}), "p0.0|alice"),
        (("api_key",), call(api_key="ci"), "p0.0|ci"),
        (("claim:org",), call(claims={"org": 42}), "p0.0|42"),
        (("header:x-tenant",), call(headers=[(b"x-tenant", b"acme")]), "p0.0|acme"),
        (("sub", "header:x-tenant"), call(), "p0.0|-|-"),  # absent: the shared "-"
    ],
)
def test_each_part_reads_its_value(parts: tuple[str, ...], made: Call, expected: str) -> None:
    assert key(parts, made) == expected


def test_a_limit_prefix_keeps_two_limits_apart() -> None:
    made = call(claims={"sub": "alice"})
    assert limit_key(limit("sub", prefix="p0.0"), made, ()) != limit_key(
        limit("sub", prefix="p0.1"), made, ()
    )


def test_a_trusted_proxy_forwards_the_client_address() -> None:
    proxy = [ipaddress.ip_network("10.0.0.0/8")]
    parts = limit("ip")

    def via_proxy(forwarded: bytes) -> Call:
        return call(client="10.1.2.3", headers=[(b"x-forwarded-for", forwarded)])

    first = limit_key(parts, via_proxy(b"198.51.100.1"), proxy)
    assert first == "p0.0|198.51.100.1" == parts.key_of(via_proxy(b"198.51.100.1"), proxy)
    assert first == limit_key(parts, via_proxy(b"198.51.100.1"), proxy)
    assert first != limit_key(parts, via_proxy(b"198.51.100.2"), proxy)


# -- hostile values: bounded, and never read as another key ----------------------------


def digest_of(value: str) -> str:
    return key(("header:x-tenant",), call(headers=[(b"x-tenant", value.encode("latin-1"))]))


def test_a_huge_header_becomes_a_fixed_size_digest() -> None:
    first, second = digest_of("a" * 60_000), digest_of("a" * 59_999 + "b")
    assert first != second
    assert first == digest_of("a" * 60_000)
    assert len(first) == len("p0.0|") + 1 + 32
    assert first.startswith("p0.0|" + DIGEST_MARK)


def test_values_up_to_the_bound_are_kept_as_they_are() -> None:
    assert digest_of("a" * MAX_KEY_PART) == "p0.0|" + "a" * MAX_KEY_PART
    assert digest_of("a" * (MAX_KEY_PART + 1)).startswith("p0.0|" + DIGEST_MARK)


def test_a_separator_in_a_value_cannot_forge_another_split() -> None:
    parts = ("header:a", "header:b")
    left = call(headers=[(b"a", b"x|y"), (b"b", b"z")])
    right = call(headers=[(b"a", b"x"), (b"b", b"y|z")])
    assert key(parts, left) != key(parts, right)
    assert key(parts, left).count("|") == 2


def test_a_literal_value_never_equals_a_digest() -> None:
    """A client that sends the digest of someone's long value gets a digest of its own."""
    long = "t" * 100
    forged = bounded_part(long)
    assert digest_of(forged) != digest_of(long)


def test_non_ascii_claims_and_lone_surrogates_are_digested() -> None:
    assert key(("sub",), call(claims={"sub": "José"})) != key(
        ("sub",), call(claims={"sub": "Jose"})
    )
    assert key(("sub",), call(claims={"sub": "José"})).isascii()
    lone = key(("sub",), call(claims={"sub": "\ud800"}))  # json.loads lets these through
    assert lone.isascii() and lone.startswith("p0.0|" + DIGEST_MARK)


@settings(max_examples=200)
@given(st.text(), st.text())
def test_bounded_parts_are_short_ascii_and_keep_values_apart(first: str, second: str) -> None:
    for value in (first, second):
        part = bounded_part(value)
        assert len(part) <= MAX_KEY_PART and part.isascii() and "|" not in part
        assert part == bounded_part(value)
    if first != second:
        assert bounded_part(first) != bounded_part(second)


# -- the builders the gateway calls, against the definition ------------------------------

PART_KINDS = ["ip", "route", "sub", "api_key", "claim:tenant", "header:X-Tenant"]
# values at and around every edge bounded_part draws: its length, the separator, the
# digest mark, non-ASCII and lone surrogates, and the "-" an absent part becomes
EDGY = st.sampled_from(
    ["-", "", "#", "#abc", "a|b", "x" * MAX_KEY_PART, "x" * (MAX_KEY_PART + 1), "é", "\ud800"]
)
TEXT = st.one_of(EDGY, st.text(max_size=80))
CLAIM = st.one_of(TEXT, st.integers(), st.none(), st.lists(st.integers(), max_size=2))
ADDRESS = st.one_of(
    st.ip_addresses().map(str),
    st.sampled_from(["::ffff:198.51.100.7", "::FFFF:10.0.0.1", "10.1.2.3", "not-an-address"]),
    TEXT,
)
HEADER_VALUE = st.one_of(
    EDGY.map(lambda text: text.encode("utf-8", "surrogatepass")), st.binary(max_size=80)
)


def placed(kind: str, value: Any, client: str | None) -> Call:
    """A call whose ``kind`` part reads ``value`` (as text, or a claim's JSON value)."""
    if kind == "ip":
        made = call()
        made.client = value if isinstance(value, str) else client
        return made
    if kind == "route":
        return call(route=str(value))
    if kind == "sub":
        return call(claims={"sub": value})
    if kind == "claim:tenant":
        return call(claims={"sub": "someone", "tenant": value})
    if kind == "api_key":
        return call(api_key=str(value))
    raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)
    return call(headers=[(b"x-tenant", raw)])


@pytest.mark.parametrize("kind", PART_KINDS)
@settings(max_examples=150, deadline=None)
@given(
    value=st.one_of(TEXT, CLAIM, ADDRESS, HEADER_VALUE),
    client=st.one_of(st.none(), ADDRESS),
    forwarded=st.lists(ADDRESS, max_size=3),
    behind_proxy=st.booleans(),
)
def test_each_one_part_builder_makes_the_key_limit_key_defines(
    kind: str, value: Any, client: str | None, forwarded: list[str], behind_proxy: bool
) -> None:
    """Each part kind's own builder bounds its value in place: held to the definition on
    the values at every edge of ``bounded_part`` and of the address rules."""
    if kind == "header:X-Tenant" and not isinstance(value, (str, bytes)):
        value = str(value)
    made = placed(kind, value, client)
    made.headers = [
        *made.headers,
        (b"x-forwarded-for", ", ".join(forwarded).encode("utf-8", "surrogatepass")),
    ]
    trusted = parse_networks(["10.0.0.0/8", "::/0"]) if behind_proxy else ()
    built = limit(kind)
    assert built.key_of(made, trusted) == limit_key(built, made, trusted)


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(st.sampled_from(PART_KINDS), min_size=2, max_size=3).map(tuple),
    claims=st.fixed_dictionaries({}, optional={"sub": CLAIM, "tenant": CLAIM}),
    api_key=st.one_of(st.none(), TEXT),
    tenant=st.one_of(st.none(), HEADER_VALUE),
)
def test_a_key_of_several_parts_is_limit_keys(
    parts: tuple[str, ...],
    claims: dict[str, Any],
    api_key: str | None,
    tenant: bytes | None,
) -> None:
    headers = [] if tenant is None else [(b"x-tenant", tenant)]
    made = call(claims=claims, api_key=api_key, headers=headers)
    built = limit(*parts)
    assert built.key_of(made, ()) == limit_key(built, made, ())


ABSENT: dict[str, Any] = {
    # each part kind with nothing to read: the shared "-"
    "ip": lambda: Call(upstream="kitchen", route="r", metadata=[], timeout=None),
    "sub": lambda: call(),  # no claims at all (an API key, a public route)
    "claim:tenant": lambda: call(claims={"sub": "someone"}),  # claims, but not this one
    "api_key": lambda: call(),
    "header:X-Tenant": lambda: call(),
}


@pytest.mark.parametrize("kind", sorted(ABSENT))
def test_an_absent_part_is_the_shared_dash_for_every_builder(kind: str) -> None:
    """Deterministic, beside the property tests: each builder's own default, which a
    generated call that always carries its part never reaches."""
    made = ABSENT[kind]()
    assert key((kind,), made) == "p0.0|-"


@pytest.mark.parametrize("kind", PART_KINDS)
@pytest.mark.parametrize(
    "value", ["#", "#abc", "a|b", "x" * MAX_KEY_PART, "x" * (MAX_KEY_PART + 1), "é", "-"]
)
def test_each_builder_bounds_the_edge_values_as_the_definition(kind: str, value: str) -> None:
    """Every edge of ``bounded_part`` for every part kind, each checked every run."""
    key((kind,), placed(kind, value, None))


def test_a_key_of_several_parts_believes_trusted_proxies_as_the_definition() -> None:
    made = call(client="10.1.2.3", claims={"sub": "alice"})
    made.headers = [(b"x-forwarded-for", b"198.51.100.9")]
    built = limit("sub", "ip")
    proxies = parse_networks(["10.0.0.0/8"])
    assert (
        built.key_of(made, proxies) == limit_key(built, made, proxies) == "p0.0|alice|198.51.100.9"
    )


# one builder per kind for the whole run: its remembered keys carry from example to
# example, as they do from request to request in a gateway
REMEMBERING = {kind: limit(kind) for kind in ("ip", "sub", "claim:tenant")}


@pytest.mark.parametrize("kind", sorted(REMEMBERING))
@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.one_of(TEXT, CLAIM, ADDRESS), min_size=1, max_size=6))
def test_a_remembered_key_is_the_key_limit_key_defines(kind: str, values: list[Any]) -> None:
    """Asked again for a value it made a key for, a builder answers from memory: the same
    key as the definition's, for every value and whatever it saw before."""
    built = REMEMBERING[kind]
    for value in [*values, *values]:
        made = placed(kind, value, None)
        assert built.key_of(made, ()) == limit_key(built, made, ())


@pytest.mark.parametrize("kind", sorted(REMEMBERING))
def test_a_builder_remembers_only_so_many_keys_and_still_answers(kind: str) -> None:
    """Values come from clients: past ``KEPT_KEYS`` a builder keeps no more, and a value
    it did not keep still gets its key (digests included)."""
    built = limit(kind)
    many = [f"10.{n // 65536}.{n // 256 % 256}.{n % 256}" for n in range(KEPT_KEYS + 50)]
    for value in [*many, "x" * (MAX_KEY_PART + 1), *many[:10], *many[-10:]]:
        made = placed(kind, value, None)
        assert built.key_of(made, ()) == limit_key(built, made, ())
    closure = built.key_of.__closure__ or ()
    [kept] = [cell.cell_contents for cell in closure if isinstance(cell.cell_contents, dict)]
    assert len(kept) == KEPT_KEYS


@pytest.mark.parametrize("kind", sorted(REMEMBERING))
@pytest.mark.parametrize("value", ["alice", "198.51.100.9", "x" * MAX_KEY_PART])
def test_a_value_asked_again_is_answered_from_memory(kind: str, value: str) -> None:
    """The second ask returns the very key the first made (built again, it would be an
    equal string but another object): the subject or address is looked up, not rebuilt."""
    built = limit(kind)
    first = built.key_of(placed(kind, value, None), ())
    again = built.key_of(placed(kind, value, None), ())
    assert again == first and again is first


@pytest.mark.parametrize("kind", sorted(REMEMBERING))
def test_a_long_value_is_answered_but_not_kept(kind: str) -> None:
    """A value past ``MAX_KEY_PART`` (a digest's key) is made each time: the memory holds
    only short keys, so it stays small whatever the values are (a claim can be as long as
    a token)."""
    built = limit(kind)
    value = "x" * (MAX_KEY_PART + 1)
    first = built.key_of(placed(kind, value, None), ())
    assert first == limit_key(built, placed(kind, value, None), ())
    again = built.key_of(placed(kind, value, None), ())
    assert again == first and again is not first
