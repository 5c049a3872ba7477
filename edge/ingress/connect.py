"""The Connect protocol adapter (being written): unary, GET and server streams.

Until it lands it claims nothing, so every request goes on to the other adapters.
"""

from __future__ import annotations

from typing import Any

from edge.config import ConnectConfig
from edge.ingress.asgi import Receive, Scope, Send
from edge.state import StateHolder


class ConnectAdapter:
    scope_types = frozenset({"http"})

    def __init__(self, holder: StateHolder, config: ConnectConfig) -> None:
        self.holder = holder
        self.config = config

    def claim(self, scope: Scope, path: str) -> Any:
        return None

    def route_name(self, claim: Any) -> str | None:
        return None

    def preflight_route(self, scope: Scope, path: str, method: str) -> str | None:
        return None

    async def serve(self, claim: Any, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError
