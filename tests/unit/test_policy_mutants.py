"""edge.pipeline.policy, pinned where mutation testing found the tests loose.

Every limit setting as the limiter gets it, and a sidecar's compiled policy field by
field: its tightened auth (scopes, API keys), its own limits beside the default's (or
alone, where it may loosen), its message limits, its retry. The key prefixes name the
counters in the limiter store (Redis keys too), so they are held exactly: a rename would
hand every client a fresh allowance at the next deploy, and two limits sharing one would
share a counter.
"""

from __future__ import annotations

from edge.pipeline.limiter_core import LimitSpec
from edge.pipeline.policy import Limit, PolicyIndex, RetryPolicy
from edge.policy_config import AuthRequirement, LimitConfig, PolicyConfig
from edge.sidecar import Sidecar, SidecarFile, Sidecars

DEFAULT = PolicyConfig(
    auth=AuthRequirement(require="token"),
    rate_limits=[LimitConfig(algorithm="token_bucket", limit=100, period=1.0)],
    limit_messages=[LimitConfig(algorithm="sliding_log", limit=50, period=1.0)],
)
SIDECAR = {
    "methods": {
        "pkg.v1.Svc.*": {
            "auth": {"require": "scopes", "scopes": ["svc.read"], "api_keys": False},
            "rate_limits": [{"algorithm": "sliding_window", "limit": 10, "period": "1s"}],
            "limit_messages": [{"algorithm": "token_bucket", "limit": 5, "period": "1s"}],
            "retry": {"attempts": 3, "backoff": "10ms"},
        }
    }
}


def compiled() -> PolicyIndex:
    index = PolicyIndex([], DEFAULT)
    file = SidecarFile.model_validate(SIDECAR)
    sidecars = Sidecars(
        tuple(Sidecar(p, settings, "pkg/svc.edge.yaml") for p, settings in file.methods.items())
    )
    index.set_sidecars(sidecars.policies(DEFAULT))
    return index


def test_a_sidecars_policy_field_by_field() -> None:
    index = compiled()
    policy = index.for_route("pkg.v1.Svc.Get")
    default = index.for_route("pkg.v1.Other.Get")
    assert policy.name == "sidecar:pkg.v1.Svc.*"
    assert (policy.require, policy.scopes, policy.api_keys) == (
        "scopes",
        frozenset({"svc.read"}),
        False,
    )
    assert [limit.key_prefix for limit in default.limits] == ["p0.0"]
    assert [limit.key_prefix for limit in policy.limits] == ["p0.0", "ps:pkg.v1.Svc.*:.0"]
    assert [limit.spec.limit for limit in policy.limits] == [100, 10]
    assert [limit.key_prefix for limit in policy.message_limits] == [
        "m0.0",
        "ms:pkg.v1.Svc.*:.0",
    ]
    assert [limit.spec.limit for limit in policy.message_limits] == [50, 5]
    assert policy.retry == RetryPolicy(
        attempts=3, codes=frozenset({14}), safe=False, backoff=0.01, max_backoff=1.0
    )
    assert default.retry is None


def test_every_limit_setting_reaches_the_limiter() -> None:
    configs = [
        LimitConfig(
            algorithm="leaky_bucket",
            limit=10,
            period=2.0,
            burst=7,
            mode="queue",
            max_delay=0.5,
            key=["sub", "ip"],
        ),
        LimitConfig(algorithm="sliding_log", limit=3, period=60.0, name="per-minute"),
    ]
    index = PolicyIndex([PolicyConfig(match=["pkg.*"], rate_limits=configs)], DEFAULT)
    assert index.for_route("pkg.Svc.Get").limits == (
        Limit(
            LimitSpec("leaky_bucket", 10, 2.0, burst=7, mode="queue", max_delay=0.5),
            ("sub", "ip"),
            "p0.0",
            "10;w=2",  # RateLimit-Policy's form when the limit has no name
        ),
        Limit(LimitSpec("sliding_log", 3, 60.0), ("ip",), "p0.1", "per-minute"),
    )


def test_a_sidecar_allowed_to_loosen_keeps_its_own_name_and_counters_only() -> None:
    index = PolicyIndex([], DEFAULT, sidecars_may_loosen=["pkg.v1.Svc"])
    file = SidecarFile.model_validate(SIDECAR)
    sidecars = Sidecars(
        tuple(Sidecar(p, settings, "pkg/svc.edge.yaml") for p, settings in file.methods.items())
    )
    index.set_sidecars(sidecars.policies(DEFAULT))
    policy = index.for_route("pkg.v1.Svc.Get")
    assert policy.name == "sidecar:pkg.v1.Svc.*"
    assert [limit.key_prefix for limit in policy.limits] == ["ps:pkg.v1.Svc.*:.0"]
    assert [limit.key_prefix for limit in policy.message_limits] == ["ms:pkg.v1.Svc.*:.0"]


def test_a_configured_policy_is_named_for_its_globs_and_keeps_its_retry() -> None:
    retrying = PolicyConfig(match=["pkg.Svc.Get", "pkg.Svc.List"], retry={"attempts": 2})
    policy = PolicyIndex([retrying], DEFAULT).for_route("pkg.Svc.List")
    assert policy.name == "pkg.Svc.Get,pkg.Svc.List"
    assert policy.retry == RetryPolicy(
        attempts=2, codes=frozenset({14}), safe=False, backoff=0.025, max_backoff=1.0
    )
