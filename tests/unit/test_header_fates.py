"""``request_metadata`` remembers each header name's fate: the same answer as deciding anew.

The policy keeps, per raw header name, what it becomes (a metadata key, a header the
gateway reads, or nothing); the reference below is the rule applied to every header on
every request, as it was before. Property-tested against it, including names that only
differ in case, ``Grpc-Metadata-`` forms of reserved names, and a policy whose memory is
full (clients choose the names: past ``NAME_MEMORY`` the rule runs per request).
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.call import Metadata
from edge.errors import BadRequest
from edge.upstream import headers as headers_module
from edge.upstream.headers import NAME_MEMORY, HeaderPolicy, request_metadata

_NOT_METADATA = headers_module._NOT_METADATA
_VALID_KEY = re.compile(r"[0-9a-z_.\-]+")


def reference(
    headers: list[tuple[bytes, bytes]], policy: HeaderPolicy, client: str | None
) -> Metadata:
    """The rule, decided per header per request (the code before names were remembered)."""
    metadata: Metadata = []
    listed: set[str] = set()
    forwarded_for: str | None = None
    host: str | None = None
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if name == "connection":
            listed.update(t.strip().lower() for t in raw_value.decode("latin-1").split(","))
            continue
        if name == "x-forwarded-for":
            value = raw_value.decode("latin-1")
            forwarded_for = f"{forwarded_for}, {value}" if forwarded_for else value
            continue
        if name == "host":
            host = raw_value.decode("latin-1")
            continue
        if name.startswith("grpc-metadata-"):
            key = name[len("grpc-metadata-") :]
        elif name in policy.request_allowlist:
            key = name
        else:
            continue
        if key in _NOT_METADATA or key.startswith("grpc-") or not _VALID_KEY.fullmatch(key):
            continue
        metadata.append((key, headers_module._metadata_value(key, raw_value)))
    if listed:
        metadata = [(k, v) for k, v in metadata if k not in listed]
    if client:
        forwarded_for = f"{forwarded_for}, {client}" if forwarded_for else client
    if forwarded_for:
        metadata.append(("x-forwarded-for", forwarded_for))
    if host:
        metadata.append(("x-forwarded-host", host))
    return metadata


_NAMES = st.sampled_from(
    [
        b"host",
        b"Host",
        b"connection",
        b"x-forwarded-for",
        b"X-Forwarded-For",
        b"x-request-id",
        b"X-Request-Id",
        b"x-tenant",
        b"user-agent",
        b"content-type",
        b"grpc-metadata-x-tenant",
        b"Grpc-Metadata-Tenant",
        b"grpc-metadata-host",
        b"grpc-metadata-connection",
        b"grpc-metadata-grpc-status",
        b"grpc-metadata-k-bin",
        b"grpc-metadata-Bad Key",
        b"grpc-metadata-",
        b"grpc-timeout",
        b"te",
        b"x-tenant-bin",
    ]
) | st.binary(min_size=1, max_size=12)
_VALUES = st.sampled_from([b"AAE", b"a, x-tenant", b"10.0.0.1", b"!!", b"", b"\xff"]) | st.binary(
    max_size=8
)
_HEADERS = st.lists(st.tuples(_NAMES, _VALUES), max_size=8)


def _outcome(
    rule: object, headers: list[tuple[bytes, bytes]], policy: HeaderPolicy, client: str | None
) -> object:
    try:
        return rule(headers, policy, client)  # type: ignore[operator]
    except BadRequest as error:
        return ("400", str(error))


@settings(max_examples=400)
@given(
    requests=st.lists(_HEADERS, min_size=1, max_size=4),
    client=st.sampled_from([None, "10.0.0.9"]),
)
def test_remembered_fates_answer_as_the_rule_does(
    requests: list[list[tuple[bytes, bytes]]], client: str | None
) -> None:
    policy = HeaderPolicy.of(["X-Request-Id", "X-Tenant", "x-tenant-bin"], [])
    for headers in requests:  # the same policy across requests: later ones use its memory
        assert _outcome(request_metadata, headers, policy, client) == _outcome(
            reference, headers, policy, client
        )


def test_a_full_memory_still_answers_by_the_rule() -> None:
    policy = HeaderPolicy.of(["x-tenant"], [])
    for n in range(NAME_MEMORY + 10):  # a client minting names fills it, and no further
        request_metadata([(f"x-junk-{n}".encode(), b"v")], policy, None)
    assert len(policy._fates) == NAME_MEMORY
    headers = [(b"x-tenant", b"acme"), (b"grpc-metadata-late", b"1"), (b"connection", b"late")]
    assert request_metadata(headers, policy, None) == reference(headers, policy, None)
    assert request_metadata(headers, policy, None) == [("x-tenant", "acme")]
