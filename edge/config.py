"""The configuration file: YAML, validated at load, every problem naming its key.

Models are frozen pydantic models with unknown keys forbidden, so a typo is an error
that names the key rather than a silently ignored setting. Two ways to take values from
the environment, for secrets and addresses:

* ``${NAME}`` or ``${NAME:-default}`` inside any string value of the file;
* ``EDGE__<KEY>__<KEY>...=value`` overriding one key by path, e.g.
  ``EDGE__UPSTREAMS__LIBRARY__ADDRESS=10.0.0.5:50051`` (keys match case-insensitively).
  The value is read by the type of the key it sets (``_override_value``), never as YAML:
  a string key takes the text exactly as given (``s3cr3t #1``, ``0123``, ``no``, ``null``
  and ``${X}`` stay those characters), numbers and booleans must be written as such,
  durations and sizes as in the file (``edge.units``), lists and sections as JSON. A
  value that does not fit, an empty one, or a key the config does not have is an error
  naming the variable.

Relative paths are relative to the config file's folder (the working directory when
there is no file).
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from edge.compression.config import CompressionConfig
from edge.cors_config import CorsConfig
from edge.errors import ConfigError
from edge.policy_config import (
    AuthConfig,
    BreakersConfig,
    PolicyConfig,
    RateLimitingConfig,
    RetryBudgetConfig,
)
from edge.redaction import redact_text, redact_url
from edge.units import Bytes, Seconds


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsClientConfig(_Model):
    """TLS towards an upstream; ``cert`` and ``key`` together turn on mTLS."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None

    @model_validator(mode="after")
    def _cert_and_key(self) -> TlsClientConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key must be given together (client certificate)")
        return self


class OutlierDetectionConfig(_Model):
    """Eject an endpoint whose share of failed calls is too high (gRPC's outlier detection)."""

    interval: Seconds = 10.0  # how often endpoints are judged
    base_ejection_time: Seconds = 30.0  # doubled each time the same endpoint is ejected again
    max_ejection_percent: int = Field(default=50, ge=0, le=100)
    failure_percentage: int = Field(default=50, ge=1, le=100)  # eject at this failure share
    minimum_hosts: int = Field(default=2, ge=1)
    request_volume: int = Field(default=20, ge=1)  # calls an endpoint needs to be judged


_PROXY_VARIABLES = tuple(
    name for base in ("grpc_proxy", "https_proxy", "http_proxy") for name in (base, base.upper())
)


