"""CORS decisions, sans-IO: which origins may call, and the headers that say so.

The Fetch standard's CORS protocol (fetch.spec.whatwg.org, "CORS protocol" and
"CORS-preflight fetch") is enforced by the browser; the server's part is to answer a
preflight and to label actual responses. ``CorsConfig`` (``edge.cors_config``) is the
``cors:`` section, checked at load; ``CorsPolicy`` is compiled from it once and answers
with header lists in ASGI form (lower-case byte names). Nothing here reads a request or a clock.

**Origins.** A browser sends the ASCII serialization of an origin: lower-case scheme and
host, no default port, no path, no trailing slash, IDN hosts in punycode (the ``Origin``
ABNF of Fetch), and compares ``Access-Control-Allow-Origin`` with it byte for byte. So
the config side is normalised to that form at load (``HTTPS://App.Example.com:443`` is
stored as ``https://app.example.com``) and the request side is compared exactly, never
case-folded: an ``Origin`` in upper case did not come from a conforming browser, and
echoing it could not satisfy one. The forms ``allow_origins`` takes:

* ``https://app.example.com`` (``scheme://host[:port]``; host a DNS name, IPv4 or
  ``[IPv6]``): that origin exactly;
* ``https://*.example.com[:port]``: any origin of that scheme and port whose host is one
  or more whole DNS labels followed by ``.example.com``. ``*`` never matches the apex
  (``https://example.com``: list it too), never crosses into the scheme or port, never
  matches a dot-less ``xexample.com``, and the suffix must have two labels at least
  (``https://*.com`` is refused);
* ``null``: the opaque origin (sandboxed frames, ``file:``), only when listed;
* ``*`` alone: every origin, answered with ``Access-Control-Allow-Origin: *``. Refused
  together with ``allow_credentials: true``: the Fetch standard forbids ``*`` for
  credentialed requests, and reflecting every origin instead would hand any site the
  user's cookies.

**Preflights.** Allowed only when the origin, the requested method (case-sensitive, as
Fetch compares methods) and every requested header name (case-insensitive) are allowed,
and Private Network Access is allowed when asked for. The answer is 204 with the CORS
headers; a refusal is 403 with no CORS headers at all, as the Fetch standard suggests
("the 403 status can be used, coupled with omitting the relevant headers"). Envoy answers
200 either way and forwards an unmatched preflight upstream by default; here the gateway
is the server, and a 403 makes refusals visible in logs and metrics. Both carry ``Vary``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from edge.cors_config import (
    _LABEL_PATTERN,
    _MAX_ORIGIN,
    ANY_ORIGIN,
    CorsConfig,
    Headers,
)

# -- the compiled policy --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Preflight:
    """The answer to a preflight: allowed or not, its status and its headers."""

    allowed: bool
    status: int
    headers: Headers


def _text(value: str | bytes | None) -> str | None:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value


def _pattern_regex(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One regex for every ``scheme://*.suffix[:port]`` pattern: whole labels, anchored."""
    if not patterns:
        return None
    alternatives = []
    for pattern in patterns:
        scheme, _, rest = pattern.partition("://*.")
        alternatives.append(f"{re.escape(scheme)}://(?:{_LABEL_PATTERN}\\.)+{re.escape(rest)}")
    return re.compile("|".join(alternatives), re.ASCII)


