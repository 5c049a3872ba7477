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
  the ``-`` spelling of a header the gateway sets.

Refusals are 400 with a ``google.rpc.Status`` body (a refused handshake for WebSockets).
The common case (a clean path, no underscores) costs one regex search and one pass over
the header names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from edge.ingress.asgi import ASGIApp, Receive, Scope, Send, refuse_handshake, send_response
from edge.routing.normalize import BadPath, normalize_path
from edge.transcode.response import status_body

log = logging.getLogger("edge.guard")


@dataclass(frozen=True, slots=True)
class RequestRules:
    merge_slashes: bool = True
    underscores: Literal["drop", "reject", "allow"] = "drop"


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
