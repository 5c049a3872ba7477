"""One rooted hierarchy for everything the gateway itself refuses or fails at.

Each error carries the gRPC code it stands for; the HTTP status follows from the shared
status table, so an error raised anywhere renders the same on every protocol. Backend
exceptions (grpc, JSON, protobuf) are translated into these at the boundary that sees them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from edge.transcode.status import http_status_for


class EdgeError(Exception):
    """Base of the gateway's own errors; rendered as a google.rpc.Status body."""

    grpc_code: int = 2  # UNKNOWN
    http_status: int | None = None  # None: derive from grpc_code
    # no connection to the upstream could be made, so nothing reached it (the breaker
    # then probes again after its short unreachable_cooldown)
    unreachable: bool = False

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        internal: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.headers = headers or {}
        # what the operator needs and the client must not see (addresses, exception
        # text): logged with the request id by the ingress, never rendered
        self.internal = internal

    @property
    def status(self) -> int:
        return self.http_status if self.http_status is not None else http_status_for(self.grpc_code)


class ConfigError(EdgeError):
    """The configuration file or environment is invalid; raised at start-up only."""

    grpc_code = 9  # FAILED_PRECONDITION


class BadRequest(EdgeError):
    """Malformed JSON, wrong field types, unknown fields or query parameters."""

    grpc_code = 3  # INVALID_ARGUMENT


class MethodNotAllowed(EdgeError):
    grpc_code = 12  # UNIMPLEMENTED, as grpc-gateway reports 405
    http_status = 405


class BodyTooLarge(EdgeError):
    grpc_code = 8  # RESOURCE_EXHAUSTED
    http_status = 413


class RequestTimeout(EdgeError):
    """The client stopped sending its request body, or sends it too slowly (408)."""

    grpc_code = 4  # DEADLINE_EXCEEDED
    http_status = 408


class ClientDisconnected(EdgeError):
    """The client went away mid-request; nobody reads the answer (499, as nginx logs it)."""

    grpc_code = 1  # CANCELLED


class ClientStalled(ClientDisconnected):
    """The client stopped reading: a write made no progress for ``server.send_timeout``."""


class UpstreamUnavailable(EdgeError):
    """The upstream cannot be reached (connection refused, DNS, TLS handshake)."""

    grpc_code = 14  # UNAVAILABLE


# Where a gRPC client library names an upstream in its own words: "ipv4:10.0.0.7:50051",
# "127.0.0.1:50051", "[::1]:50051", "unix:/run/x.sock", "dns:///svc.internal:443".
_ADDRESS = re.compile(
    r"(?:(?:ipv4|ipv6|dns|unix|unix-abstract):[^\s,;'\"()]*[^\s,;'\"():])"
    r"|(?:\[[0-9A-Fa-f:.]+\](?::\d+)?)"
    r"|(?:\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b)"
    r"|(?:\b[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+:\d{2,5}\b)"
)


def scrub_addresses(text: str) -> str:
    """``text`` with network addresses replaced by ``<upstream>``."""
    return _ADDRESS.sub("<upstream>", text)


class UpstreamStatus(EdgeError):
    """The upstream answered with a non-OK gRPC status; passed through to the client.

    The raw metadata travels with it: trailers become response headers and the
    ``grpc-status-details-bin`` trailer becomes the ``details`` of the error body.
    """

    def __init__(
        self,
        code: int,
        message: str,
        *,
        initial_metadata: Sequence[tuple[str, str | bytes]] = (),
        trailing_metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> None:
        # A status the client library made up itself ("failed to connect to all
        # addresses; last error: ... 10.0.0.7:50051") names the upstream's address; a
        # client learns the code and the gist, the operator the address, from the log.
        scrubbed = scrub_addresses(message)
        super().__init__(scrubbed, internal=message if scrubbed != message else None)
        self.grpc_code = code
        self.initial_metadata = initial_metadata
        self.trailing_metadata = trailing_metadata

    def status_details_bin(self) -> bytes | None:
        for key, value in self.trailing_metadata:
            if key == "grpc-status-details-bin" and isinstance(value, bytes):
                return value
        return None


class UpstreamUnreachable(UpstreamStatus):
    """UNAVAILABLE because no connection to the upstream could be made: nothing was sent.

    A circuit breaker opened by these probes again after ``unreachable_cooldown``, not its
    full cooldown: the probe costs a connect attempt, and an upstream that is back is used
    at once instead of seconds later.
    """

    unreachable = True


class BadGateway(EdgeError):
    """An HTTP upstream refused the connection, dropped it, or did not answer in HTTP.

    502, as nginx and Envoy answer; the gRPC code is UNAVAILABLE, like any unreachable
    upstream, so clients that retry on code 14 retry this too.
    """

    grpc_code = 14  # UNAVAILABLE
    http_status = 502


class UnreachableHttpUpstream(BadGateway):
    """No connection to an HTTP upstream could be made (refused, no route, DNS)."""

    unreachable = True


class UpstreamTimeout(EdgeError):
    """An HTTP upstream did not connect, or stayed silent, for longer than the route allows."""

    grpc_code = 4  # DEADLINE_EXCEEDED -> 504


class Unauthenticated(EdgeError):
    """No credentials, or credentials that do not verify (401 with WWW-Authenticate)."""

    grpc_code = 16  # UNAUTHENTICATED


class PermissionDenied(EdgeError):
    """Valid credentials that do not grant this route (403)."""

    grpc_code = 7  # PERMISSION_DENIED


class RateLimited(EdgeError):
    """Over a rate limit (429 with Retry-After and RateLimit-* headers)."""

    grpc_code = 8  # RESOURCE_EXHAUSTED


class CircuitOpen(EdgeError):
    """The upstream's breaker is open: refused at once, without calling it (503)."""

    grpc_code = 14  # UNAVAILABLE


class Overloaded(EdgeError):
    """Too many calls in flight to this upstream (503), as Envoy's circuit breakers."""

    grpc_code = 14  # UNAVAILABLE


class Unimplemented(EdgeError):
    """A call to a method the gateway does not route: UNIMPLEMENTED, as a gRPC server says
    for a method it does not have (gRPC-Web and Connect callers)."""

    grpc_code = 12  # UNIMPLEMENTED


class InternalError(EdgeError):
    """A gateway bug or an impossible state: 500 with code 13, the details only in the log."""

    grpc_code = 13  # INTERNAL
