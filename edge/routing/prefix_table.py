"""Proxy routes by path prefix, host and method (pure): the plain proxy's route table.

Routes are compiled once into a dict keyed by prefix; a request walks its own path's
segment prefixes from the longest down (``/a/b/c``, ``/a/b``, ``/a``, the root), one dict
lookup each, so matching costs the path's depth, not the number of routes, and a prefix
only ever matches whole segments (``/api`` matches ``/api`` and ``/api/x``, never
``/apix``). Among routes with the same prefix, the first in the config whose host and
method filters accept the request wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edge.config import HttpUpstreamConfig, ProxyRouteConfig


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    """One compiled ``proxy_routes`` entry."""

    name: str  # proxy:<prefix>, the Call's route name for limits, breakers and logs
    prefix: str  # without a trailing slash; "" for the root
    upstream: str
    host: str | None  # lower-case
    methods: frozenset[str] | None  # upper-case
    replacement: str  # what replaces the prefix in the upstream path
    timeout: float | None
    websocket: bool

    def accepts(self, host: str, method: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if self.host is None:
            return True
        if host == self.host:
            return True
        # a configured host without a port matches the Host header on any port
        bare = host[: host.index("]") + 1] if host.startswith("[") else host.split(":", 1)[0]
        return bare == self.host

    def upstream_path(self, path: str) -> str:
        """The path sent upstream: the matched prefix replaced, everything after it kept."""
        rest = path[len(self.prefix) :]
        out = self.replacement + rest
        if not out.startswith("/"):
            out = "/" + out
        return out


class ProxyTable:
    """Proxy routes by prefix, compiled once; ``match`` walks the path's segment prefixes."""

    __slots__ = ("_by_prefix",)

    def __init__(self, routes: Sequence[ProxyRoute]) -> None:
        by_prefix: dict[str, list[ProxyRoute]] = {}
        for route in routes:
            by_prefix.setdefault(route.prefix, []).append(route)
        self._by_prefix = {prefix: tuple(found) for prefix, found in by_prefix.items()}

    def __bool__(self) -> bool:
        return bool(self._by_prefix)

    def match(self, path: str, host: str, method: str, websocket: bool) -> ProxyRoute | None:
        """The route serving this request; WebSockets only on routes that allow them."""
        candidate = path
        while True:
            found = self._by_prefix.get(candidate)
            if found is not None:
                for route in found:
                    if (route.websocket or not websocket) and route.accepts(host, method):
                        return route
            if not candidate:
                return None
            candidate = candidate[: candidate.rfind("/")]


def compile_proxy_routes(
    routes: Sequence[ProxyRouteConfig], upstreams: Mapping[str, HttpUpstreamConfig]
) -> ProxyTable:
    """The table for ``proxy_routes``; a route's timeout defaults to its upstream's."""
    compiled = []
    for config in routes:
        prefix = config.prefix.rstrip("/")
        if config.rewrite_prefix is not None:
            replacement = config.rewrite_prefix.rstrip("/")
        else:
            replacement = "" if config.strip_prefix else prefix
        timeout = config.timeout
        if timeout is None:
            timeout = upstreams[config.upstream].timeout
        compiled.append(
            ProxyRoute(
                name=f"proxy:{config.prefix}",
                prefix=prefix,
                upstream=config.upstream,
                host=config.host.lower() if config.host else None,
                methods=frozenset(m.upper() for m in config.methods) if config.methods else None,
                replacement=replacement,
                timeout=timeout,
                websocket=config.websocket,
            )
        )
    return ProxyTable(compiled)
