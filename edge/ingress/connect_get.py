"""A Connect unary GET, sans-IO: the message, its codec and compression from the query.

Connect lets a client call a method declared ``idempotency_level = NO_SIDE_EFFECTS``
with GET, the message in the URL, so that a browser or a CDN may cache it; the rules are
the Connect protocol reference's "Unary-Get-Request", checked against connect-es's
``transformConnectPostToGetRequest``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote_plus, unquote_to_bytes

from edge.ingress.connect_wire import (
    Codec,
    CompressionUnsupported,
    ConnectProtocolError,
)
from edge.ingress.grpc_web_wire import UnsupportedMediaType

_URL_SAFE = re.compile(rb"[A-Za-z0-9_\-+/]*", re.ASCII)
_GET_PARAMS = frozenset({"connect", "encoding", "message", "base64", "compression"})


@dataclass(frozen=True, slots=True)
class GetRequest:
    """A unary GET: the codec of ``encoding``, the message bytes, and their compression.

    ``message`` is still compressed when ``compression`` is not ``identity``; the spec
    says never to decompress an empty one.
    """

    codec: Codec
    message: bytes
    compression: str = "identity"


def parse_get_query(
    query_string: bytes | str, *, accept_compression: Iterable[str] = ("identity",)
) -> GetRequest:
    """The message of a Connect GET from its raw (still percent-encoded) query string.

    Parameters may come in any order among unknown ones (the spec says to allow both).
    Refused, naming the parameter: a Connect parameter given twice (two ``message``
    values would let a cache key and the call disagree), ``connect`` other than ``v1``
    (``ConnectProtocolError``); an ``encoding`` missing or other than json/proto
    (``UnsupportedMediaType``, 415, as the spec asks); a ``compression`` not in
    ``accept_compression`` (``CompressionUnsupported``, unimplemented, listing them).

    With ``base64=1`` (other values are ignored, per the spec) the message is URL-safe
    base64, padding optional; the standard alphabet is accepted too, as connect-es does.
    Without it the message is percent-encoded UTF-8 and must decode as UTF-8. A missing
    ``message`` is an empty one.
    """
    raw = query_string.encode("latin-1") if isinstance(query_string, str) else query_string
    params: dict[str, bytes] = {}
    for pair in raw.split(b"&"):
        if not pair:
            continue
        raw_name, _, value = pair.partition(b"=")
        name = unquote_plus(raw_name.decode("latin-1"))
        if name not in _GET_PARAMS:
            continue
        if name in params:
            raise ConnectProtocolError(f"query parameter {name!r} is given more than once")
        params[name] = unquote_to_bytes(value.replace(b"+", b" "))
    version = params.get("connect")
    if version is not None and version != b"v1":
        raise ConnectProtocolError(
            f"query parameter connect must be 'v1': got {version.decode('latin-1')[:20]!r}"
        )
    encoding = params.get("encoding", b"").decode("latin-1")
    if encoding not in ("json", "proto"):
        raise UnsupportedMediaType(
            f"encoding {encoding or '(none)'!r} is not supported: use encoding=json or "
            "encoding=proto"
        )
    codec: Codec = "json" if encoding == "json" else "proto"
    compression = params.get("compression", b"identity").decode("latin-1") or "identity"
    accepted = list(accept_compression)
    if compression != "identity" and compression not in accepted:
        raise CompressionUnsupported(
            f"compression {compression[:40]!r} is not supported: supported are "
            + ", ".join(accepted or ["identity"])
        )
    message = params.get("message", b"")
    if params.get("base64") == b"1":
        message = _decode_url_base64(message)
    else:
        try:
            message.decode("utf-8")
        except UnicodeDecodeError:
            raise ConnectProtocolError(
                "query parameter message is not UTF-8: binary messages need base64=1"
            ) from None
    return GetRequest(codec, message, compression)


def _decode_url_base64(text: bytes) -> bytes:
    """URL-safe base64 with optional padding (standard ``+`` and ``/`` accepted too)."""
    body = text.rstrip(b"=")
    if len(text) - len(body) > 2 or not _URL_SAFE.fullmatch(body) or len(body) % 4 == 1:
        raise ConnectProtocolError("query parameter message is not base64 (base64=1)")
    padded = body + b"=" * (-len(body) % 4)
    try:
        return base64.b64decode(padded.translate(_URL_TO_STD), validate=True)
    except binascii.Error:
        raise ConnectProtocolError("query parameter message is not base64 (base64=1)") from None


_URL_TO_STD = bytes.maketrans(b"-_", b"+/")
