"""HTTP headers <-> gRPC metadata, and the grpc-timeout header (pure).

Request side: only allowlisted headers and the ``Grpc-Metadata-`` prefix convention
(grpc-gateway's) become metadata; hop-by-hop headers and anything named in
``Connection`` never do. Response side: metadata comes back as ``Grpc-Metadata-<key>``
and trailers as ``Grpc-Trailer-<key>``, or under their own names when allowlisted.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edge.call import Metadata
from edge.errors import BadRequest

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Never copied into metadata: transport headers that gRPC sets itself.
_NOT_METADATA = HOP_BY_HOP | {
    "host",
    "content-type",
    "content-length",
    "content-encoding",
    "accept-encoding",
    "user-agent",
    "grpc-timeout",
    "grpc-encoding",
    "grpc-accept-encoding",
    # set by the gateway itself: a client must not forge them through Grpc-Metadata-*
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "forwarded",
}
# Never copied from metadata into response headers.
_NOT_HEADERS = HOP_BY_HOP | {
    "content-type",
    "content-length",
    "content-encoding",
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "grpc-encoding",
    "grpc-accept-encoding",
}
_METADATA_PREFIX = "grpc-metadata-"
_VALID_KEY = re.compile(r"[0-9a-z_.\-]+")
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


@dataclass(frozen=True, slots=True)
class HeaderPolicy:
    """Which headers cross the gateway; built once from config."""

    request_allowlist: frozenset[str]
    response_allowlist: frozenset[str]

    @classmethod
    def of(cls, request: Iterable[str], response: Iterable[str]) -> HeaderPolicy:
        return cls(frozenset(h.lower() for h in request), frozenset(h.lower() for h in response))


def request_metadata(
    headers: Sequence[tuple[bytes, bytes]], policy: HeaderPolicy, client: str | None
) -> Metadata:
    """Metadata for the upstream call from ASGI request headers."""
    metadata: Metadata = []
    connection_listed: set[str] = set()
    forwarded_for: str | None = None
    host: str | None = None
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if name == "connection":
            connection_listed.update(
                token.strip().lower() for token in raw_value.decode("latin-1").split(",")
            )
            continue
        if name == "x-forwarded-for":
            value = raw_value.decode("latin-1")
            forwarded_for = f"{forwarded_for}, {value}" if forwarded_for else value
            continue
        if name == "host":
            host = raw_value.decode("latin-1")
            continue
        if name.startswith(_METADATA_PREFIX):
            key = name[len(_METADATA_PREFIX) :]
        elif name in policy.request_allowlist:
            key = name
        else:
            continue
        if key in _NOT_METADATA or key.startswith("grpc-") or not _VALID_KEY.fullmatch(key):
            continue
        metadata.append((key, _metadata_value(key, raw_value)))
    if connection_listed:
        metadata = [(k, v) for k, v in metadata if k not in connection_listed]
    if client:
        forwarded_for = f"{forwarded_for}, {client}" if forwarded_for else client
    if forwarded_for:
        metadata.append(("x-forwarded-for", forwarded_for))
    if host:
        metadata.append(("x-forwarded-host", host))
    return metadata


def _metadata_value(key: str, raw: bytes) -> str | bytes:
    if key.endswith("-bin"):
        try:
            return base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadRequest(f"header {key!r} must be base64 (a -bin metadata key)") from exc
    return raw.decode("latin-1")


def response_headers(
    initial: Iterable[tuple[str, str | bytes]],
    trailing: Iterable[tuple[str, str | bytes]],
    policy: HeaderPolicy,
) -> list[tuple[bytes, bytes]]:
    """HTTP response headers for upstream metadata and trailers."""
    out: list[tuple[bytes, bytes]] = []
    for prefix, items in (("grpc-metadata-", initial), ("grpc-trailer-", trailing)):
        for key, value in items:
            if key in _NOT_HEADERS or key.startswith(":"):
                continue
            name = key if key in policy.response_allowlist else prefix + key
            if isinstance(value, bytes):
                value = base64.b64encode(value).decode("ascii")
            out.append((name.encode("latin-1"), value.encode("latin-1", "replace")))
    return out


def parse_grpc_timeout(value: str) -> float:
    """Seconds from a ``grpc-timeout`` header (``1-8 digits + H/M/S/m/u/n``)."""
    digits, unit = value[:-1], value[-1:]
    if not (1 <= len(digits) <= 8 and digits.isdigit() and unit in _TIMEOUT_UNITS):
        raise BadRequest(f"malformed grpc-timeout header {value!r}")
    return int(digits) * _TIMEOUT_UNITS[unit]