def _host_port(address: str) -> str | None:
    """The host of a plain ``host:port`` address; None for gRPC target forms (unix:, dns:)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or (":" in host and not host.startswith("[")):
        return None
    if host.startswith(("unix", "dns", "ipv4", "ipv6", "xds")):
        return None
    return host.strip("[]")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class UpstreamConfig(_Model):
    address: str | None = None
    addresses: list[str] = Field(default_factory=list)
    load_balancing: Literal["round_robin", "pick_first"] = "round_robin"
    outlier_detection: OutlierDetectionConfig | None = None
    tls: TlsClientConfig | None = None
    timeout: Seconds | None = 30.0
    max_request_bytes: Bytes = 4 * 1024 * 1024
    max_response_bytes: Bytes = 4 * 1024 * 1024
    # learn this upstream's services by gRPC server reflection (no .proto needed); its
    # services are then routed here unless services names them
    reflection: bool = False
    reflection_interval: Seconds = 300.0  # refetched this often (and on every reload)
    # The gRPC client for this upstream's unary calls: "lean" (edge/upstream/lean.py, HTTP/2
    # on the event loop, about half grpc.aio's CPU per call), "grpcio" (grpc.aio), or "auto":
    # lean where it behaves exactly as grpc.aio would (IP or localhost addresses, no outlier
    # detection, no proxy in the environment), grpcio otherwise. Streaming methods always
    # use grpc.aio.
    client: Literal["auto", "grpcio", "lean"] = "auto"
    # gRPC message compression, both clients: requests are compressed with this (when it
    # makes them smaller); replies may come compressed with accept_compression's
    # algorithms, which are advertised in grpc-accept-encoding (with request_compression's)
    request_compression: Literal["none", "gzip", "deflate"] = "none"
    accept_compression: list[Literal["gzip", "deflate"]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _each_algorithm_once(self) -> UpstreamConfig:
        for name in self.accept_compression:
            if self.accept_compression.count(name) > 1:
                raise ValueError(f"accept_compression lists {name} twice")
        return self

    @model_validator(mode="after")
    def _one_address_form(self) -> UpstreamConfig:
        if (self.address is None) == (not self.addresses):
            raise ValueError("give exactly one of address or addresses")
        if len(self.all_addresses) > 1:
            # grpc takes a list only as an ipv4: or ipv6: target: IP addresses, one family
            families = set()
            for address in self.all_addresses:
                host = _host_port(address)
                if host is None or not _is_ip(host):
                    raise ValueError(
                        f"addresses are IP addresses with ports (grpc's ipv4:/ipv6: targets), "
                        f"not {address!r}; give a host name as address instead"
                    )
                families.add(ipaddress.ip_address(host).version)
            if len(families) > 1:
                raise ValueError("addresses must be all IPv4 or all IPv6")
        if self.client == "lean":
            if self.outlier_detection is not None:
                raise ValueError("client: lean has no outlier detection; use client: grpcio for it")
            for address in self.all_addresses:
                if _host_port(address) is None:
                    raise ValueError(
                        f"client: lean needs addresses of the form host:port, not {address!r}"
                    )
        return self

    @property
    def lean(self) -> bool:
        """Whether unary calls take the lean client (``client``, with ``auto`` decided)."""
        if self.client != "auto":
            return self.client == "lean"
        if self.outlier_detection is not None:
            return False
        if any(os.environ.get(name) for name in _PROXY_VARIABLES):
            return False  # grpc.aio goes through the proxy these name; lean would not
        for address in self.all_addresses:
            host = _host_port(address)
            # A host name may resolve to several records, which grpc.aio balances over and
            # re-resolves; the lean client would use them pick-first. So names stay grpcio.
            if host is None or not (host == "localhost" or _is_ip(host)):
                return False
        return True

    @property
    def all_addresses(self) -> list[str]:
        return [self.address] if self.address is not None else list(self.addresses)


class ServiceConfig(_Model):
    """Where a gRPC service (or ``*``, every service) is sent, and its default deadline."""

    upstream: str
    timeout: Seconds | None = None


class MethodConfig(_Model):
    timeout: Seconds | None = None


class TranscodingConfig(_Model):
    unknown_fields: Literal["reject", "ignore"] = "reject"
    unknown_query_parameters: Literal["reject", "ignore"] = "reject"
    ignored_query_parameters: list[str] = Field(default_factory=list)
    # PATCH with a body field: an absent FieldMask is filled from the body (grpc-gateway)
    patch_field_mask: bool = True
    emit_defaults: bool = False
    proto_field_names: bool = False
    enums_as_ints: bool = False
    generic_routes: Literal["all", "unannotated", "none"] = "unannotated"
    max_body_bytes: Bytes = 4 * 1024 * 1024


class HeadersConfig(_Model):
    forward_request: list[str] = Field(
        default_factory=lambda: ["authorization", "x-request-id", "traceparent", "tracestate"]
    )
    forward_response: list[str] = Field(default_factory=list)
    # Request headers whose names hold "_": WSGI/CGI upstreams read X_User_Id and
    # X-User-Id as one name (HTTP_X_USER_ID), so one could smuggle a value past a header
    # the gateway sets. "drop" them (nginx's default), "reject" the request (400, Envoy's
    # REJECT_REQUEST), or "allow" them through.
    underscores: Literal["drop", "reject", "allow"] = "drop"


class PathsConfig(_Model):
    """How request paths are normalised before routing (docs/edge-guarantees.md)."""

    merge_slashes: bool = True  # //a///b is /a/b
    # Proxied routes only (transcoded routes decode %2F inside a variable, per
    # google.api.http): "reject" paths holding %2F or %5C (400), "unescape" them into
    # slashes and match the result, or "keep" them as sent (the upstream must not decode).
    escaped_slashes: Literal["reject", "keep", "unescape"] = "reject"
    # Proxied routes only: ";" path parameters, which Java servers strip from segments
    # (/admin;x/ is /admin/ to them), are refused unless allowed here.
    allow_path_parameters: bool = False


class GrpcWebConfig(_Model):
    """gRPC-Web (``application/grpc-web``, ``+proto``, ``-text``) at every routed method's
    gRPC path, ``POST /package.Service/Method``: what browsers' gRPC clients speak."""

    enabled: bool = True


