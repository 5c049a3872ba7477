"""The terminal step for proxied routes: one pooled aiohttp session per HTTP upstream.

Each upstream gets one ``aiohttp.ClientSession`` made in ``open()`` and shared by every
request until ``close()``; nothing is made per request. Bodies are streamed both ways:
the request body is an async iterator handed to aiohttp as it arrives, the response body
an async iterator over aiohttp's flow-controlled stream, so the gateway holds a chunk or
two per request whatever the body's size. The session is set up as a proxy needs it:
no cookie jar (one client's cookies must never reach another), no redirects followed,
no decompression, no headers of its own (``User-Agent``, ``Accept*``, ``Content-Type``).

aiohttp was chosen over httpx on measured CPU per request; see docs/proxy.md ("Why
aiohttp, not httpx") and ``benchmarks/proxy_clients.py``.

Failures become ``EdgeError``s here, at the boundary: a refused or dropped connection or
a reply that is not HTTP is a 502 (``BadGateway``), silence beyond the timeout is a 504
(``UpstreamTimeout``), a call after ``close()`` or to an upstream that was never opened
is a 503 (``UpstreamUnavailable``). A failure after the response has started can only be
shown by cutting the response short, which the ingress does.

WebSocket upgrades (``call.protocol == "websocket"``) are opened here too, with the
``websockets`` client, and handed back as an ``UpstreamSocket`` in ``HttpResponse.upgrade``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp
import websockets
from multidict import CIMultiDict
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol
from yarl import URL

from edge.call import Call, HttpRequest, HttpResponse, Reply
from edge.config import HttpUpstreamConfig
from edge.errors import (
    BadGateway,
    ClientDisconnected,
    RequestTimeout,
    UnreachableHttpUpstream,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from edge.upstream.endpoints import Endpoint, EndpointPicker
from edge.upstream.headers import clean_headers

log = logging.getLogger("edge.proxy")

# aiohttp would otherwise add these to every request on its own.
_SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
# A frame from the upstream socket larger than this closes it (1009); Hypercorn's own
# default limit for frames from clients is the same.
_MAX_FRAME_BYTES = 16 * 1024 * 1024
# Response headers Hypercorn always writes itself: the upstream's copies are dropped, as
# nginx does by default, so a client never sees two Date or two Server headers.
_OWN_HEADERS = frozenset((b"date", b"server"))


@dataclass(frozen=True, slots=True)
class _Upstream:
    endpoints: EndpointPicker  # round-robin, failing endpoints ejected for a while
    connect_timeout: float
    session: aiohttp.ClientSession


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
        """Make one session (connection pool) per upstream; call inside the event loop.

        Once: a reload that keeps this terminal (its upstreams unchanged) opens it again.
        """
        if self._upstreams:
            return
        for name, config in self._configs.items():
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=config.max_connections, limit_per_host=0),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=_SKIP_AUTO_HEADERS,
                trust_env=False,
            )
            picker = EndpointPicker(
                [_endpoint(url) for url in config.all_urls], config.eject_after, config.eject_for
            )
            self._upstreams[name] = _Upstream(picker, config.connect_timeout, session)

    async def close(self) -> None:
        upstreams, self._upstreams = self._upstreams, {}
        for upstream in upstreams.values():
            await upstream.session.close()

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
        url = endpoint.base + request.path
        if request.query:
            url += "?" + request.query.decode("latin-1")
        # call.metadata, not the client's raw headers: what the layers left is what goes up
        headers = CIMultiDict(
            (name, value if isinstance(value, str) else value.decode("latin-1"))
            for name, value in call.metadata
        )
        data = await _request_data(request, headers)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=upstream.connect_timeout, sock_read=call.timeout
        )
        try:
            response = await upstream.session.request(
                request.method,
                URL(url, encoded=True),
                headers=headers,
                data=data,
                allow_redirects=False,
                timeout=timeout,
            )
        except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as exc:
            self._connect_failed(call.upstream, upstream, endpoint)
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                raise UpstreamTimeout(
                    f"HTTP upstream {call.upstream!r}: connect timed out"
                ) from exc
            raise UnreachableHttpUpstream(
                f"HTTP upstream {call.upstream!r} could not be reached", internal=_describe(exc)
            ) from exc
        except aiohttp.ServerTimeoutError as exc:
            raise UpstreamTimeout(
                f"HTTP upstream {call.upstream!r} did not answer within {call.timeout}s"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            left = _client_left(exc)
            if left is not None:  # the client hung up mid-upload: not the upstream's doing
                raise left from exc
            raise BadGateway(
                f"HTTP upstream {call.upstream!r} could not be reached", internal=_describe(exc)
            ) from exc
        upstream.endpoints.succeeded(endpoint)
        reply_headers = [
            (n, v) for n, v in clean_headers(response.raw_headers) if n not in _OWN_HEADERS
        ]
        cancel = _Cancel(response)
        return Reply(
            http=HttpResponse(
                response.status, reply_headers, _response_body(response, call, cancel)
            ),
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


async def _request_data(
    request: HttpRequest, headers: CIMultiDict[str]
) -> AsyncIterator[bytes] | None:
    """What aiohttp sends as the body: None when there is none, else the stream itself.

    With a ``Content-Length`` aiohttp sends the stream under that length; without one it
    is sent chunked, but only once a first chunk exists, so a bodyless GET stays bodyless
    (waiting for the first chunk only, never the second, keeps interactive streams going).
    """
    length = headers.get("content-length")
    if length is not None:
        return None if length.strip() == "0" else request.body
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

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.called = False

    def __call__(self) -> None:
        self.called = True
        self.response.close()


async def _response_body(
    response: aiohttp.ClientResponse, call: Call, cancel: _Cancel
) -> AsyncIterator[bytes]:
    """The upstream's body chunk by chunk; the connection goes back to the pool at the end.

    Closed early (the client went away), the connection is closed rather than reused,
    since the rest of the body is still on it.
    """
    finished = False
    try:
        async for chunk in response.content.iter_any():
            yield chunk
        finished = True
    except (aiohttp.ClientError, OSError) as exc:
        if cancel.called:
            raise ClientDisconnected("the client went away mid-response") from exc
        if isinstance(exc, aiohttp.ServerTimeoutError):
            raise UpstreamTimeout(
                f"HTTP upstream {call.upstream!r} went silent for {call.timeout}s mid-body"
            ) from exc
        raise BadGateway(
            f"HTTP upstream {call.upstream!r} failed mid-response", internal=_describe(exc)
        ) from exc
    finally:
        if finished:
            response.release()
        else:
            response.close()


async def _no_body() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover - makes this an async generator


def _client_left(exc: BaseException) -> ClientDisconnected | RequestTimeout | None:
    """The client's own failure aiohttp wrapped, when sending the request body failed so.

    A client that hung up or stalled mid-upload is not the upstream's doing: it must reach
    the client as itself (499, 408), and never count against the upstream's breaker.
    """
    seen: BaseException | None = exc
    for _ in range(10):  # causes are short chains; never loop on a cycle
        if seen is None:
            return None
        if isinstance(seen, ClientDisconnected | RequestTimeout):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
