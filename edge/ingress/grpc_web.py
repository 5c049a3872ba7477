"""The gRPC-Web adapter (being written): ``application/grpc-web*`` at a method's gRPC path.

Until it lands it claims nothing, so every request goes on to the other adapters.
"""

from __future__ import annotations

from typing import Any

from edge.ingress.asgi import Receive, Scope, Send
from edge.state import StateHolder


class GrpcWebAdapter:
    scope_types = frozenset({"http"})

    def __init__(self, holder: StateHolder) -> None:
        self.holder = holder

    def claim(self, scope: Scope, path: str) -> Any:
        return None

    def route_name(self, claim: Any) -> str | None:
        return None

    def preflight_route(self, scope: Scope, path: str, method: str) -> str | None:
        return None

    async def serve(self, claim: Any, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError
