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
* refuses several ``Authorization`` headers: one is verified, and another could ride
  along to an upstream that reads the other (with ``auth.forward_authorization``);
* bounds the time a request body may take (an idle timeout between reads and a minimum
  rate), answering 408, so a client that stops sending cannot hold a connection for ever;
* discards the rest of a request body that an answer came before (an error on the first
  line of a client stream, a 401, an upstream that answered at once), so that the answer
  can end at all (see ``_Body``).

Refusals are 400 with a ``google.rpc.Status`` body (a refused handshake for WebSockets).
The common case (a clean path, no underscores) costs one regex search and one pass over
the header names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from edge.errors import BadRequest, RequestTimeout
from edge.ingress.asgi import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
)
from edge.ingress.render import refuse_handshake, send_error
from edge.ingress.steps import start_step
from edge.routing.normalize import BadPath, normalize_path

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

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # not a coroutine: it returns the app's, so a request (and an open WebSocket, for
        # its whole life) holds one frame less
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            return self.app(scope, receive, send)
        try:
            scope = self._guarded(scope)
        except (BadPath, Refused) as refused:
            return _refuse(scope, receive, send, str(refused))
        if kind == "http" and _has_body(scope):
            body = _Body(receive, send, self.rules.body_idle_timeout, self.rules.body_min_rate)
            receive, send = body.receive, body.send
        return self.app(scope, receive, send)

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
        authorizations = 0
        for name, value in headers:
            if b"_" in name:
                underscored = True
            elif name == b"content-length":
                lengths.add(value.strip())
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"authorization":
                authorizations += 1
        if authorizations > 1:  # a singleton field (RFC 9110 11.6.2): which one was checked?
            raise Refused("several Authorization headers")
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


def _has_body(scope: Scope) -> bool:
    """Whether the request may carry a body (HTTP/2 says so in no header: assume it may)."""
    length: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length":
            length = value
    if length is not None:
        return length != b"0"
    return scope.get("http_version") not in ("1.0", "1.1")


# How long an answer that came before the end of its request body waits for the rest to
# be discarded; in practice the connection (HTTP/1.1) or the stream (h2) ends as soon as
# the answer does, and the wait ends with it.
DISCARD_SECONDS = 10.0


class _Body:
    """A request body's ``receive`` and the response's ``send``, as the app sees them.

    **Time.** Hypercorn never times out a request body, so a client that sends headers and
    a ``Content-Length`` and then nothing (or a drip) holds its connection and the handler
    for ever. Every ingress reads the body through ``receive``, so bounding it here bounds
    them all; the read that times out raises ``RequestTimeout`` (408) in the reader, which
    answers like any other error. Once the body has ended, ``receive`` is passed through
    untouched (the disconnect watchers wait on it for as long as the call lasts).

    **Answers before the body's end.** Hypercorn hands body chunks to the app through a
    queue of ten; when the app answers without reading the rest, the queue fills, and the
    last ``send`` of the answer then blocks for ever: ending the answer makes Hypercorn
    put ``http.disconnect`` on that full queue, from inside the app's own ``send`` (a task
    and a socket lost for good, per request; an attack pass left 297 of 300 stuck). So
    the message that ends such an answer is sent while a task discards what is left of
    the body; the connection (HTTP/1.1) or stream (h2) then ends, the discarding task sees
    the disconnect, and the request is over.
    """

    __slots__ = ("_done", "_idle", "_inner", "_min_rate", "_received", "_send", "_started")

    def __init__(
        self, inner: Receive, send: Send, idle: float | None, min_rate: int | None
    ) -> None:
        self._inner = inner
        self._send = send
        self._idle = idle
        self._min_rate = min_rate
        self._done = False
        self._received = 0
        self._started = asyncio.get_running_loop().time()

    async def receive(self) -> Message:
        if self._done or self._idle is None:
            message = await self._inner()
            if not self._done:
                self._done = message["type"] != "http.request" or not message.get("more_body")
            return message
        # started by hand (edge.ingress.steps): a body already in (a unary request's,
        # nearly always) cannot have stalled, and pays for no timeout (about 4 us)
        done, pending = start_step(self._inner())
        message = pending if done else await self._stalling(pending)
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

    async def _stalling(self, pending: Awaitable[Message]) -> Message:
        """``pending`` under the idle timeout."""
        assert self._idle is not None
        try:
            async with asyncio.timeout(self._idle):
                return await pending
        except TimeoutError:
            raise RequestTimeout(
                f"the request body stalled for {self._idle:g}s; send it without pauses"
            ) from None

    async def send(self, message: Message) -> None:
        if self._done or not _ends_response(message):
            await self._send(message)
            return
        discarding = asyncio.get_running_loop().create_task(self._discard_rest())
        try:
            await self._send(message)
        finally:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DISCARD_SECONDS):
                    await discarding  # cancelled with the wait when it runs out

    async def _discard_rest(self) -> None:
        while True:
            message = await self._inner()
            if message["type"] != "http.request" or not message.get("more_body", False):
                self._done = True
                return


def _ends_response(message: Message) -> bool:
    kind = message["type"]
    if kind == "http.response.body":
        return not message.get("more_body", False)
    return kind == "http.response.trailers" and not message.get("more_trailers", False)


async def _refuse(scope: Scope, receive: Receive, send: Send, message: str) -> None:
    error = BadRequest(message)
    info = scope.get("edge")
    if info is not None:
        info["grpc_code"] = error.grpc_code
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await refuse_handshake(scope, send, error)
    else:
        await send_error(send, error)
