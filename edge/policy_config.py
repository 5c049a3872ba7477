"""Configuration of the policy pipeline: authentication, rate limits, breakers, concurrency.

Kept apart from ``config.py`` (transport and routing) because it is its own vocabulary.
Policies attach to *route names*: a transcoded call's route is its gRPC method's full
name (``package.Service.Method``), a proxied call's is ``proxy:<prefix>``. A policy's
``match`` is a list of shell-style globs over those names; the first policy that matches
a route applies to it, and ``default_policy`` applies where none does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge.cors_config import CorsConfig
from edge.pipeline.jwt_core import SUPPORTED_ALGORITHMS
from edge.redaction import redact_url
from edge.units import Seconds, SecondsOrZero

GRPC_CODE_NAMES = (
    "CANCELLED UNKNOWN INVALID_ARGUMENT DEADLINE_EXCEEDED NOT_FOUND ALREADY_EXISTS "
    "PERMISSION_DENIED RESOURCE_EXHAUSTED FAILED_PRECONDITION ABORTED OUT_OF_RANGE "
    "UNIMPLEMENTED INTERNAL UNAVAILABLE DATA_LOSS UNAUTHENTICATED"
).split()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyConfig(_Model):
    """A static verification key: a PEM public key file, or a shared secret (HS*)."""

    kid: str | None = None
    pem_file: Path | None = None
    secret: str | None = None  # use ${ENV_VAR}; never write the secret itself in the file

    @model_validator(mode="after")
    def _one_source(self) -> KeyConfig:
        if (self.pem_file is None) == (self.secret is None):
            raise ValueError("give exactly one of pem_file or secret")
        return self


class IssuerConfig(_Model):
    issuer: str
    algorithms: list[str]
    audiences: list[str] = Field(default_factory=list)
    leeway: SecondsOrZero = 30.0
    required_claims: list[str] = Field(default_factory=lambda: ["exp"])
    keys: list[KeyConfig] = Field(default_factory=list)
    jwks_url: str | None = None
    jwks_max_age: Seconds = 3600.0  # ceiling on the JWKS cache, whatever its headers say
    jwks_min_refresh: Seconds = 30.0  # at most one refetch per this, on an unknown kid

    @model_validator(mode="after")
    def _valid(self) -> IssuerConfig:
        unknown = set(self.algorithms) - SUPPORTED_ALGORITHMS
        if unknown:
            raise ValueError(f"unsupported algorithms {sorted(unknown)}")
        if not self.algorithms:
            raise ValueError("list the accepted algorithms explicitly")
        if not self.keys and not self.jwks_url:
            raise ValueError("give keys, a jwks_url, or both")
        return self


class ApiKeysConfig(_Model):
    header: str | None = "x-api-key"
    query_parameter: str | None = None
    keys: dict[str, str] = Field(default_factory=dict)  # name -> key (use ${ENV_VAR})


class AuthConfig(_Model):
    issuers: list[IssuerConfig] = Field(default_factory=list)
    api_keys: ApiKeysConfig = Field(default_factory=ApiKeysConfig)
    # verified claims sent upstream: metadata/header name -> claim name
    claims_to_metadata: dict[str, str] = Field(default_factory=dict)
    forward_authorization: bool = False
    scope_claim: str | None = None  # default: "scope" (space-separated) or "scp" (list)
    # besides Authorization: Bearer, for browsers (EventSource cannot set headers)
    token_query_parameter: str | None = None
    token_cookie: str | None = None


SLIDING_LOG_MAX = 1000


class LimitConfig(_Model):
    algorithm: Literal["token_bucket", "sliding_window", "sliding_log", "leaky_bucket"]
    limit: int = Field(gt=0)
    period: Seconds = 1.0
    burst: int | None = Field(default=None, gt=0)
    mode: Literal["reject", "queue"] = "reject"
    max_delay: SecondsOrZero = 0.0
    # what a client is: ip, route, sub, api_key, claim:<name>, header:<name>; combined
    key: list[str] = Field(default_factory=lambda: ["ip"])
    name: str | None = None

    @model_validator(mode="after")
    def _valid(self) -> LimitConfig:
        for part in self.key:
            if part not in ("ip", "route", "sub", "api_key") and not part.startswith(
                ("claim:", "header:")
            ):
                raise ValueError(f"unknown key part {part!r}")
        if self.mode == "queue" and self.algorithm != "leaky_bucket":
            raise ValueError("mode: queue is for the leaky_bucket algorithm")
        if self.algorithm == "sliding_log" and self.limit > SLIDING_LOG_MAX:
            # the log keeps one timestamp per request: memory is limit x keys
            raise ValueError(
                f"sliding_log keeps a timestamp per request; use a limit of at most "
                f"{SLIDING_LOG_MAX}, or sliding_window for larger ones"
            )
        return self


class RateLimitingConfig(_Model):
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_timeout: Seconds = 0.25
    redis_prefix: str = "edge:rl:"
    on_backend_error: Literal["allow", "deny"] = "allow"
    max_keys: int = Field(default=100_000, gt=0)
    max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)  # memory backend: approximate bound
    # peers whose X-Forwarded-For is believed (e.g. the load balancer)
    trusted_proxies: list[str] = Field(default_factory=list)
    policy_header: bool = True  # also send RateLimit-Policy

    @model_validator(mode="after")
    def _redis_scheme(self) -> RateLimitingConfig:
        # redis-py would refuse it only at start-up; the message shows the URL redacted
        if not self.redis_url.lower().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"redis_url {redact_url(self.redis_url)!r} must start with redis://, "
                "rediss:// or unix://"
            )
        return self


class BreakerConfig(_Model):
    enabled: bool = True
    consecutive_failures: int = Field(default=5, ge=1)
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    minimum_calls: int = Field(default=20, ge=1)
    window: Seconds = 10.0
    cooldown: Seconds = 5.0
    # the wait instead of cooldown when the upstream could not be connected to at all:
    # the probe is then a connect attempt, and an upstream that is back is used at once
    unreachable_cooldown: Seconds = 0.25
    probes: int = Field(default=1, ge=1)
    max_requests: int | None = Field(default=None, ge=1)  # in flight to the upstream
    max_streams: int | None = Field(default=None, ge=1)  # streaming calls in flight


class BreakersConfig(_Model):
    default: BreakerConfig = Field(default_factory=BreakerConfig)
    upstreams: dict[str, BreakerConfig] = Field(default_factory=dict)
    # per-route breakers instead of the upstream's: route-name glob -> settings
    routes: dict[str, BreakerConfig] = Field(default_factory=dict)
    failure_codes: list[str] = Field(
        default_factory=lambda: ["UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "UNKNOWN"]
    )

    @model_validator(mode="after")
    def _codes(self) -> BreakersConfig:
        unknown = set(self.failure_codes) - set(GRPC_CODE_NAMES)
        if unknown:
            raise ValueError(f"unknown gRPC codes {sorted(unknown)}")
        return self


class AuthRequirement(_Model):
    """``public``, ``token`` (any valid token or API key) or ``scopes`` (all of them)."""

    require: Literal["public", "token", "scopes"] = "public"
    scopes: list[str] = Field(default_factory=list)
    api_keys: bool = True  # whether an API key satisfies ``token``


class RetryConfig(_Model):
    """Retries of unary calls, only where safe (docs/policies.md, "Retries")."""

    attempts: int = Field(default=1, ge=1, le=10)  # 1: no retries
    codes: list[str] = Field(default_factory=lambda: ["UNAVAILABLE"])
    safe: bool = False  # treat the route as idempotent even if its proto does not say so
    backoff: Seconds = 0.025  # base of the exponential backoff (full jitter)
    max_backoff: Seconds = 1.0

    @model_validator(mode="after")
    def _codes(self) -> RetryConfig:
        unknown = set(self.codes) - set(GRPC_CODE_NAMES)
        if unknown:
            raise ValueError(f"unknown gRPC codes {sorted(unknown)}")
        return self


class RetryBudgetConfig(_Model):
    """Gateway-wide: retries <= ratio x calls over 10 s, plus a floor for quiet times."""

    ratio: float = Field(default=0.2, ge=0, le=1)
    min_retries_per_second: float = Field(default=10.0, ge=0)


class PolicyConfig(_Model):
    match: list[str] = Field(default_factory=lambda: ["*"])
    auth: AuthRequirement = Field(default_factory=AuthRequirement)
    rate_limits: list[LimitConfig] = Field(default_factory=list)
    limit_messages: list[LimitConfig] = Field(default_factory=list)  # per WebSocket message
    retry: RetryConfig = Field(default_factory=RetryConfig)
    # CORS for the routes this policy matches, instead of the global ``cors``
    cors: CorsConfig | None = None
    # response compression for the routes this policy matches (null: compression.enabled)
    compression: bool | None = None
