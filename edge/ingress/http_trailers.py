"""HTTP trailers that end a server stream answered over HTTP/JSON (pure).

A server stream's status is known only at its end, after the response's status line has
gone out with the first message. The stream formats report a late error in-band (the
last NDJSON line, SSE event or array element); a client that can read HTTP trailers also
gets the status there, as gRPC carries it: ``grpc-status``, ``grpc-message``
(percent-encoded as PROTOCOL-HTTP2 says) and the upstream's trailing metadata, named and
filtered as response headers are (``edge.upstream.headers.response_headers``: allowlisted
keys as they are, others as ``Grpc-Trailer-<key>``). For a ``google.api.HttpBody`` stream,
whose body has no framing to carry an error, trailers are the only place for it.

Trailers are sent only when the client asked for them with ``TE: trailers`` and the
server offers the ASGI ``http.response.trailers`` extension (Hypercorn does on HTTP/2 and
HTTP/3, not on HTTP/1.1, and sends them only when the request's ``TE`` value is exactly
``trailers``: the same rule is applied here, so a response promises trailers only when
they will be sent).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from edge.errors import EdgeError, UpstreamStatus
from edge.ingress.grpc_web_reply import encode_grpc_message
from edge.upstream.headers import HeaderPolicy, response_headers

TRAILERS_EXTENSION = "http.response.trailers"
_HEADER_NAME = re.compile(rb"[0-9a-z_.\-]+", re.ASCII)
_HEADER_VALUE = re.compile(rb"[\x20-\x7e\t]*", re.ASCII)

Metadata = Iterable[tuple[str, str | bytes]]


def wants_trailers(scope: Any) -> bool:
    """The client sent ``TE: trailers`` and the server can send trailers on this request."""
    extensions = scope.get("extensions")
    if not extensions or TRAILERS_EXTENSION not in extensions:
        return False
    # Hypercorn's own test, byte for byte: with another TE value it drops the trailers
    return any(name == b"te" and value == b"trailers" for name, value in scope["headers"])


def status_trailers(
    code: int, message: str, trailing: Metadata, policy: HeaderPolicy
) -> list[tuple[bytes, bytes]]:
    """``grpc-status``, ``grpc-message`` (when there is one) and the upstream's trailers.

    A metadata entry that would not make a valid field line (a name or value with
    controls, CR or LF, or non-ASCII) is dropped rather than sent: Hypercorn refuses the
    whole trailer block for one bad field, and the stream could then not end at all.
    """
    out = [(b"grpc-status", str(code if code >= 0 else 2).encode("ascii"))]
    if message:
        out.append((b"grpc-message", encode_grpc_message(message).encode("ascii")))
    for name, value in response_headers((), trailing, policy):
        if _HEADER_NAME.fullmatch(name) and _HEADER_VALUE.fullmatch(value):
            out.append((name, value))
    return out


def error_trailers(error: EdgeError, policy: HeaderPolicy) -> list[tuple[bytes, bytes]]:
    """The trailers of a stream that failed with ``error`` (the message as the client sees
    it in the body; internal text never)."""
    trailing: Metadata = error.trailing_metadata if isinstance(error, UpstreamStatus) else ()
    return status_trailers(error.grpc_code, error.message, trailing, policy)


INTERNAL_TRAILERS = [(b"grpc-status", b"13"), (b"grpc-message", b"internal error")]