class ConnectConfig(_Model):
    """The Connect protocol at every routed method's gRPC path (unary POST and GET,
    server streams): what connect-web and connect-go clients speak."""

    enabled: bool = True
    # a unary POST must carry Connect-Protocol-Version: 1 (Connect servers may require it);
    # without it, a POST with only Content-Type: application/json is plain JSON transcoding
    require_protocol_version: bool = False


class WebSocketConfig(_Model):
    """The gRPC-over-WebSocket bridge (its protocol: docs/websocket.md)."""

    enabled: bool = True
    # Origins allowed to open a socket: "same-origin" (the default, Origin's host equals
    # Host), exact origins like "https://app.example.com", or "*" for any.
    allowed_origins: list[str] = Field(default_factory=lambda: ["same-origin"])
    max_message_bytes: Bytes = 4 * 1024 * 1024
    queue_messages: int = Field(default=16, ge=1)  # per direction, then backpressure
    ping_interval: Seconds | None = 20.0
    idle_timeout: Seconds | None = 300.0
    # Seconds a socket may stay silent before its first frame starts the call; then it is
    # closed with INVALID_ARGUMENT (4003), or UNAUTHENTICATED (4016) when its route needs
    # credentials it has not given.
    first_frame_timeout: Seconds = 10.0
    # Whether a token may come in the first frame's metadata. Off: a route that needs
    # credentials refuses a handshake without them (401), so no socket is ever open
    # unauthenticated. On: such a handshake is accepted and the socket has until
    # first_frame_timeout to send its token (checked as soon as the first frame arrives).
    first_frame_auth: bool = False
    # Where a browser may put its token besides the first frame's metadata and the
    # "edge.bearer.<token>" subprotocol; null turns a form off.
    token_query_parameter: str | None = "access_token"
    token_cookie: str | None = None
    # After a reload, an open socket whose route or policy changed (a token now required,
    # a tighter limit, a moved upstream, a removed method) is closed with 1012 and an
    # UNAVAILABLE status frame, so its client reconnects onto the new config; "always":
    # every socket, at every reload; "never": sockets keep their config until they close.
    reconnect_on_reload: Literal["changed", "always", "never"] = "changed"


# --- plain HTTP proxying (owned by the proxy work; keep edits inside this block) ---