class CorsPolicy:
    """The CORS answers of one config, compiled once: pure functions of the request.

    Exact origins are a set; patterns one anchored regex; the static header values are
    encoded once. Every call returns a fresh list, which the caller may extend.
    """

    def __init__(self, config: CorsConfig) -> None:
        self.config = config
        origins = config.allow_origins
        self.any_origin = ANY_ORIGIN in origins
        self._exact = frozenset(o for o in origins if "://*." not in o)
        self._patterns = _pattern_regex([o for o in origins if "://*." in o])
        self._methods = frozenset(config.allow_methods)
        self._headers = frozenset(config.allow_headers)
        self._credentials = config.allow_credentials
        self._private_network = config.allow_private_network
        credentials = [(b"access-control-allow-credentials", b"true")] if self._credentials else []
        vary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        if self._private_network:
            vary += ", Access-Control-Request-Private-Network"
        self._preflight_vary = [(b"vary", vary.encode("ascii"))]
        self._preflight_static: Headers = [
            *credentials,
            (b"access-control-allow-methods", ", ".join(config.allow_methods).encode("ascii")),
            (b"access-control-allow-headers", ", ".join(config.allow_headers).encode("ascii")),
            (b"access-control-max-age", str(int(config.max_age)).encode("ascii")),
        ]
        self._actual_static: Headers = list(credentials)
        if config.expose_headers:
            expose = ", ".join(config.expose_headers).encode("ascii")
            self._actual_static.append((b"access-control-expose-headers", expose))

    def origin_allowed(self, origin: str | bytes | None) -> bool:
        """Whether ``origin`` (the request's header, exactly as sent) may call."""
        text = _text(origin)
        if text is None or not text or len(text) > _MAX_ORIGIN:
            return False
        if self.any_origin or text in self._exact:
            return True
        return self._patterns is not None and self._patterns.fullmatch(text) is not None

    def _allow_origin(self, origin: str) -> Headers:
        value = ANY_ORIGIN if self.any_origin else origin
        return [(b"access-control-allow-origin", value.encode("latin-1"))]

    def preflight(
        self,
        origin: str | bytes | None,
        request_method: str | bytes | None,
        request_headers: str | bytes | None = None,
        private_network: bool = False,
    ) -> Preflight:
        """The answer to a preflight (``OPTIONS`` with Origin and
        Access-Control-Request-Method).

        ``request_headers`` is the Access-Control-Request-Headers value as sent (a comma
        list; every name must be allowed, compared case-insensitively); ``private_network``
        whether ``Access-Control-Request-Private-Network: true`` came along. Allowed: 204
        with Allow-Origin (the origin echoed, or ``*``), Allow-Credentials when
        configured, Allow-Methods, Allow-Headers and Max-Age from the config,
        Allow-Private-Network when asked and allowed. Refused: 403 with no CORS header.
        ``Vary`` both ways, since the answer depends on those request headers.
        """
        text = _text(origin)
        allowed = (
            text is not None
            and self.origin_allowed(text)
            and self._method_allowed(_text(request_method))
            and self._headers_allowed(_text(request_headers))
            and (not private_network or self._private_network)
        )
        if not allowed or text is None:
            return Preflight(False, 403, list(self._preflight_vary))
        headers = self._allow_origin(text) + self._preflight_static
        if private_network:
            headers.append((b"access-control-allow-private-network", b"true"))
        headers.extend(self._preflight_vary)
        return Preflight(True, 204, headers)

    def actual(self, origin: str | bytes | None) -> Headers:
        """Headers to add to a response that is not a preflight.

        For an allowed origin: Allow-Origin, Allow-Credentials when configured,
        Expose-Headers, and ``Vary: Origin``. For a refused or absent origin only
        ``Vary: Origin``: the browser then withholds the response from the page, and a
        cache learns that another Origin may get another answer. With ``*`` the answer is
        the same for everyone (``*`` and Expose-Headers, no Vary), origin or not.
        """
        if self.any_origin:
            return self._allow_origin(ANY_ORIGIN) + self._actual_static
        text = _text(origin)
        if text is None or not self.origin_allowed(text):
            return [(b"vary", b"Origin")]
        return [*self._allow_origin(text), *self._actual_static, (b"vary", b"Origin")]

    def _method_allowed(self, method: str | None) -> bool:
        return method is not None and method.strip() in self._methods

    def _headers_allowed(self, value: str | None) -> bool:
        if value is None:
            return True
        for item in value.split(","):
            name = item.strip(" \t").lower()
            if not name:
                continue
            if name not in self._headers:
                return False
        return True


