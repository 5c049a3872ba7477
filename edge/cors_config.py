"""The ``cors:`` section (global, and per route in a policy), checked at load.

Kept apart from the decisions (``edge.ingress.cors``) so the config and the policies
can hold it without importing the ingress. Origins are normalised here to the form a
browser sends (see ``edge.ingress.cors`` for the rules and why).
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge.units import SecondsOrZero

Headers = list[tuple[bytes, bytes]]

ANY_ORIGIN = "*"
NULL_ORIGIN = "null"

DEFAULT_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
# What gRPC-Web (grpc-web, connect-es) and Connect (connect-es) clients send, and the
# gateway's own request id (the list of connectrpc/cors-go, plus authorization).
DEFAULT_ALLOW_HEADERS = [
    "content-type",
    "authorization",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "connect-protocol-version",
    "connect-timeout-ms",
    "x-request-id",
]
# What a browser client must read: gRPC-Web's status in headers (trailers-only answers),
# the rate-limit answers, the request id. Connect needs nothing more by default: its
# errors are in the body; unary trailers are ``trailer-<name>`` headers and must be added
# by name to be read.
DEFAULT_EXPOSE_HEADERS = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    # the RateLimit fields the gateway sends, and the answers to a refusal
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "ratelimit-policy",
    "retry-after",
    "www-authenticate",
    "x-request-id",
]

_MAX_ORIGIN = 1024  # far past any real origin (a host is at most 253 characters)
# RFC 9110 token (method and field-name syntax)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", re.ASCII)
_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]*", re.ASCII)
_LABEL = re.compile(r"[a-z0-9_\-]+", re.ASCII)
_LABEL_PATTERN = r"[a-z0-9_\-]+"
_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}
# Schemes whose documents have an opaque origin: a browser sends "null" for them.
_OPAQUE_SCHEMES = frozenset({"file", "data", "blob", "about", "javascript"})


# -- config ---------------------------------------------------------------------------


class _Model(BaseModel):
    # edge.config's base, restated as edge.policy_config does: edge.config imports this
    # module for its ``cors:`` section, so importing edge.config here would be a cycle.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _origin_problem(value: str, why: str) -> ValueError:
    return ValueError(f"origin {value!r} {why}")


def _normalise_host(value: str, host: str, *, pattern: bool) -> str:
    """The host as a browser serialises it; ValueError naming ``value`` otherwise."""
    if host.startswith("["):
        if not host.endswith("]") or pattern or "%" in host:  # browsers take no zone id
            raise _origin_problem(value, "has a malformed IPv6 host")
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            raise _origin_problem(value, "has a malformed IPv6 host") from None
    labels = host.lower().split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise _origin_problem(
            value, "has a malformed host (DNS labels of a-z, 0-9, '-', '_' joined by dots)"
        )
    if labels[-1].isdigit():
        if pattern:
            raise _origin_problem(value, "puts * before an IP address: * stands for DNS labels")
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise _origin_problem(value, "has a malformed IPv4 host") from None
    return ".".join(labels)


def normalise_origin(value: str) -> str:
    """An ``allow_origins`` entry in the browser's serialization; ValueError if malformed.

    Scheme and host lower-cased, the scheme's default port dropped, IPv6 compressed.
    Refused, naming the value: a path or trailing slash, a query or fragment, userinfo,
    a missing or malformed scheme, a scheme whose origins are opaque (``file:``: list
    ``null``), non-ASCII hosts (write them in their ``xn--`` form), a ``*`` anywhere but as
    the host's leading labels, a wildcard suffix of one label.
    """
    if value in (ANY_ORIGIN, NULL_ORIGIN):
        return value
    if not value.isascii():
        raise _origin_problem(value, "is not ASCII: write an IDN host in its xn-- form")
    if any(c.isspace() for c in value):
        raise _origin_problem(value, "contains whitespace")
    scheme, sep, rest = value.partition("://")
    scheme = scheme.lower()
    if not sep or not _SCHEME.fullmatch(scheme):
        raise _origin_problem(value, "needs a scheme: scheme://host[:port]")
    if scheme in _OPAQUE_SCHEMES:
        raise _origin_problem(
            value, f"has scheme {scheme}: such documents send the origin 'null' (list that)"
        )
    if "/" in rest:
        raise _origin_problem(
            value, "has a path or trailing slash: an origin is scheme://host[:port]"
        )
    if "?" in rest or "#" in rest:
        raise _origin_problem(value, "has a query or fragment: an origin is scheme://host[:port]")
    if "@" in rest:
        raise _origin_problem(value, "has userinfo: an origin is scheme://host[:port]")
    host, port = rest, ""
    if not rest.endswith("]"):
        head, colon, tail = rest.rpartition(":")
        if colon:
            host, port = head, tail
    if port:
        if not _PORT.fullmatch(port) or not 0 < int(port) <= 65535:
            raise _origin_problem(value, f"has a malformed port {port!r}")
        if int(port) == _DEFAULT_PORTS.get(scheme):
            port = ""  # a browser never sends its scheme's default port
        else:
            port = str(int(port))
    pattern = host.startswith("*.")
    if pattern:
        host = host[2:]
        if "." not in host:
            raise _origin_problem(
                value, f"matches every host under {host!r}: * needs a suffix of two labels"
            )
    if not host or "*" in host:
        raise _origin_problem(
            value, "may use * only as the host's leading labels (https://*.example.com)"
        )
    host = _normalise_host(value, host, pattern=pattern)
    return f"{scheme}://{'*.' if pattern else ''}{host}{':' + port if port else ''}"


def _tokens(values: list[str], what: str) -> list[str]:
    for value in values:
        if value == "*":
            raise ValueError(
                f"{what}: list the names; '*' is not supported (it never covers "
                "Authorization, and browsers ignore it on credentialed requests)"
            )
        if not _TOKEN.fullmatch(value):
            raise ValueError(f"{what}: {value!r} is not a valid name")
    return values


class CorsConfig(_Model):
    """The ``cors:`` section: who may call from a browser, and what the browser may see."""

    allow_origins: list[str] = Field(default_factory=list)
    allow_methods: list[str] = Field(default_factory=lambda: list(DEFAULT_METHODS))
    allow_headers: list[str] = Field(default_factory=lambda: list(DEFAULT_ALLOW_HEADERS))
    expose_headers: list[str] = Field(default_factory=lambda: list(DEFAULT_EXPOSE_HEADERS))
    allow_credentials: bool = False
    # how long a browser may cache a preflight answer (Chrome caps it at 2h, Firefox 24h)
    max_age: SecondsOrZero = 600.0
    # answer Private Network Access preflights (Access-Control-Request-Private-Network)
    allow_private_network: bool = False

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, values: list[str]) -> list[str]:
        normalised: list[str] = []
        for value in values:
            origin = normalise_origin(value)
            if origin not in normalised:
                normalised.append(origin)
        if ANY_ORIGIN in normalised and len(normalised) > 1:
            raise ValueError("'*' allows every origin: list it alone")
        return normalised

    @field_validator("allow_methods")
    @classmethod
    def _methods(cls, values: list[str]) -> list[str]:
        return list(dict.fromkeys(v.upper() for v in _tokens(values, "allow_methods")))

    @field_validator("allow_headers", "expose_headers")
    @classmethod
    def _header_names(cls, values: list[str]) -> list[str]:
        return list(dict.fromkeys(v.lower() for v in _tokens(values, "header names")))

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> CorsConfig:
        if self.allow_credentials and ANY_ORIGIN in self.allow_origins:
            raise ValueError(
                "allow_origins '*' cannot go with allow_credentials: true (the Fetch "
                "standard forbids it); list the origins that may send credentials"
            )
        return self
