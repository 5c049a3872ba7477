"""The first gateway step every request passes: one path, one framing, one set of header names.

A pure ASGI layer (a transport concern) in front of every ingress, so the transcoding
routes, the WebSocket bridge, the proxy and Quart's own routes (admin, health) all see the
same request. It

* normalises the path (``edge.routing.normalize``) and rewrites ``raw_path`` and ``path``
  to that form, so what is matched is what is forwarded;
* refuses ``Content-Length`` together with ``Transfer-Encoding`` (RFC 9112 6.3: a
  request-smuggling shape that a proxy must not pass on; Envoy refuses it too), and
  several ``Content-Length`` values that disagree;
* drops (or refuses) header names holding ``_``, which CGI-style upstreams would read as
  the ``-`` spelling of a header the gateway sets;
* bounds the time a request body may take (an idle timeout between reads and a minimum
  rate), answering 408, so a client that stops sending cannot hold a connection for ever.

Refusals are 400 with a ``google.rpc.Status`` body (a refused handshake for WebSockets).
The common case (a clean path, no underscores) costs one regex search and one pass over
the header names.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from edge.errors import RequestTimeout
from edge.ingress.asgi import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    refuse_handshake,
    send_response,
)
from edge.routing.normalize import BadPath, normalize_path
from edge.transcode.response import status_body

log = logging.getLogger("edge.guard")


@dataclass(frozen=True, slots=True)
class RequestRules:
    merge_slashes: bool = True
    underscores: Literal["drop", "reject", "allow"] = "drop"
    body_idle_timeout: float | None = 20.0  # seconds between two reads of a request body
    body_min_rate: int | None = 256  # bytes per second, judged after body_idle_timeout


class Refused(ValueError):
    """A request the guard will not pass on; the message is for the client."""


class RequestGuardASGI:
    def __init__(self, app: ASGIApp, rules: RequestRules) -> None:
        self.app = app
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        try:
            scope = self._guarded(scope)
        except (BadPath, Refused) as refused:
            await _refuse(scope, receive, send, str(refused))
            return
        idle = self.rules.body_idle_timeout
        if idle is not None and kind == "http" and _has_body(scope["headers"]):
            receive = _BodyClock(receive, idle, self.rules.body_min_rate).receive
        await self.app(scope, receive, send)

    def _guarded(self, scope: Scope) -> Scope:
        """The scope with its path normalised and its headers cleaned; raises when refused."""
        raw = scope.get("raw_path")
        if raw:
            text = raw.decode("latin-1").partition("?")[0]
            path = normalize_path(text, merge_slashes=self.rules.merge_slashes)
            if path != text:
                scope = dict(scope)
                scope["raw_path"] = path.encode("ascii")
                scope["path"] = unquote(path)
        headers = scope["headers"]
        underscored = False
        lengths: set[bytes] = set()
        chunked = False
        for name, value in headers:
            if b"_" in name:
                underscored = True
            elif name == b"content-length":
                lengths.add(value.strip())
            elif name == b"transfer-encoding":
                chunked = True
        if lengths and (chunked or len(lengths) > 1):
            raise Refused(
                "Content-Length with Transfer-Encoding"
                if chunked
                else "several different Content-Length values"
            )
        if underscored and self.rules.underscores != "allow":
            if self.rules.underscores == "reject":
                raise Refused("header names with underscores are not accepted")
            scope = dict(scope)
            scope["headers"] = [(n, v) for n, v in headers if b"_" not in n]
        return scope


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False


class _BodyClock:
    """``receive`` with a deadline on each read of the request body, and a minimum rate.

    Hypercorn never times out a request body, so a client that sends headers and a
    ``Content-Length`` and then nothing (or a drip) holds its connection and the handler
    for ever. Every ingress reads the body through ``receive``, so bounding it here bounds
    them all; the read that times out raises ``RequestTimeout`` (408) in the reader, which
    answers like any other error. Once the body has ended, ``receive`` is passed through
    untouched (the disconnect watchers wait on it for as long as the call lasts).
    """

    __slots__ = ("_done", "_idle", "_inner", "_min_rate", "_received", "_started")

    def __init__(self, inner: Receive, idle: float, min_rate: int | None) -> None:
        self._inner = inner
        self._idle = idle
        self._min_rate = min_rate
        self._done = False
        self._received = 0
        self._started = asyncio.get_running_loop().time()

    async def receive(self) -> Message:
        if self._done:
            return await self._inner()
        try:
            async with asyncio.timeout(self._idle):
                message = await self._inner()
        except TimeoutError:
            raise RequestTimeout(
                f"the request body stalled for {self._idle:g}s; send it without pauses"
            ) from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self._done = True
            return message
        self._received += len(message.get("body", b""))
        if self._min_rate is not None:
            elapsed = asyncio.get_running_loop().time() - self._started
            if elapsed > self._idle and self._received < self._min_rate * elapsed:
                raise RequestTimeout(
                    f"the request body arrives slower than {self._min_rate} bytes/s"
                )
        return message


async def _refuse(scope: Scope, receive: Receive, send: Send, message: str) -> None:
    body = status_body(3, message)
    info = scope.get("edge")
    if info is not None:
        info["grpc_code"] = 3
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await refuse_handshake(scope, send, 400, body)
    else:
        await send_response(send, 400, body)