class HttpUpstreamConfig(_Model):
    """An HTTP upstream for proxied routes: one pooled client per upstream."""

    url: str | None = None  # e.g. http://10.0.0.7:9000 (scheme, host, port; a path is a prefix)
    urls: list[str] = Field(default_factory=list)  # several endpoints: round-robin
    eject_after: int = Field(default=3, ge=1)  # connect failures in a row, then skip it...
    eject_for: Seconds = 30.0  # ...for this long
    # the longest the upstream may stay silent: before its response headers, and between
    # two chunks of its body (nginx's proxy_read_timeout); a route's timeout overrides it
    timeout: Seconds | None = 30.0
    connect_timeout: Seconds = 5.0
    # the pool's size; more requests wait up to connect_timeout for one, then 503
    max_connections: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _http_url(self) -> HttpUpstreamConfig:
        if (self.url is None) == (not self.urls):
            raise ValueError("give exactly one of url or urls")
        for url in self.all_urls:
            scheme, sep, rest = url.partition("://")
            shown = redact_url(url)  # an error message is printed and logged
            if not sep or scheme.lower() not in ("http", "https") or not rest.split("/")[0]:
                raise ValueError(f"url {shown!r} must be http://host[:port][/path] or https://...")
            if "?" in rest or "#" in rest:
                raise ValueError(f"url {shown!r} must not have a query or fragment")
        return self

    @property
    def all_urls(self) -> list[str]:
        return [self.url] if self.url is not None else list(self.urls)


class ProxyRouteConfig(_Model):
    """Requests under ``prefix`` (optionally only for ``host``, ``methods``) go to ``upstream``."""

    prefix: str  # whole segments: /api matches /api and /api/x, never /apix
    upstream: str
    host: str | None = None  # matched against Host without its port, unless a port is given
    methods: list[str] | None = None
    strip_prefix: bool = False
    rewrite_prefix: str | None = None  # replaces the matched prefix (after stripping)
    timeout: Seconds | None = None
    websocket: bool = True  # relay WebSocket upgrades on this route

    @model_validator(mode="after")
    def _paths(self) -> ProxyRouteConfig:
        if not self.prefix.startswith("/"):
            raise ValueError(f"prefix {self.prefix!r} must start with /")
        if self.rewrite_prefix is not None and not self.rewrite_prefix.startswith("/"):
            raise ValueError(f"rewrite_prefix {self.rewrite_prefix!r} must start with /")
        return self


# --- end of the proxy block ---


class DescriptorsConfig(_Model):
    proto_paths: list[Path] = Field(default_factory=lambda: [Path("protos")])
    include_paths: list[Path] = Field(default_factory=list)
    descriptor_sets: list[Path] = Field(default_factory=list)
    watch: bool = True  # reload when the files change (polling)
    watch_interval: Seconds = 2.0


class ServerConfig(_Model):
    bind: list[str] = Field(default_factory=lambda: ["127.0.0.1:8080"])
    workers: int = Field(default=1, ge=1)
    certfile: Path | None = None
    keyfile: Path | None = None
    ca_certs: Path | None = None
    # auto: uvloop where it is installed (it cut the gateway's CPU per request by ~18%)
    loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    access_log: bool = False
    graceful_timeout: Seconds = 10.0
    # A request body that stalls this long between two reads is answered 408 and its
    # connection closed (nginx's client_body_timeout); null waits for ever.
    body_idle_timeout: Seconds | None = 20.0
    # ...and one that, after its first body_idle_timeout, averages fewer bytes per second
    # than this (a slow-drip client holding a connection); null turns the check off.
    body_min_rate: Bytes | None = 256
    # HTTP/2 rapid reset: a connection may cancel this many streams at once, refilled at
    # h2_reset_rate per second; one that cancels faster gets GOAWAY (ENHANCE_YOUR_CALM).
    # null: no budget (Hypercorn's own limit of 1,000 requests per connection remains).
    h2_reset_burst: int | None = Field(default=200, ge=1)
    h2_reset_rate: int = Field(default=50, ge=1)
    # A write to a client (a stream's next message, a WebSocket frame, a close) that makes
    # no progress this long: the client has stopped reading, and its connection is closed
    # (nginx's send_timeout, default 60 s); null waits for ever.
    send_timeout: Seconds | None = 60.0
    # Streams (server, client and bidi streaming calls, over HTTP or WebSocket) open at
    # once in one worker, and from one client (rate_limiting's idea of a client); past
    # either a new one is refused: 503 in total, 429 for the client. null: no limit.
    max_streams: int | None = Field(default=10_000, ge=1)
    max_streams_per_client: int | None = Field(default=100, ge=1)

    @property
    def event_loop(self) -> Literal["asyncio", "uvloop"]:
        if self.loop != "auto":
            return self.loop
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return "asyncio"
        return "uvloop"


