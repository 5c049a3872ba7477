"""The terminal step for proxied routes: one pool of HTTP/1.1 connections per upstream.

Each upstream gets one ``Http1Pool`` (``edge.upstream.http1_pool``) made in ``open()``
and shared by every request until ``close()``; what each endpoint's URL means (address,
TLS, ``Host``, path prefix, credentials) is worked out there too, so a request only
looks it up. Bodies are streamed both ways: the request body is sent as it arrives, the
response body read as the client takes it (the socket stops being read when a client is
slow), so the gateway holds a chunk or two per request whatever the body's size. The
client does what a proxy needs and nothing else: no cookies, no redirects, no
decompression, no headers of its own.

It replaced aiohttp's client at stop 24, on measured CPU per request; see docs/proxy.md
("The upstream client") and ``benchmarks/proxy_clients.py``.

Failures become ``EdgeError``s here, at the boundary: a refused or dropped connection or
a reply that is not HTTP is a 502 (``BadGateway``), silence beyond the timeout is a 504
(``UpstreamTimeout``), a call after ``close()`` or to an upstream that was never opened
is a 503 (``UpstreamUnavailable``). A failure after the response has started can only be
shown by cutting the response short, which the ingress does.

WebSocket upgrades (``call.protocol == "websocket"``) are opened here too, with the
``websockets`` client, and handed back as an ``UpstreamSocket`` in ``HttpResponse.upgrade``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from edge.call import Call, HttpRequest, HttpResponse, Reply
from edge.config import HttpUpstreamConfig
from edge.errors import (
    BadGateway,
    BadRequest,
    ClientDisconnected,
    UnreachableHttpUpstream,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from edge.upstream.endpoints import Endpoint, EndpointPicker
from edge.upstream.headers import clean_headers
from edge.upstream.http1_client import (
    BodyLengthMismatch,
    Http1Pool,
    Http1Response,
    PoolFull,
    ReadTimeout,
    UpstreamClosed,
    exchange,
)
from edge.upstream.http1_pool import Where
from edge.upstream.http1_wire import UpstreamProtocolError, request_head

log = logging.getLogger("edge.proxy")

# A frame from the upstream socket larger than this closes it (1009); Hypercorn's own
# default limit for frames from clients is the same.
_MAX_FRAME_BYTES = 16 * 1024 * 1024
# Response headers Hypercorn always writes itself: the upstream's copies are dropped, as
# nginx does by default, so a client never sees two Date or two Server headers.
_OWN_HEADERS = frozenset((b"date", b"server"))


@dataclass(frozen=True, slots=True)
class _Target:
    """One endpoint's URL, read once: where to connect and what the request head says."""

    where: Where  # host, port, TLS
    host: bytes  # the Host field: the URL's host[:port], without credentials
    prefix: bytes  # the URL's path, put before every request's path
    authorization: bytes | None  # Basic credentials from the URL's userinfo


def _target(url: str) -> _Target:
    parts = urlsplit(url.rstrip("/"))
    tls = parts.scheme.lower() == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if tls else 80)
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = b"Basic " + base64.b64encode(pair.encode("latin-1"))
    netloc = parts.netloc.rpartition("@")[2]
    return _Target(
        (host, port, tls), netloc.encode("idna"), parts.path.encode("latin-1"), authorization
    )


@dataclass(frozen=True, slots=True)
class _Upstream:
    endpoints: EndpointPicker  # round-robin, failing endpoints ejected for a while
    connect_timeout: float
    pool: Http1Pool
    targets: dict[str, _Target]  # by Endpoint.base


def _endpoint(url: str) -> Endpoint:
    base = url.rstrip("/")
    scheme, rest = base.split("://", 1)
    ws_scheme = "wss" if scheme.lower() == "https" else "ws"
    return Endpoint(base, f"{ws_scheme}://{rest}")


class UpstreamSocket:
    """An open WebSocket to the upstream, as the ingress relays it.

    ``recv`` returns a text (``str``) or binary (``bytes``) frame, or raises
    ``ConnectionClosed`` (``websockets.exceptions``), after which ``close_code`` and
    ``close_reason`` say how the upstream closed.
    """

    __slots__ = ("_connection",)

    def __init__(self, connection: ClientConnection) -> None:
        self._connection = connection

    @property
    def subprotocol(self) -> str | None:
        return self._connection.subprotocol

    async def recv(self) -> str | bytes:
        return await self._connection.recv()

    async def send(self, frame: str | bytes) -> None:
        await self._connection.send(frame)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._connection.close(code, reason)

    @property
    def close_code(self) -> int | None:
        received = self._connection.protocol.close_rcvd
        return received.code if received is not None else None

    @property
    def close_reason(self) -> str:
        received = self._connection.protocol.close_rcvd
        return received.reason if received is not None else ""


