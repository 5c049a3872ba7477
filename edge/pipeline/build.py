"""Assembling the policy pipeline from config, at start-up and on every reload.

Order, outermost first: auth -> rate limit -> retry -> breaker -> terminal. Auth comes first so
limits can key on the verified subject; the breaker sits next to the upstream so that
401s and 429s never count as upstream failures. A layer with nothing to do for any route
is left out entirely, so an unconfigured gateway pays nothing for it.

What carries state is taken through the pipeline's ``Lease`` (``edge.leases``), keyed by
the settings it is made from, so a reload keeps it when those did not change: the limiter's
counters (memory) or its client (Redis), each upstream's breaker and in-flight counts, the
per-route breakers, the retry budget, and the open-stream counts (always kept, with the new
limits: the streams open now are still open). Verification keys are not kept: a reload
re-reads key files and refetches JWKS when they are next needed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge.call import Call
from edge.config import Config
from edge.errors import ConfigError
from edge.leases import Lease, Shared
from edge.pipeline.auth import AuthLayer, KeyRing
from edge.pipeline.breaker import BreakerLayer, UpstreamGuard, failure_code_numbers, guard_for
from edge.pipeline.chain import DONE, Layer
from edge.pipeline.credentials import parse_networks
from edge.pipeline.events import NO_EVENTS, PipelineEvents
from edge.pipeline.limiter_store import LimiterStore, MemoryLimiterStore, RedisLimiterStore
from edge.pipeline.policy import PolicyIndex
from edge.pipeline.ratelimit import RateLimitLayer
from edge.pipeline.retry import RetryBudget, RetryLayer
from edge.pipeline.stream_limits import StreamCounts, StreamLimitLayer
from edge.policy_config import PolicyConfig
from edge.sidecar import SidecarPolicy


@dataclass(slots=True)
class Pipeline:
    layers: list[Layer] = field(default_factory=list)
    index: PolicyIndex = field(default_factory=lambda: PolicyIndex([], PolicyConfig()))
    auth: AuthLayer | None = None
    ratelimit: RateLimitLayer | None = None
    breakers: BreakerLayer | None = None
    retry: RetryLayer | None = None
    streams: StreamLimitLayer | None = None
    lease: Lease = field(default_factory=lambda: Shared().lease())

    # -- the doors an ingress adapter uses; none of them reads a layer's private state --

    @property
    def checks_credentials(self) -> bool:
        """Whether any credentials are verified here (else a token is just forwarded)."""
        return self.auth is not None

    def authenticate(self, call: Call, *, again: bool = False) -> Awaitable[None]:
        """Verify the call's credentials now, before its body is read or its socket opened.

        Raises Unauthenticated or PermissionDenied (at once or when awaited) as the chain
        would; the chain's own auth layer then sees the call checked and does not verify it
        twice. ``again``: the call gained credentials or metadata since (a WebSocket's first
        frame), so check anew and strip forged claim headers from the new metadata too. Not
        a coroutine: a call decided at once (``DONE``) costs its caller no frame.
        """
        if self.auth is None:
            return DONE
        if again:
            self.auth.forget(call)
        return self.auth.authenticate(call)

    async def admit(self, call: Call, *, credentials_may_follow: bool = False) -> None:
        """Everything that can refuse a call before it starts (a WebSocket handshake).

        Credentials, then the route's limits, decided now so that a refused socket is a
        refused handshake (401, 403, 429) and the chain does not count the call again.
        With ``credentials_may_follow`` (the token may come in the first frame) and no
        credentials yet, nothing is decided: limits keyed on the user need the user.
        """
        if self.auth is not None:
            if not credentials_may_follow:
                await self.auth.authenticate(call)  # refuses a call without credentials
            if call.token is None and not self.auth.has_api_key(call):
                return
            await self.auth.authenticate(call)
        if self.ratelimit is not None:
            await self.ratelimit.precheck(call)

    async def admit_message(self, call: Call, connection: str) -> None:
        """One client message on an open socket, against the route's message limits."""
        if self.ratelimit is not None:
            await self.ratelimit.check_message(call, connection)

    def snapshot(self) -> dict[str, object]:
        return {
            "breakers": [
                g.snapshot()
                for g in [*self.breakers.guards.values(), *self.breakers.route_guards.values()]
                if g is not None
            ]
            if self.breakers
            else [],
            "rate_limiting": self.ratelimit.snapshot() if self.ratelimit else None,
            "streams": self.streams.snapshot() if self.streams else None,
            "retries": {
                "retried": self.retry.retried,
                "refused_by_budget": self.retry.budget_refusals,
            }
            if self.retry
            else None,
        }

    async def close(self) -> None:
        await self.lease.release()


async def _nothing_to_close(value: Any) -> None:
    return None


async def _close_store(store: Any) -> None:
    await store.close()


def _settings_key(*parts: Any) -> tuple[str, ...]:
    """A hashable key of config sections (pydantic models are compared by their JSON)."""
    return tuple(part if isinstance(part, str) else part.model_dump_json() for part in parts)


