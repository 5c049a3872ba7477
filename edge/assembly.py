"""One config made into one gateway: the front door and everything a request reads.

Start-up and every reload go through ``assemble``, so there is one way a config becomes a
running gateway and a reload cannot forget a setting: the pipeline (auth, limits, retries,
breakers), the terminals (gRPC channels, the proxy's pools), the call factory (headers,
trusted proxies, tokens), the WebSocket policy, compression, CORS, the request guard's
rules, and the protocol adapters in their dispatch order. The result is a ``GatewayState``
whose ``front`` is the ASGI app for this config; ``edge.state.LiveFront`` sends each
request to the current one.

Each state's adapters read that state alone (a ``StateHolder`` pinned to it), so a request
that started on one config finishes on it, even if it outlives several reloads. What is
the same in two generations is shared through their leases (``edge.leases``), so a
reload keeps warm channels, breaker state and limiter counters it did not change.

Quart (health, admin, metrics, OpenAPI) is the one part that is not rebuilt: it is the
``fallback`` every front hands unclaimed requests to, and it reads the current state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge.call import Terminal
from edge.config import Config, HttpUpstreamConfig
from edge.ingress.asgi import ASGIApp
from edge.ingress.calls import CallFactory
from edge.ingress.compression import Compression
from edge.ingress.connect import ConnectAdapter
from edge.ingress.cors import CorsRules, compile_policy
from edge.ingress.dispatch import Adapter, Dispatch
from edge.ingress.grpc_web import GrpcWebAdapter
from edge.ingress.proxy import ProxyAdapter
from edge.ingress.request_guard import RequestGuardASGI, RequestRules
from edge.ingress.transcoded import TranscodedAdapter
from edge.ingress.websocket import WebSocketAdapter
from edge.ingress.websocket_policy import WebSocketPolicy
from edge.leases import Lease
from edge.pipeline.build import Pipeline, build_pipeline
from edge.pipeline.chain import Layer, build_chain
from edge.pipeline.credentials import parse_networks
from edge.pipeline.events import NO_EVENTS
from edge.routes import Routes
from edge.routing.prefix_table import compile_proxy_routes
from edge.state import GatewayState, Generation, StateHolder
from edge.upstream.grpc import GrpcTerminal
from edge.upstream.headers import HeaderPolicy
from edge.upstream_settings import upstream_settings

if TYPE_CHECKING:
    from edge.observability.tracing import Tracing
    from edge.upstream.http_proxy import HttpProxyTerminal  # websockets: only with proxy routes


@dataclass(frozen=True, slots=True)
class Injected:
    """What ``create_app``'s callers put in place of the config's own parts (tests and
    benchmarks), kept over reloads."""

    layers: Sequence[Layer] | None = None
    terminal: Terminal | None = None
    tracing: Tracing | None = None


async def _close_proxy(proxy: HttpProxyTerminal) -> None:
    await proxy.close()


def _proxy_key(upstreams: dict[str, HttpUpstreamConfig]) -> tuple[str, ...]:
    return ("http proxy", *(f"{name}={u.model_dump_json()}" for name, u in upstreams.items()))


def assemble(
    config: Config,
    routes: Routes,
    *,
    fallback: ASGIApp,
    lease: Lease,
    injected: Injected = Injected(),
    generation: int = 1,
) -> GatewayState:
    """The gateway ``config`` describes, serving ``routes``; ``state.start()`` (inside the
    running loop: channels and pools belong to it) opens its connections.

    Raises ``ConfigError`` for a config that cannot be built (a policy needing credentials
    nobody configured, an unreadable TLS file). On any error the caller releases ``lease``:
    what was taken for this generation alone is closed, what others share is left alone.
    """
    terminal = injected.terminal
    if terminal is None:
        terminal = GrpcTerminal(upstream_settings(config), lease)
    if injected.layers is None:
        events: Any = NO_EVENTS
        if config.observability.metrics:
            from edge.observability.pipeline_events import PrometheusPipelineEvents

            events = PrometheusPipelineEvents()
        pipeline = build_pipeline(
            config, sidecar_policies=routes.sidecar_policies, events=events, lease=lease
        )
    else:
        pipeline = Pipeline(layers=list(injected.layers))
    if injected.tracing is not None:
        injected.tracing.install(pipeline.layers)
    layers = pipeline.layers
    calls = CallFactory(
        HeaderPolicy.of(config.headers.forward_request, config.headers.forward_response),
        token_query=config.auth.token_query_parameter,
        token_cookie=config.auth.token_cookie,
        trusted=parse_networks(config.rate_limiting.trusted_proxies),
    )
    websocket_policy = WebSocketPolicy.of(
        config.websocket,
        config.server.send_timeout,
        compile_policy(config.cors) if config.cors is not None else None,
    )
    proxy_adapter = None
    openers: list[Callable[[], Awaitable[None]]] = []
    if config.proxy_routes:
        from edge.upstream.http_proxy import HttpProxyTerminal

        proxy_routes = compile_proxy_routes(config.proxy_routes, config.http_upstreams)
        proxy = lease.take(
            _proxy_key(config.http_upstreams),
            lambda: HttpProxyTerminal(config.http_upstreams),
            _close_proxy,
        )
        openers.append(proxy.open)  # once: a kept terminal is already open
        proxy_adapter = ProxyAdapter(
            proxy_routes,
            build_chain(layers, proxy),  # through the same layers as gRPC calls
            calls,
            pipeline,
            websocket_policy=websocket_policy,
            paths=config.paths,
        )
    pinned = StateHolder.pinned_later()  # the adapters read this state alone (docstring)
    adapters: list[Adapter] = []
    if config.grpc_web.enabled:
        # gRPC-Web at a path no method serves is UNIMPLEMENTED, unless a proxy route takes it
        proxied = (
            (lambda scope, path: proxy_adapter.claim(scope, path) is not None)
            if proxy_adapter is not None
            else None
        )
        adapters.append(GrpcWebAdapter(pinned, proxied=proxied))
    if config.connect.enabled:
        adapters.append(ConnectAdapter(pinned, config.connect))
    # the proxy last, so a transcoded route wins over a proxy prefix
    adapters += [TranscodedAdapter(pinned), WebSocketAdapter(pinned)]
    if proxy_adapter is not None:
        adapters.append(proxy_adapter)
    cors = CorsRules.of(
        config.cors,
        [(policy.match, policy.cors) for policy in config.policies],
        config.default_policy.cors,
    )
    rules = RequestRules(
        merge_slashes=config.paths.merge_slashes,
        underscores=config.headers.underscores,
        body_idle_timeout=config.server.body_idle_timeout,
        body_min_rate=config.server.body_min_rate,
    )
    front = RequestGuardASGI(Dispatch(adapters, fallback, cors), rules)
    methods, opening = routes.upstream_methods(), terminal

    async def open_channels() -> None:
        opening.open(methods)  # an injected terminal is opened with each generation's

    openers.append(open_channels)
    state = GatewayState(
        routes=routes,
        chain=build_chain(layers, terminal),
        calls=calls,
        max_body_bytes=config.transcoding.max_body_bytes,
        websocket=websocket_policy,
        send_timeout=config.server.send_timeout,
        pipeline=pipeline,
        compression=Compression(
            config.compression,
            [(policy.match, policy.compression) for policy in config.policies],
            config.default_policy.compression,
            max_body_bytes=config.transcoding.max_body_bytes,
        ),
        config=config,
        front=front,
        terminal=terminal,
        lease=lease,
        life=Generation(generation),
        openers=tuple(openers),
    )
    pinned.current = state
    return state