class TracingConfig(_Model):
    """OpenTelemetry spans (the ``otel`` extra); with ``exporter: none`` nothing is imported."""

    exporter: Literal["otlp", "console", "none"] = "none"
    # OTLP/gRPC collector, e.g. http://collector:4317 (https:// for TLS); unset: the
    # exporter's own default (OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4317)
    endpoint: str | None = None
    service_name: str = "edge"
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)  # for traces the client did not start
    record_user: bool = False  # put the token's subject on server spans as enduser.id


class ObservabilityConfig(_Model):
    metrics: bool = True  # /metrics (Prometheus)
    access_log: bool = False  # one JSON line per request on the edge.access logger
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "text"
    tracing: TracingConfig = Field(default_factory=TracingConfig)


class AdminConfig(_Model):
    """The admin endpoints (/admin/...): loopback clients only, unless a token is set.

    ``bind`` gives them a listener of their own, as Envoy's admin port: behind a same-host
    proxy every client is loopback, so the address rule alone would admit everyone; a port
    the proxy never forwards to does not.
    """

    token: str | None = None  # use ${ENV_VAR}; then any client presenting it is admitted
    bind: str | None = None  # "127.0.0.1:9901": /admin/* only there (404 on the others)

    @model_validator(mode="after")
    def _bind_has_a_port(self) -> AdminConfig:
        if self.bind is not None:
            _host, _, port = self.bind.rpartition(":")
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"admin.bind needs host:port with a fixed port, not {self.bind!r}")
        return self

    @property
    def port(self) -> int | None:
        return int(self.bind.rpartition(":")[2]) if self.bind else None


class OpenApiConfig(_Model):
    """The generated API documentation: /openapi.json, /docs and ``edge openapi``."""

    enabled: bool = True  # serve /openapi.json and /docs
    title: str = "edge gateway"
    version: str = "1.0.0"  # the API's version, as the document's info.version
    description: str | None = None
    servers: list[str] = Field(default_factory=list)  # base URLs; empty: the page's origin
    # /v1/{name=shelves/*/books/*} as /v1/shelves/{shelf}/books/{book} (what generated
    # clients can call); false: one parameter {name} holding slashes (docs/openapi.md)
    expand_path_patterns: bool = True


