"""edge.pipeline.policy, pinned where mutation testing found the tests loose.

A sidecar's compiled policy, field by field: its tightened auth (scopes, API keys), its own
limits beside the default's, its message limits, its retry. The key prefixes name the
counters in the limiter store (Redis keys too), so they are held exactly: a rename would
hand every client a fresh allowance at the next deploy, and two limits sharing one would
share a counter.
"""

from __future__ import annotations

from edge.pipeline.policy import PolicyIndex, RetryPolicy
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