def build_pipeline(
    config: Config,
    upstreams: Iterable[str] | None = None,
    sidecar_policies: Sequence[SidecarPolicy] = (),
    events: PipelineEvents = NO_EVENTS,
    lease: Lease | None = None,
) -> Pipeline:
    """The pipeline the config describes; ``events`` hears what it reports (metrics).

    ``lease``: the generation's lease on the app's shared pool, through which state is kept
    across reloads (see the module docstring); without one nothing is shared.

    The pipeline never imports observability: ``edge.app`` passes the Prometheus
    recorder when ``observability.metrics`` is on. Raises ConfigError for a policy that
    needs credentials nobody configured, or a breaker for an unknown upstream.
    """
    index = PolicyIndex(config.policies, config.default_policy, config.sidecars_may_loosen)
    pipeline = Pipeline(index=index) if lease is None else Pipeline(index=index, lease=lease)
    lease = pipeline.lease
    auth_config = config.auth
    has_credentials = bool(auth_config.issuers or auth_config.api_keys.keys)
    if index.any_auth and not has_credentials:
        raise ConfigError("a policy requires auth, but auth has no issuers and no api_keys")
    # (sidecars that require auth without credentials are refused route by route instead)
    index.set_sidecars(sidecar_policies)
    if has_credentials or auth_config.claims_to_metadata:
        pipeline.auth = AuthLayer(auth_config, index, KeyRing(auth_config.issuers))
        pipeline.layers.append(pipeline.auth)
    # limits and retries may arrive with any reload (a sidecar): both layers are always in
    # the chain (an idle one costs a dict probe per call)
    limiting = config.rate_limiting
    store: LimiterStore
    if limiting.backend == "redis":
        url, timeout, prefix = limiting.redis_url, limiting.redis_timeout, limiting.redis_prefix
        store = lease.take(
            ("limiter", "redis", url, timeout, prefix),
            lambda: RedisLimiterStore.from_url(url, timeout=timeout, prefix=prefix),
            _close_store,
        )
    else:
        store = lease.take(
            ("limiter", "memory", limiting.max_keys, limiting.max_bytes),
            lambda: MemoryLimiterStore(limiting.max_keys, max_bytes=limiting.max_bytes),
            _nothing_to_close,
        )
    pipeline.ratelimit = RateLimitLayer(
        index,
        store,
        parse_networks(limiting.trusted_proxies),
        fail_open=limiting.on_backend_error == "allow",
        policy_header=limiting.policy_header,
        backend=limiting.backend,
        events=events,
    )
    pipeline.layers.append(pipeline.ratelimit)
    server = config.server
    if server.max_streams is not None or server.max_streams_per_client is not None:
        counts = lease.take(("stream counts",), lambda: StreamCounts(None, None), _nothing_to_close)
        counts.total_limit, counts.per_client = server.max_streams, server.max_streams_per_client
        pipeline.streams = StreamLimitLayer(counts, parse_networks(limiting.trusted_proxies))
        pipeline.layers.append(pipeline.streams)
    names = (
        list(upstreams) if upstreams is not None else [*config.upstreams, *config.http_upstreams]
    )
    # outside the breaker: every attempt is seen by it, and an open one ends the retries
    budget = config.retry_budget
    retry_budget = lease.take(
        ("retry budget", *_settings_key(budget)),
        lambda: RetryBudget(budget.ratio, budget.min_retries_per_second),
        _nothing_to_close,
    )
    pipeline.retry = RetryLayer(index, retry_budget)
    pipeline.layers.append(pipeline.retry)
    unknown = set(config.breakers.upstreams) - set(names)
    if unknown:
        raise ConfigError(f"breakers.upstreams names unknown upstreams {sorted(unknown)}")
    guards: dict[str, UpstreamGuard] = {}
    for name in names:
        breaker = config.breakers.upstreams.get(name, config.breakers.default)
        upstream = config.upstreams.get(name) or config.http_upstreams.get(name)
        guards[name] = lease.take(
            ("breaker", name, *_settings_key(breaker, upstream or "")),
            lambda name=name, breaker=breaker: guard_for(name, breaker),  # type: ignore[misc]
            _nothing_to_close,
        )
    routes = list(config.breakers.routes.items())
    route_guards: dict[str, UpstreamGuard | None] = lease.take(
        ("route breakers", *_settings_key(config.breakers), *(p for p, _ in routes)),
        dict,
        _nothing_to_close,
    )
    if routes or any(
        g.breaker is not None or g.max_requests or g.max_streams for g in guards.values()
    ):
        pipeline.breakers = BreakerLayer(
            guards,
            failure_code_numbers(config.breakers.failure_codes),
            route_configs=routes,
            events=events,
            route_guards=route_guards,
        )
        pipeline.layers.append(pipeline.breakers)
    attempts = events.attempt_layer()
    if attempts is not None:
        pipeline.layers.append(attempts)  # innermost: one count per upstream attempt
    return pipeline
