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
from dataclasses import dataclass, field

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


def clean_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Headers without the hop-by-hop ones and without any named in ``Connection``.

    Names are lower-cased (ASGI's and an upstream's raw headers may differ in case), values
    untouched; the order and repeats of the rest are kept.
    """
    pairs = [(name.lower(), value) for name, value in headers]
    drop = set(HOP_BY_HOP)
    for name, value in pairs:
        if name == b"connection":
            drop.update(t.strip().lower() for t in value.decode("latin-1").split(",") if t)
    if len(drop) == len(HOP_BY_HOP):
        return [(n, v) for n, v in pairs if n.decode("latin-1") not in HOP_BY_HOP]
    return [(n, v) for n, v in pairs if n.decode("latin-1") not in drop]


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


# Request header names that are read, not forwarded as metadata under any name.
_READ_HEADERS = frozenset({"connection", "x-forwarded-for", "host"})
# How many distinct request header names a policy remembers the fate of. Clients choose
# the names, so the memory is bounded; a name past it is worked out on each request.
NAME_MEMORY = 1024


@dataclass(frozen=True, slots=True)
class HeaderPolicy:
    """Which headers cross the gateway; built once from config."""

    request_allowlist: frozenset[str]
    response_allowlist: frozenset[str]
    # raw request header name -> its metadata key, one of _READ_HEADERS, or "" (dropped):
    # the same few names arrive on every request, and deciding costs a decode, a regex
    # and several set look-ups per header
    _fates: dict[bytes, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, request: Iterable[str], response: Iterable[str]) -> HeaderPolicy:
        return cls(frozenset(h.lower() for h in request), frozenset(h.lower() for h in response))

    def metadata_key(self, raw_name: bytes) -> str:
        """What a request header becomes: its metadata key, a name the gateway reads
        itself (``_READ_HEADERS``), or "" when it does not cross."""
        fate = self._fates.get(raw_name)
        if fate is None:
            fate = _fate(raw_name, self.request_allowlist)
            if len(self._fates) < NAME_MEMORY:
                self._fates[raw_name] = fate
        return fate


def _fate(raw_name: bytes, allowlist: frozenset[str]) -> str:
    name = raw_name.decode("latin-1").lower()
    if name in _READ_HEADERS:
        return name
    if name.startswith(_METADATA_PREFIX):
        key = name[len(_METADATA_PREFIX) :]
    elif name in allowlist:
        key = name
    else:
        return ""
    if key in _NOT_METADATA or key.startswith("grpc-") or not _VALID_KEY.fullmatch(key):
        return ""
    return key


def request_metadata(
    headers: Sequence[tuple[bytes, bytes]], policy: HeaderPolicy, client: str | None
) -> Metadata:
    """Metadata for the upstream call from ASGI request headers."""
    metadata: Metadata = []
    connection_listed: set[str] = set()
    forwarded_for: str | None = None
    host: str | None = None
    fates = policy._fates
    for raw_name, raw_value in headers:
        key = fates.get(raw_name)
        if key is None:
            key = policy.metadata_key(raw_name)
        if not key:
            continue
        if key in _READ_HEADERS:
            if key == "connection":
                connection_listed.update(
                    token.strip().lower() for token in raw_value.decode("latin-1").split(",")
                )
            elif key == "x-forwarded-for":
                value = raw_value.decode("latin-1")
                forwarded_for = f"{forwarded_for}, {value}" if forwarded_for else value
            else:
                host = raw_value.decode("latin-1")
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