def compile_policy(config: CorsConfig) -> CorsPolicy:
    """The policy of a config; built once at start-up and on reload."""
    return CorsPolicy(config)


def is_preflight(method: str | bytes, headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether a request is a CORS preflight: OPTIONS with Origin and
    Access-Control-Request-Method (Fetch, "CORS-preflight request").

    An OPTIONS without them is an ordinary request and is routed as one.
    """
    if _text(method) != "OPTIONS":
        return False
    names = {name.lower() for name, _ in headers}
    return b"origin" in names and b"access-control-request-method" in names


def private_network_requested(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether a preflight carries ``Access-Control-Request-Private-Network: true``."""
    return any(
        name.lower() == b"access-control-request-private-network" and value.strip() == b"true"
        for name, value in headers
    )


class CorsRules:
    """Which CORS policy answers for a route: the policies' ``cors``, else the global one.

    A route takes the ``cors`` of the first policy whose ``match`` covers it (the same
    first-match rule as the rest of a policy), or the global ``cors`` when that policy has
    none; a route no policy matches takes ``default_policy.cors``, else the global one.
    A request no adapter claims (an unknown path, health) takes the global one, so a page
    can read the 404 it got. Resolved once per route name and cached, as policies are.
    """

    def __init__(
        self,
        global_cors: CorsConfig | None,
        policies: Sequence[tuple[Sequence[str], CorsConfig | None]],
        default_cors: CorsConfig | None = None,
    ) -> None:
        self._global = compile_policy(global_cors) if global_cors is not None else None
        self._policies = [
            (tuple(patterns), compile_policy(cors) if cors is not None else None)
            for patterns, cors in policies
        ]
        self._default = compile_policy(default_cors) if default_cors is not None else None
        self._cache: dict[str, CorsPolicy | None] = {}

    @classmethod
    def of(
        cls,
        global_cors: CorsConfig | None,
        policies: Sequence[tuple[Sequence[str], CorsConfig | None]],
        default_cors: CorsConfig | None = None,
    ) -> CorsRules | None:
        """The rules, or None when no CORS is configured anywhere (then nothing is added)."""
        if global_cors is None and default_cors is None and all(c is None for _, c in policies):
            return None
        return cls(global_cors, policies, default_cors)

    def for_route(self, route: str | None) -> CorsPolicy | None:
        if route is None:
            return self._global
        if route in self._cache:
            return self._cache[route]
        found = self._resolve(route)
        if len(self._cache) < 100_000:  # route names are finite; bounded all the same
            self._cache[route] = found
        return found

    def _resolve(self, route: str) -> CorsPolicy | None:
        for patterns, policy in self._policies:
            if any(fnmatchcase(route, pattern) for pattern in patterns):
                return policy if policy is not None else self._global
        return self._default if self._default is not None else self._global


def label_response(
    headers: Sequence[tuple[bytes, bytes]], cors: Sequence[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """A response's headers with the gateway's CORS headers in place of any of its own.

    An upstream's own ``Access-Control-*`` headers are dropped (the gateway answers for
    CORS; two Allow-Origin values make the browser refuse), and ``Vary`` is merged into
    one header instead of sent twice.
    """
    out: list[tuple[bytes, bytes]] = []
    vary: list[bytes] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered.startswith(b"access-control-"):
            continue
        if lowered == b"vary":
            vary.append(value)
            continue
        out.append((name, value))
    for name, value in cors:
        if name == b"vary":
            vary.append(value)
        else:
            out.append((name, value))
    if vary:
        seen: list[bytes] = []
        for value in vary:
            for item in value.split(b","):
                token = item.strip()
                if token and token.lower() not in (s.lower() for s in seen):
                    seen.append(token)
        out.append((b"vary", b", ".join(seen)))
    return out
