"""The protocol-neutral values that flow through the pipeline.

Every ingress (HTTP view, WebSocket handler, proxy) turns its request into a ``Call``;
every terminal step answers with a ``Reply`` or raises an ``EdgeError``. Policy layers
see only these two types, which is why no policy is ever written twice for two protocols.
What a layer adds to the client's response (``RateLimit-*``) it puts on the call
(``Call.reply_headers``), not on the reply: a layer that decides before the upstream is
called is then done before it, and costs no coroutine waiting for the reply.

Streams are values too: a client stream is an async iterator in ``Call.request``, a server
stream an async iterator in ``Reply.stream``. A layer that must see how a stream ended
(a breaker, a metric) wraps the iterator; nothing is buffered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from google.protobuf.message import Message

from edge.descriptors.registry import MethodInfo

# what a call sends upstream: gRPC metadata, or a proxied request's headers ("-bin" keys
# carry bytes); mutable, so that the layers can strip and add
Metadata = list[tuple[str, str | bytes]]
MetadataPairs = Sequence[tuple[str, str | bytes]]


@dataclass(slots=True)
class HttpRequest:
    """A proxied request: the body is streamed, never buffered.

    Its headers are the call's ``metadata`` (cleaned of hop-by-hop headers by the ingress),
    so what the policy layers strip or add is exactly what reaches the upstream.
    """

    method: str
    path: str  # the path to send upstream (after prefix stripping / rewriting), still encoded
    query: bytes
    body: AsyncIterator[bytes]


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: AsyncIterator[bytes]
    # a relayed WebSocket upgrade (status 101): the open upstream socket (the HTTP proxy
    # terminal's UpstreamSocket), which the ingress relays frames to and from
    upgrade: Any = None


@dataclass(slots=True)
class Call:
    upstream: str
    route: str  # stable name for limits, breakers and logs (the gRPC method's full name)
    metadata: Metadata
    timeout: float | None  # seconds; None means no deadline
    method: MethodInfo | None = None  # the gRPC method, for transcoded calls
    # a Message, an AsyncIterator[Message] for client-streaming methods, or an HttpRequest
    request: Any = None
    protocol: str = "http"  # "http", "websocket", "grpc-web" or "connect"
    client: str | None = None  # peer address, for limits and logs
    # the client's own request (WebSocket: handshake) headers, for layers that need more
    # than the forwarded metadata (API keys, limits keyed on a header, X-Forwarded-For)
    headers: Sequence[tuple[bytes, bytes]] = ()
    query: bytes = b""
    token: str | None = None  # the bearer token, wherever this protocol carries it
    # who the call was authenticated as (the token's ``sub``), set by the auth layer: for
    # the access log and metrics, which read it here rather than in a layer's state
    subject: str | None = None
    state: dict[str, Any] = field(default_factory=dict)  # scratch space for layers
    # response headers from the layers (RateLimit-*), added by every HTTP ingress to a
    # successful reply: set before the call goes on, so that a layer that decides at once
    # hands back the rest of the chain's awaitable with no coroutine of its own
    reply_headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(slots=True)
class Reply:
    message: Message | None = None  # unary and client-streaming methods
    stream: AsyncIterator[Message] | None = None  # server and bidi streaming methods
    initial_metadata: MetadataPairs = ()
    # for streams, filled in by the terminal once the stream has ended
    trailing_metadata: MetadataPairs = ()
    cancel: Callable[[], object] | None = None  # stops the upstream call at once
    http: HttpResponse | None = None  # proxied calls


class Terminal(Protocol):
    """The last step of the pipeline: owns upstream connections for the app's lifetime.

    The contract the gRPC dispatch fulfils, and any stand-in for it (the benchmarks' canned
    upstream, the tests' fakes): ``open`` is called from inside the running loop with the
    routed methods, before the first call and again after a reload (connections belong to
    that loop); ``close`` once at shutdown; a call answers with a ``Reply`` or raises an
    ``EdgeError``.
    """

    def open(self, routes: Iterable[tuple[str, MethodInfo]]) -> None: ...

    async def close(self) -> None: ...

    async def __call__(self, call: Call) -> Reply: ...