class HttpProxyTerminal:
    """Sends a proxied ``Call`` to its HTTP upstream and answers with ``Reply(http=...)``."""

    def __init__(self, upstreams: Mapping[str, HttpUpstreamConfig]) -> None:
        self._configs = dict(upstreams)
        self._upstreams: dict[str, _Upstream] = {}

    async def open(self) -> None:
        """Make one connection pool per upstream; call inside the event loop.

        Once: a reload that keeps this terminal (its upstreams unchanged) opens it again.
        """
        if self._upstreams:
            return
        for name, config in self._configs.items():
            endpoints = [_endpoint(url) for url in config.all_urls]
            targets = {endpoint.base: _target(endpoint.base) for endpoint in endpoints}
            picker = EndpointPicker(endpoints, config.eject_after, config.eject_for)
            pool = Http1Pool(config.max_connections, config.connect_timeout)
            self._upstreams[name] = _Upstream(picker, config.connect_timeout, pool, targets)

    async def close(self) -> None:
        upstreams, self._upstreams = self._upstreams, {}
        for upstream in upstreams.values():
            upstream.pool.close()
        await asyncio.sleep(0)  # the aborted connections' sockets close on the next turn

    async def __call__(self, call: Call) -> Reply:
        upstream = self._upstreams.get(call.upstream)
        if upstream is None:
            raise UpstreamUnavailable(f"HTTP upstream {call.upstream!r} is not open")
        request = call.request
        assert isinstance(request, HttpRequest)
        if call.protocol == "websocket":
            return await self._open_socket(upstream, call, request)
        return await self._send(upstream, call, request)

    async def _send(self, upstream: _Upstream, call: Call, request: HttpRequest) -> Reply:
        endpoint = upstream.endpoints.pick(time.monotonic())
        target = upstream.targets[endpoint.base]
        path = target.prefix + request.path.encode("latin-1")
        if request.query:
            path += b"?" + request.query
        # call.metadata, not the client's raw headers: what the layers left is what goes up
        fields: list[tuple[bytes, bytes]] = []
        length: bytes | None = None
        for name, value in call.metadata:
            raw = value if type(value) is bytes else str(value).encode()
            if name == "content-length":
                length = raw
            elif name == "authorization" and target.authorization is not None:
                continue  # the upstream URL's own credentials replace a forwarded one
            fields.append((name.encode("latin-1"), raw))
        if target.authorization is not None:
            fields.append((b"authorization", target.authorization))
        declared = None
        if length is not None:
            if not length.strip().isdigit():
                raise BadRequest("Content-Length is not a number")
            declared = int(length)
        body = await _request_body(request, declared)
        if body is not None and declared is None:
            fields.append((b"transfer-encoding", b"chunked"))
        try:
            head = request_head(request.method, path, target.host, fields)
        except ValueError as exc:
            raise BadRequest("a request header holds a forbidden character") from exc
        try:
            response = await exchange(
                upstream.pool, target.where, request.method, head, body, declared, call.timeout
            )
        except TimeoutError as exc:  # connecting took longer than connect_timeout
            self._connect_failed(call.upstream, upstream, endpoint)
            raise UpstreamTimeout(f"HTTP upstream {call.upstream!r}: connect timed out") from exc
        except BodyLengthMismatch as exc:
            raise BadRequest("the request body does not match its Content-Length") from exc
        except PoolFull as exc:
            raise UpstreamUnavailable(
                f"HTTP upstream {call.upstream!r}: all {upstream.pool.limit} connections busy"
            ) from exc
        except ReadTimeout as exc:
            raise UpstreamTimeout(
                f"HTTP upstream {call.upstream!r} did not answer within {call.timeout}s"
            ) from exc
        except (UpstreamClosed, UpstreamProtocolError) as exc:
            if upstream.pool.closed:
                raise UpstreamUnavailable(f"HTTP upstream {call.upstream!r} is closing") from exc
            raise BadGateway(
                f"HTTP upstream {call.upstream!r} could not be reached", internal=_describe(exc)
            ) from exc
        except OSError as exc:  # refused, unreachable, reset, or a failed TLS handshake
            if not isinstance(exc, ssl.SSLError):
                self._connect_failed(call.upstream, upstream, endpoint)
            raise UnreachableHttpUpstream(
                f"HTTP upstream {call.upstream!r} could not be reached", internal=_describe(exc)
            ) from exc
        upstream.endpoints.succeeded(endpoint)
        reply_headers = [
            (n, v) for n, v in clean_headers(response.head.headers) if n not in _OWN_HEADERS
        ]
        cancel = _Cancel(response)
        return Reply(
            http=HttpResponse(response.status, reply_headers, _ProxiedBody(response, call, cancel)),
            cancel=cancel,
        )

    def _connect_failed(self, name: str, upstream: _Upstream, endpoint: Endpoint) -> None:
        if upstream.endpoints.failed(endpoint, time.monotonic()):
            log.warning(
                "HTTP upstream %r: ejecting %s for %gs after connect failures",
                name,
                endpoint.base,
                upstream.endpoints.eject_for,
            )

    async def _open_socket(self, upstream: _Upstream, call: Call, request: HttpRequest) -> Reply:
        endpoint = upstream.endpoints.pick(time.monotonic())
        url = endpoint.ws_base + request.path
        if request.query:
            url += "?" + request.query.decode("latin-1")
        subprotocols: list[Subprotocol] = []
        headers: list[tuple[str, str]] = []
        for name, raw in call.metadata:
            value = raw if isinstance(raw, str) else raw.decode("latin-1")
            if name == "sec-websocket-protocol":
                subprotocols.extend(Subprotocol(p.strip()) for p in value.split(",") if p.strip())
            elif not name.startswith("sec-websocket-") and name != "host":
                headers.append((name, value))
        try:
            connection = await websockets.connect(
                url,
                additional_headers=headers,
                subprotocols=subprotocols or None,
                user_agent_header=None,
                compression=None,
                open_timeout=call.timeout or upstream.connect_timeout,
                max_size=_MAX_FRAME_BYTES,
            )
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"HTTP upstream {call.upstream!r}: WebSocket handshake timed out"
            ) from exc
        except (OSError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
            if isinstance(exc, OSError):  # could not connect: count it against the endpoint
                self._connect_failed(call.upstream, upstream, endpoint)
            raise BadGateway(
                f"HTTP upstream {call.upstream!r}: WebSocket handshake failed",
                internal=_describe(exc),
            ) from exc
        upstream.endpoints.succeeded(endpoint)
        socket = UpstreamSocket(connection)
        return Reply(http=HttpResponse(101, [], _no_body(), upgrade=socket))


async def _request_body(request: HttpRequest, length: int | None) -> AsyncIterator[bytes] | None:
    """What is sent as the body: None when there is none, else the stream itself.

    With a ``Content-Length`` the stream is sent under that length; without one it is
    sent chunked, but only once a first chunk exists, so a bodyless GET stays bodyless
    (waiting for the first chunk only, never the second, keeps interactive streams going).
    """
    if length == 0:
        async for _ in request.body:  # ends at once; read so the ingress knows it has ended
            pass
        return None
    if length is not None:
        return request.body
    first = await anext(request.body, None)
    if first is None:
        return None
    return _prepend(first, request.body)


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


class _Cancel:
    """``Reply.cancel`` for a proxied response: close it, and remember that we did.

    Closing the response makes its body fail like a broken upstream would; the flag is
    how that failure is told apart and reported as the client's doing, which must not
    count against the upstream (its breaker, its error metrics).
    """

    __slots__ = ("called", "response")

    def __init__(self, response: Http1Response) -> None:
        self.response = response
        self.called = False

    def __call__(self) -> None:
        self.called = True
        self.response.close()


class _ProxiedBody:
    """The upstream's body chunk by chunk, its failures as the gateway's errors.

    A class, not a generator, so that ``aclose`` before the first chunk still closes the
    response (a generator that never started runs no ``finally``); read to its end, the
    connection has already gone back to the pool.
    """

    __slots__ = ("_body", "_call", "_cancel", "_response")

    def __init__(self, response: Http1Response, call: Call, cancel: _Cancel) -> None:
        self._response = response
        self._body = response.body(call.timeout)
        self._call = call
        self._cancel = cancel

    def __aiter__(self) -> _ProxiedBody:
        return self

    async def aclose(self) -> None:
        self._response.close()  # a no-op once the body is read

    async def __anext__(self) -> bytes:
        try:
            return await self._body.__anext__()
        except (UpstreamClosed, UpstreamProtocolError, OSError) as exc:
            call = self._call
            if self._cancel.called:
                raise ClientDisconnected("the client went away mid-response") from exc
            raise BadGateway(
                f"HTTP upstream {call.upstream!r} failed mid-response", internal=_describe(exc)
            ) from exc
        except ReadTimeout as exc:
            call = self._call
            raise UpstreamTimeout(
                f"HTTP upstream {call.upstream!r} went silent for {call.timeout}s mid-body"
            ) from exc
        except BodyLengthMismatch as exc:
            raise BadRequest("the request body does not match its Content-Length") from exc


async def _no_body() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover - makes this an async generator


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
