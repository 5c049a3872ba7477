"""When a reload should end an open WebSocket: its route or its policy is not what it was.

A socket lives on the generation it opened on (``edge.state``), with that generation's
route, upstream channel and policy, for as long as it stays open: hours, for a
dashboard. After a reload that changed what the socket would get if it connected now (a
route that now needs a token, a tighter limit, an upstream that moved, a method that is
gone), keeping it would serve the old config indefinitely. So, as
``websocket.reconnect_on_reload`` says, the gateway ends it with close code 1012
(Service Restart, RFC 6455 7.4.1; IANA registry) and an UNAVAILABLE status frame, and
the client reconnects onto the new config; a socket whose route and policy are unchanged
stays open. ``always`` ends every socket on every reload, ``never`` none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge.ingress.asgi import Scope
from edge.ingress.websocket_policy import forget, when_set
from edge.routes import TranscodeRoute
from edge.routing.table import RouteMatch
from edge.state import GatewayState

RECONNECT = "the gateway's configuration changed: reconnect"


def fingerprint(state: GatewayState, route: TranscodeRoute) -> tuple[Any, ...]:
    """What a socket on ``route`` gets from ``state``: its method, upstream and policy."""
    name = route.method.full_name
    upstream = state.config.upstreams.get(route.upstream)
    return (
        name,
        route.template,
        route.upstream,
        route.timeout,
        upstream.model_dump_json() if upstream is not None else None,
        state.pipeline.index.for_route(name),
    )


def fingerprint_at(state: GatewayState, path: str) -> tuple[Any, ...] | None:
    """The fingerprint of the route ``path`` reaches in ``state`` (None: no route)."""
    found = state.routes.ws_table.match("GET", path)
    return fingerprint(state, found.target) if type(found) is RouteMatch else None


def socket_path(scope: Scope) -> str:
    raw_path = scope.get("raw_path")
    return raw_path.decode("latin-1") if raw_path else str(scope["path"])


class ReloadWatch:
    """Calls ``due`` once a reload has made this socket's route or policy differ (or, with
    ``always``, at the first reload); never, with ``never``.

    It listens for its generation's ``replaced`` event through ``when_set`` (no task of
    its own) and, when a reload kept the socket's route and policy, moves on to listen
    for the next one. The socket's fingerprint is computed only when a reload comes, from
    the generation it was last checked against (equal to the one it opened on, or it
    would have been due).
    """

    __slots__ = ("due", "found", "path", "state")

    def __init__(
        self,
        state: GatewayState,
        found: RouteMatch[TranscodeRoute],
        scope: Scope,
        due: Callable[[], None],
    ) -> None:
        self.state = state
        self.found = found
        self.path = socket_path(scope)
        self.due = due
        when_set(state.life.replaced, self._replaced)

    def _replaced(self) -> None:
        previous = self.state
        successor = previous.life.successor
        assert successor is not None
        self.state = successor
        mode = successor.websocket.reconnect_on_reload  # the new config decides
        mine = fingerprint(previous, self.found.target)
        if mode == "always" or (mode == "changed" and fingerprint_at(successor, self.path) != mine):
            self.due()
        else:
            when_set(successor.life.replaced, self._replaced)

    def stop(self) -> None:
        forget(self.state.life.replaced, self._replaced)