class Config(_Model):
    server: ServerConfig = Field(default_factory=ServerConfig)
    descriptors: DescriptorsConfig = Field(default_factory=DescriptorsConfig)
    upstreams: dict[str, UpstreamConfig] = Field(default_factory=dict)
    services: dict[str, ServiceConfig] = Field(default_factory=dict)
    methods: dict[str, MethodConfig] = Field(default_factory=dict)
    transcoding: TranscodingConfig = Field(default_factory=TranscodingConfig)
    headers: HeadersConfig = Field(default_factory=HeadersConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    websocket: WebSocketConfig = Field(default_factory=WebSocketConfig)
    grpc_web: GrpcWebConfig = Field(default_factory=GrpcWebConfig)
    connect: ConnectConfig = Field(default_factory=ConnectConfig)
    # browsers on other origins: answered preflights, labelled answers (a policy's own
    # ``cors`` replaces this for the routes it matches); none: no CORS headers at all
    cors: CorsConfig | None = None
    # gzip/br responses of transcoded routes, compressed request bodies (docs/compression.md)
    compression: CompressionConfig = Field(default_factory=CompressionConfig)
    http_upstreams: dict[str, HttpUpstreamConfig] = Field(default_factory=dict)
    proxy_routes: list[ProxyRouteConfig] = Field(default_factory=list)
    # the policy pipeline (edge/policy_config.py)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    rate_limiting: RateLimitingConfig = Field(default_factory=RateLimitingConfig)
    breakers: BreakersConfig = Field(default_factory=BreakersConfig)
    policies: list[PolicyConfig] = Field(default_factory=list)
    default_policy: PolicyConfig = Field(default_factory=PolicyConfig)
    # Services (globs over "package.Service") whose *.edge.yaml sidecars may loosen
    # default_policy: set an auth looser than its own (public where it needs a token, a
    # token without its scopes), and replace its rate limits rather than add to them.
    # Elsewhere a sidecar only tightens; a looser auth does not apply (the stricter one
    # does) and is reported as a route problem naming the file and the method.
    sidecars_may_loosen: list[str] = Field(default_factory=list)
    retry_budget: RetryBudgetConfig = Field(default_factory=RetryBudgetConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)
    openapi: OpenApiConfig = Field(default_factory=OpenApiConfig)

    @model_validator(mode="after")
    def _services_name_upstreams(self) -> Config:
        for service, settings in self.services.items():
            if settings.upstream not in self.upstreams:
                raise ValueError(
                    f"services.{service}.upstream names {settings.upstream!r}, "
                    f"which is not under upstreams"
                )
        for index, route in enumerate(self.proxy_routes):
            if route.upstream not in self.http_upstreams:
                raise ValueError(
                    f"proxy_routes[{index}].upstream names {route.upstream!r}, "
                    f"which is not under http_upstreams"
                )
        admin_port = self.admin.port
        if admin_port is not None and any(
            bind.rpartition(":")[2] == str(admin_port) for bind in self.server.bind
        ):  # the admin rule tells listeners apart by port alone
            raise ValueError(
                f"admin.bind {self.admin.bind!r} shares its port with server.bind; "
                "give admin a port of its own"
            )
        return self

    def service_config(self, service: str) -> ServiceConfig | None:
        return self.services.get(service) or self.services.get("*")


DEMO_CONFIG: dict[str, Any] = {
    "upstreams": {"demo": {"address": "127.0.0.1:50051", "timeout": "10s"}},
    "services": {"*": {"upstream": "demo"}},
}

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, env: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"{where or '<root>'}: environment variable {name} is not set")

        return _ENV_REF.sub(replace, value)
    if isinstance(value, dict):
        return {
            k: _interpolate(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


_OVERRIDE_PREFIX = "EDGE__"
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_SHOWN_CHARACTERS = 60
_MAX_DIGITS = 100  # no field wants more; and int() refuses past 4,300


def _apply_overrides(data: dict[str, Any], env: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Set every ``EDGE__A__B=value`` of ``env`` in ``data``; returns key path -> variable.

    The path is walked through the models, so an unknown key is refused here, naming the
    variable, and the value is read by the type of the field it lands on
    (``_override_value``). The values are not ``${...}``-interpolated: the file was, before
    this; a variable's value is used as the environment holds it.
    """
    landed: dict[tuple[str, ...], str] = {}
    problems: list[str] = []
    for name, raw in sorted(env.items()):
        if name.startswith(_OVERRIDE_PREFIX):
            try:
                landed[_apply_override(data, name, raw)] = name
            except ConfigError as exc:
                problems.append(str(exc))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return landed


def _apply_override(data: dict[str, Any], name: str, raw: str) -> tuple[str, ...]:
    """Set one override in ``data``, creating the sections it names; its key path.

    ConfigError, naming the variable, for a key the models do not have, a path through
    a list or a value, and a value its field cannot take.
    """
    keys = name[len(_OVERRIDE_PREFIX) :].split("__")
    if not all(keys):
        raise ConfigError(f"{name}: an empty key in the name (EDGE__SECTION__KEY, one '__' apart)")
    node: dict[str, Any] = data
    annotation: Any = Config
    parses = False
    path: list[str] = []
    for depth, key in enumerate(keys):
        kind = _unwrap(annotation)[0]
        where = ".".join(path) or "the config"
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            slot = key.lower()
            field = kind.model_fields.get(slot)
            if field is None:
                raise ConfigError(f"{name}: {where} has no key {slot!r}")
            annotation = field.annotation
            parses = any(isinstance(item, BeforeValidator) for item in field.metadata)
        elif get_origin(kind) is dict:
            existing = (k for k in node if isinstance(k, str) and k.lower() == key.lower())
            slot = next(existing, key.lower())
            annotation, parses = get_args(kind)[1], False
        elif get_origin(kind) is list:
            raise ConfigError(f"{name}: {where} is a list; set it whole, as a JSON array")
        else:
            raise ConfigError(f"{name}: {where} is a value, not a section")
        path.append(slot)
        if depth == len(keys) - 1:
            node[slot] = _override_value(name, raw, annotation, parses)
            break
        child = node.get(slot)
        if child is None:  # absent, or null in the file: the override fills it in
            child = node[slot] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"{name}: {'.'.join(path)} is not a section in the config file")
        node = child
    return tuple(path)


def _unwrap(annotation: Any) -> tuple[Any, bool, bool]:
    """A field's type without ``Annotated`` and ``| None``: (type, nullable, parses text).

    "Parses text": a ``BeforeValidator`` reads strings (``Seconds``, ``Bytes``), so the
    value goes to it as written.
    """
    nullable = parses = False
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation, *metadata = get_args(annotation)
            parses = parses or any(isinstance(item, BeforeValidator) for item in metadata)
        elif origin in (Union, types.UnionType):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            nullable = nullable or len(members) < len(get_args(annotation))
            if len(members) != 1:
                return annotation, nullable, parses
            annotation = members[0]
        else:
            return annotation, nullable, parses


def _override_value(name: str, raw: str, annotation: Any, parses: bool) -> Any:
    """An override's text as the value its field takes (see the module's docstring).

    Never YAML: a YAML reading turns ``s3cr3t #2024`` into ``s3cr3t``, ``null``, ``~`` or
    ``#x`` into no token at all, ``no`` into False and ``0123`` into 83, and fails on
    ``*x`` and ``!!python/...``. Every refusal is a ConfigError that names the variable
    and shows a scalar value (redacted, cut short) but never a structured one, which may
    hold secrets.
    """
    kind, nullable, validated = _unwrap(annotation)
    parses = parses or validated
    if raw == "":
        raise ConfigError(f"{name}: empty; unset it to keep the file's value")
    if kind in (str, Path) or (
        get_origin(kind) is Literal and all(isinstance(arg, str) for arg in get_args(kind))
    ):
        return raw  # a string key: exactly as given
    if nullable and raw == "null":
        return None
    if parses:
        return raw  # a duration or a size: its field's validator reads the text
    if kind is bool:
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise ConfigError(f"{name}: expected true or false, got {_shown(raw)}")
    if kind is int:
        if _INTEGER.fullmatch(raw) and len(raw) <= _MAX_DIGITS:
            return int(raw)
        raise ConfigError(f"{name}: expected an integer, got {_shown(raw)}")
    if kind is float:
        if _NUMBER.fullmatch(raw) and math.isfinite(number := float(raw)):
            return number
        raise ConfigError(f"{name}: expected a number, got {_shown(raw)}")
    container = get_origin(kind) or kind
    if container in (list, dict) or (isinstance(kind, type) and issubclass(kind, BaseModel)):
        expected = "a JSON array" if container is list else "a JSON object"
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            where = (
                f" ({exc.msg} at column {exc.colno})"
                if isinstance(exc, json.JSONDecodeError)
                else ""
            )
            raise ConfigError(
                f"{name}: expected {expected}, got text that is not JSON{where}"
            ) from exc
        if not isinstance(value, list if container is list else dict):
            if nullable and value is None:
                return None
            raise ConfigError(f"{name}: expected {expected}, got JSON of another kind")
        return value
    raise ConfigError(f"{name}: this key cannot be set from the environment")


def _shown(raw: str) -> str:
    """A refused value as an error shows it: redacted, one line, cut short."""
    shown = redact_text(raw)
    if len(shown) > _SHOWN_CHARACTERS:
        shown = f"{shown[: _SHOWN_CHARACTERS - 3]}..."
    return repr(shown)


def _location_parts(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """A pydantic error's location without its validator and type steps."""
    return tuple(
        item
        for item in loc
        if isinstance(item, int)
        or (not str(item).startswith("function-") and item not in ("str", "float", "int"))
    )


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in _location_parts(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "<root>"


def _problem(error: Any, overrides: Mapping[tuple[str, ...], str]) -> str:
    """One line of a ConfigError: where, what, the variables that set it; URLs redacted."""
    parts = _location_parts(error["loc"])
    names = [
        name
        for path, name in overrides.items()
        if parts and (path[: len(parts)] == parts or parts[: len(path)] == path)
    ]
    line = f"{_location(error['loc'])}: {error['msg']}"
    if names:
        line += f" (set by {', '.join(names)})"
    return redact_text(line)


def _resolve_paths(config: Config, base: Path) -> Config:
    def fix(path: Path | None) -> Path | None:
        return path if path is None or path.is_absolute() else base / path

    descriptors = config.descriptors.model_copy(
        update={
            "proto_paths": [fix(p) for p in config.descriptors.proto_paths],
            "include_paths": [fix(p) for p in config.descriptors.include_paths],
            "descriptor_sets": [fix(p) for p in config.descriptors.descriptor_sets],
        }
    )
    server = config.server.model_copy(
        update={k: fix(getattr(config.server, k)) for k in ("certfile", "keyfile", "ca_certs")}
    )
    auth = config.auth.model_copy(
        update={
            "issuers": [
                issuer.model_copy(
                    update={
                        "keys": [
                            key.model_copy(update={"pem_file": fix(key.pem_file)})
                            for key in issuer.keys
                        ]
                    }
                )
                for issuer in config.auth.issuers
            ]
        }
    )
    upstreams = {}
    for name, upstream in config.upstreams.items():
        if upstream.tls is not None:
            tls = upstream.tls.model_copy(
                update={k: fix(getattr(upstream.tls, k)) for k in ("ca", "cert", "key")}
            )
            upstream = upstream.model_copy(update={"tls": tls})
        upstreams[name] = upstream
    return config.model_copy(
        update={
            "descriptors": descriptors,
            "server": server,
            "upstreams": upstreams,
            "auth": auth,
        }
    )


def parse_config(
    data: Mapping[str, Any], *, base: Path, env: Mapping[str, str] | None = None
) -> Config:
    """Validate a decoded config; ConfigError lists every problem as ``key.path: problem``."""
    environ = dict(os.environ if env is None else env)
    resolved = _interpolate(dict(data), environ, "")
    overrides = _apply_overrides(resolved, environ)
    try:
        config = Config.model_validate(resolved)
    except ValidationError as exc:
        lines = [_problem(error, overrides) for error in exc.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from exc
    return _resolve_paths(config, base)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """What is wrong and where, without PyYAML's quote of the line: it may hold a secret,
    cut short where redaction can no longer recognise it (``...ss@host``)."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return redact_text(str(error))
    parts = [part for part in (error.context, error.problem) if part]
    mark = error.problem_mark or error.context_mark
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return redact_text(", ".join(parts) + where)


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Read the config file, or the built-in demo config when ``path`` is None."""
    if path is None:
        return parse_config(DEMO_CONFIG, base=Path.cwd(), env=env)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return parse_config(data, base=path.parent.resolve(), env=env)
