"""Per-route policies, resolved once per route name and then looked up in one dict probe."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from edge.pipeline.limit_keys import KeyBuilder, key_builder
from edge.pipeline.limiter_core import LimitSpec
from edge.policy_config import LimitConfig, PolicyConfig, RetryConfig
from edge.sidecar import BoundedPolicy, SidecarPolicy, may_loosen
from edge.transcode.status import GRPC_CODE_BY_NUMBER


@dataclass(frozen=True, slots=True)
class Limit:
    spec: LimitSpec
    key_parts: tuple[str, ...]
    key_prefix: str  # which policy and limit, so two policies never share counters
    label: str  # for RateLimit-Policy and logs
    # made once here: ``limit_key`` for this limit (``limit_keys.key_builder``), and its
    # RateLimit-Limit field, the same on every reply
    key_of: KeyBuilder = field(init=False, repr=False, compare=False)
    limit_field: tuple[bytes, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_of", key_builder(self.key_parts, self.key_prefix))
        object.__setattr__(self, "limit_field", (b"ratelimit-limit", b"%d" % self.spec.quota))


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    name: str  # the first matching pattern, or "default"
    require: str  # "public", "token" or "scopes"
    scopes: frozenset[str]
    api_keys: bool
    limits: tuple[Limit, ...]
    message_limits: tuple[Limit, ...]
    retry: RetryPolicy | None
    # RateLimit-Policy's values (and field), made once here rather than on every request
    limits_label: bytes = field(init=False)
    message_limits_label: bytes = field(init=False)
    policy_field: tuple[bytes, bytes] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "limits_label", limits_label(self.limits))
        object.__setattr__(self, "policy_field", (b"ratelimit-policy", self.limits_label))
        object.__setattr__(self, "message_limits_label", limits_label(self.message_limits))


def limits_label(limits: Sequence[Limit]) -> bytes:
    """``RateLimit-Policy``'s value: every limit's label, in the policy's order."""
    return ", ".join(limit.label for limit in limits).encode()


def _limits(
    policy_index: int | str, configs: Sequence[LimitConfig], kind: str
) -> tuple[Limit, ...]:
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


def _compile_sidecar(pattern: str, bounded: BoundedPolicy, default: RoutePolicy) -> RoutePolicy:
    """A sidecar key's policy; the default's limits, kept, keep the default's counters."""
    auth = bounded.auth
    limits = _limits(f"s:{pattern}:", bounded.rate_limits, "p")
    messages = _limits(f"s:{pattern}:", bounded.limit_messages, "m")
    return RoutePolicy(
        name=f"sidecar:{pattern}",
        require=auth.require,
        scopes=frozenset(auth.scopes),
        api_keys=auth.api_keys,
        limits=(default.limits if bounded.keep_default_limits else ()) + limits,
        message_limits=(default.message_limits if bounded.keep_default_message_limits else ())
        + messages,
        retry=_retry(bounded.retry),
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
    """Route name -> policy: the first policy whose ``match`` globs accept the name.

    Tiers, first match wins: the config's ``policies``, then the sidecars' keys (gRPC
    methods only), then ``default_policy``. A sidecar's policy comes bounded by the
    default policy (``edge.sidecar.bound_policy``), unless the method's service is listed
    in ``sidecars_may_loosen``.
    """

    def __init__(
        self,
        policies: list[PolicyConfig],
        default: PolicyConfig,
        sidecars_may_loosen: Sequence[str] = (),
    ) -> None:
        self._policies = [
            (tuple(p.match), _compile(i, ",".join(p.match), p)) for i, p in enumerate(policies)
        ]
        self._default = _compile(len(policies), "default", default)
        self._may_loosen = tuple(sidecars_may_loosen)
        # per sidecar key: (pattern, policy bounded by the default, policy as written)
        self._sidecars: list[tuple[str, RoutePolicy, RoutePolicy]] = []
        self._cache: dict[str, RoutePolicy] = {}

    def set_sidecars(self, policies: Sequence[SidecarPolicy]) -> None:
        """Policies from ``*.edge.yaml`` files: below the config's, above the default.

        Called at start-up and on every descriptor reload; limit counters are keyed by the
        sidecar's method pattern, so they survive reloads that keep it.
        """
        self._sidecars = [
            (
                p.pattern,
                _compile_sidecar(p.pattern, p.bounded, self._default),
                _compile_sidecar(p.pattern, p.loose, self._default),
            )
            for p in policies
        ]
        self._cache = {}

    def for_route(self, route: str) -> RoutePolicy:
        found = self._cache.get(route)
        if found is None:
            found = self._resolve(route)
            self._cache[route] = found  # route names are finite: methods and proxy prefixes
        return found

    def _resolve(self, route: str) -> RoutePolicy:
        for patterns, policy in self._policies:
            if any(fnmatchcase(route, pattern) for pattern in patterns):
                return policy
        if not route.startswith("proxy:"):  # sidecars never speak for proxy routes
            for pattern, bounded, loose in self._sidecars:
                if fnmatchcase(route, pattern):
                    return loose if may_loosen(self._may_loosen, route) else bounded
        return self._default

    def _all(self) -> list[RoutePolicy]:
        return [
            *(p for _, p in self._policies),
            *(p for _, bounded, loose in self._sidecars for p in (bounded, loose)),
            self._default,
        ]

    @property
    def any_auth(self) -> bool:
        return any(p.require != "public" for p in self._all())
