"""Per-route policies, resolved once per route name and then looked up in one dict probe."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from edge.pipeline.limiter_core import LimitSpec
from edge.policy_config import LimitConfig, PolicyConfig, RetryConfig
from edge.transcode.status import GRPC_CODE_BY_NUMBER


@dataclass(frozen=True, slots=True)
class Limit:
    spec: LimitSpec
    key_parts: tuple[str, ...]
    key_prefix: str  # which policy and limit, so two policies never share counters
    label: str  # for RateLimit-Policy and logs


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    name: str  # the first matching pattern, or "default"
    require: str  # "public", "token" or "scopes"
    scopes: frozenset[str]
    api_keys: bool
    limits: tuple[Limit, ...]
    message_limits: tuple[Limit, ...]
    retry: RetryPolicy | None


def _limits(policy_index: int | str, configs: list[LimitConfig], kind: str) -> tuple[Limit, ...]:
    limits = []
    for index, config in enumerate(configs):
        spec = LimitSpec(
            algorithm=config.algorithm,
            limit=config.limit,
            period=config.period,
            burst=config.burst,
            mode=config.mode,
            max_delay=config.max_delay,
        )
        label = config.name or f"{config.limit};w={config.period:g}"
        limits.append(Limit(spec, tuple(config.key), f"{kind}{policy_index}.{index}", label))
    return tuple(limits)


def _compile_sidecar(config: PolicyConfig) -> RoutePolicy:
    pattern = config.match[0]
    return RoutePolicy(
        name=f"sidecar:{pattern}",
        require=config.auth.require,
        scopes=frozenset(config.auth.scopes),
        api_keys=config.auth.api_keys,
        limits=_limits(f"s:{pattern}:", config.rate_limits, "p"),
        message_limits=_limits(f"s:{pattern}:", config.limit_messages, "m"),
        retry=_retry(config.retry),
    )


def _compile(index: int, name: str, config: PolicyConfig) -> RoutePolicy:
    return RoutePolicy(
        name=name,
        require=config.auth.require,
        scopes=frozenset(config.auth.scopes),
        api_keys=config.auth.api_keys,
        limits=_limits(index, config.rate_limits, "p"),
        message_limits=_limits(index, config.limit_messages, "m"),
        retry=_retry(config.retry),
    )


def _retry(config: RetryConfig) -> RetryPolicy | None:
    if config.attempts <= 1:
        return None
    by_name = {code.name: number for number, code in GRPC_CODE_BY_NUMBER.items()}
    return RetryPolicy(
        attempts=config.attempts,
        codes=frozenset(by_name[name] for name in config.codes),
        safe=config.safe,
        backoff=config.backoff,
        max_backoff=config.max_backoff,
    )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int
    codes: frozenset[int]
    safe: bool
    backoff: float
    max_backoff: float


class PolicyIndex:
    """Route name -> policy: the first policy whose ``match`` globs accept the name."""

    def __init__(self, policies: list[PolicyConfig], default: PolicyConfig) -> None:
        self._policies = [
            (tuple(p.match), _compile(i, ",".join(p.match), p)) for i, p in enumerate(policies)
        ]
        self._default = _compile(len(policies), "default", default)
        self._sidecars: list[tuple[tuple[str, ...], RoutePolicy]] = []
        self._cache: dict[str, RoutePolicy] = {}

    def set_sidecars(self, policies: list[PolicyConfig]) -> None:
        """Policies from ``*.edge.yaml`` files: below the config's, above the default.

        Called at start-up and on every descriptor reload; limit counters are keyed by the
        sidecar's method pattern, so they survive reloads that keep it.
        """
        self._sidecars = [(tuple(p.match), _compile_sidecar(p)) for p in policies]
        self._cache = {}

    def for_route(self, route: str) -> RoutePolicy:
        found = self._cache.get(route)
        if found is None:
            # sidecars speak for gRPC methods only, never for the operator's proxy routes
            tiers = (
                self._policies
                if route.startswith("proxy:")
                else (
                    *self._policies,
                    *self._sidecars,
                )
            )
            found = next(
                (
                    policy
                    for patterns, policy in tiers
                    if any(fnmatchcase(route, pattern) for pattern in patterns)
                ),
                self._default,
            )
            self._cache[route] = found  # route names are finite: methods and proxy prefixes
        return found

    @property
    def any_auth(self) -> bool:
        return any(p.require != "public" for _, p in (*self._policies, *self._sidecars)) or (
            self._default.require != "public"
        )

    @property
    def any_retries(self) -> bool:
        return any(p.retry for _, p in (*self._policies, *self._sidecars)) or (
            self._default.retry is not None
        )

    @property
    def any_limits(self) -> bool:
        return any(
            p.limits or p.message_limits for _, p in (*self._policies, *self._sidecars)
        ) or bool(self._default.limits or self._default.message_limits)
