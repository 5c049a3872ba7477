"""What a sidecar may change: tighten ``default_policy``'s auth and add limits, never loosen.

The auth order is checked against the real auth layer: a requirement is at least as
strict as another exactly when every credential it admits, the other admits too.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import jwt
import pytest

from edge.call import Call
from edge.errors import EdgeError
from edge.pipeline.auth import AuthLayer, KeyRing
from edge.pipeline.policy import PolicyIndex
from edge.policy_config import (
    ApiKeysConfig,
    AuthConfig,
    AuthRequirement,
    IssuerConfig,
    KeyConfig,
    LimitConfig,
    PolicyConfig,
    RetryConfig,
)
from edge.sidecar import (
    MethodSettings,
    Sidecar,
    SidecarFile,
    Sidecars,
    at_least_as_strict,
    bound_policy,
    may_loosen,
    sidecar_policy_for,
    stricter_auth,
)

PUBLIC = AuthRequirement(require="public")
TOKEN = AuthRequirement(require="token")
TOKEN_ONLY = AuthRequirement(require="token", api_keys=False)


def scopes(*names: str) -> AuthRequirement:
    return AuthRequirement(require="scopes", scopes=list(names))


# -- the decision: tighten or loosen ------------------------------------------------------


@pytest.mark.parametrize(
    ("default", "wanted", "applied", "loosens"),
    [
        (PUBLIC, PUBLIC, PUBLIC, False),
        (PUBLIC, TOKEN, TOKEN, False),
        (PUBLIC, scopes("a"), scopes("a"), False),
        (TOKEN, TOKEN, TOKEN, False),
        (TOKEN, TOKEN_ONLY, TOKEN_ONLY, False),  # no API keys: fewer callers
        (TOKEN, scopes(), scopes(), False),  # a token, never an API key
        (TOKEN, scopes("a"), scopes("a"), False),
        (TOKEN_ONLY, scopes(), scopes(), False),  # the same callers
        (scopes("a"), scopes("a", "b"), scopes("a", "b"), False),  # scopes are only added
        (TOKEN, PUBLIC, TOKEN, True),
        (TOKEN_ONLY, TOKEN, TOKEN_ONLY, True),  # would let API keys in
        (scopes("a"), PUBLIC, scopes("a"), True),
        (scopes("a"), TOKEN, scopes("a"), True),
        (scopes("a"), TOKEN_ONLY, scopes("a"), True),
        (scopes("a", "b"), scopes("a"), scopes("a", "b"), True),
        (scopes("a"), scopes("b"), scopes("a", "b"), True),  # neither holds the other: both
    ],
)
def test_a_sidecar_may_tighten_auth_but_not_loosen_it(
    default: AuthRequirement, wanted: AuthRequirement, applied: AuthRequirement, loosens: bool
) -> None:
    bounded = bound_policy(
        PolicyConfig(auth=default), MethodSettings(auth=wanted), may_loosen=False
    )
    assert bounded.auth == applied
    assert bool(bounded.refused) is loosens
    if loosens:
        assert bounded.refused[0].startswith("auth ")
        assert "would loosen default_policy's" in bounded.refused[0]
    allowed = bound_policy(PolicyConfig(auth=default), MethodSettings(auth=wanted), may_loosen=True)
    assert allowed.auth == wanted and not allowed.refused  # the operator said so


def test_a_sidecar_without_auth_keeps_the_default() -> None:
    settings = MethodSettings(retry=RetryConfig(attempts=2))
    for loose in (False, True):
        bounded = bound_policy(PolicyConfig(auth=scopes("a")), settings, may_loosen=loose)
        assert bounded.auth == scopes("a") and not bounded.refused
        assert bounded.retry.attempts == 2


LIMIT = LimitConfig(algorithm="token_bucket", limit=100, period=1.0)
MINE = LimitConfig(algorithm="token_bucket", limit=1000, period=1.0, name="mine")


@pytest.mark.parametrize(
    ("default_limits", "wanted", "loose", "keep", "own", "noted"),
    [
        ([LIMIT], None, False, True, (), False),  # nothing said: the default's
        ([LIMIT], None, True, True, (), False),
        ([LIMIT], [], False, True, (), True),  # "no limits": the default's still count
        ([LIMIT], [MINE], False, True, (MINE,), True),  # added, not instead
        ([LIMIT], [], True, False, (), False),  # allowed: replaced
        ([LIMIT], [MINE], True, False, (MINE,), False),
        ([], [MINE], False, True, (MINE,), False),  # nothing to replace
    ],
)
def test_sidecar_limits_add_to_the_default_ones(
    default_limits: list[LimitConfig],
    wanted: list[LimitConfig] | None,
    loose: bool,
    keep: bool,
    own: tuple[LimitConfig, ...],
    noted: bool,
) -> None:
    default = PolicyConfig(rate_limits=default_limits, limit_messages=default_limits)
    settings = MethodSettings(rate_limits=wanted, limit_messages=wanted)
    bounded = bound_policy(default, settings, may_loosen=loose)
    assert bounded.keep_default_limits is keep and bounded.keep_default_message_limits is keep
    assert bounded.rate_limits == own and bounded.limit_messages == own
    assert len(bounded.notes) == (2 if noted else 0)
    assert not bounded.refused  # limits are never a problem: they add


@pytest.mark.parametrize(
    ("services", "method", "allowed"),
    [
        ([], "pkg.v1.Svc.Get", False),
        (["pkg.v1.Svc"], "pkg.v1.Svc.Get", True),
        (["pkg.v1.*"], "pkg.v1.Svc.Get", True),
        (["pkg.v1.Svc"], "pkg.v1.SvcAdmin.Get", False),
        (["pkg.v1.Svc.Get"], "pkg.v1.Svc.Get", False),  # services, not methods
        (["*"], "pkg.v1.Svc.Get", True),
    ],
)
def test_may_loosen_names_services(services: list[str], method: str, allowed: bool) -> None:
    assert may_loosen(services, method) is allowed


# -- the order is the auth layer's own ----------------------------------------------------

SECRET = "s" * 40
ISSUER = IssuerConfig(issuer="i", algorithms=["HS256"], keys=[KeyConfig(secret=SECRET)])
AUTH = AuthConfig(issuers=[ISSUER], api_keys=ApiKeysConfig(keys={"ci": "the-key"}))
REQUIREMENTS = [
    PUBLIC,
    AuthRequirement(require="public", api_keys=False),
    TOKEN,
    TOKEN_ONLY,
    scopes(),
    scopes("a"),
    scopes("b"),
    scopes("a", "b"),
    AuthRequirement(require="scopes", scopes=["a"], api_keys=False),
]
CREDENTIALS: list[dict[str, Any]] = [
    {},
    {"headers": [(b"x-api-key", b"the-key")]},
    *(
        {"token": jwt.encode({"iss": "i", "scope": s, "exp": 4102444800}, SECRET)}
        for s in ("", "a", "b", "a b")
    ),
]


def admitted(requirement: AuthRequirement) -> frozenset[int]:
    """Which of CREDENTIALS the real auth layer admits under this requirement."""
    layer = AuthLayer(AUTH, PolicyIndex([], PolicyConfig(auth=requirement)), KeyRing([ISSUER]))

    async def each() -> frozenset[int]:
        passed = set()
        for number, credential in enumerate(CREDENTIALS):
            call = Call(upstream="u", route="pkg.Svc.M", metadata=[], timeout=None, **credential)
            try:
                await layer.authenticate(call)
            except EdgeError:
                continue
            passed.add(number)
        return frozenset(passed)

    return asyncio.run(each())


ADMITTED = {index: admitted(r) for index, r in enumerate(REQUIREMENTS)}


@pytest.mark.parametrize(
    ("candidate", "floor"), list(itertools.product(range(len(REQUIREMENTS)), repeat=2))
)
def test_the_order_is_the_auth_layers(candidate: int, floor: int) -> None:
    stricter = at_least_as_strict(REQUIREMENTS[candidate], REQUIREMENTS[floor])
    assert stricter is (ADMITTED[candidate] <= ADMITTED[floor])


@pytest.mark.parametrize(
    ("floor", "wanted"), list(itertools.product(range(len(REQUIREMENTS)), repeat=2))
)
def test_what_applies_admits_only_what_both_admit(floor: int, wanted: int) -> None:
    applied = stricter_auth(REQUIREMENTS[floor], REQUIREMENTS[wanted])
    assert admitted(applied) == ADMITTED[floor] & ADMITTED[wanted]


# -- the pipeline's index: the bounded policy, and the default's counters ------------------


def index_for(sidecar: dict[str, Any], default: PolicyConfig, **options: Any) -> PolicyIndex:
    policies = options.pop("policies", [])
    index = PolicyIndex(policies, default, **options)
    file = SidecarFile.model_validate(sidecar)
    entries = Sidecars(
        tuple(
            Sidecar(pattern, settings, "pkg/hostile.edge.yaml")
            for pattern, settings in file.methods.items()
        )
    )
    index.set_sidecars(entries.policies(default))
    return index


DEFAULT = PolicyConfig(auth=TOKEN, rate_limits=[LIMIT])
HOSTILE = {"methods": {"*": {"auth": {"require": "public"}, "rate_limits": []}}}


def test_the_index_applies_the_bounded_policy() -> None:
    index = index_for(HOSTILE, DEFAULT)
    policy = index.for_route("pkg.v1.Svc.Get")
    default = index.for_route("proxy:/api")  # sidecars never apply to proxy routes
    assert policy.name == "sidecar:*" and policy.require == "token"
    assert default.name == "default"
    # the default's limit, with the default's counter: no fresh allowance
    assert [limit.key_prefix for limit in policy.limits] == [
        limit.key_prefix for limit in default.limits
    ]


def test_the_index_lets_listed_services_loosen() -> None:
    index = index_for(HOSTILE, DEFAULT, sidecars_may_loosen=["pkg.v1.Open*"])
    assert index.for_route("pkg.v1.OpenApi.Get").require == "public"
    assert index.for_route("pkg.v1.OpenApi.Get").limits == ()
    assert index.for_route("pkg.v1.Closed.Get").require == "token"


def test_the_configs_own_policies_still_win() -> None:
    public = PolicyConfig(match=["pkg.v1.Svc.Get"])
    index = index_for(HOSTILE, DEFAULT, policies=[public])
    assert index.for_route("pkg.v1.Svc.Get").require == "public"  # the operator said so
    assert index.for_route("pkg.v1.Svc.Put").require == "token"


def test_the_first_policy_setting_key_is_the_one_reported() -> None:
    sidecar = {
        "methods": {
            "pkg.v1.Svc.Get": {"success_status": 201},  # sets no policy
            "pkg.v1.*": {"auth": {"require": "public"}},
        }
    }
    file = SidecarFile.model_validate(sidecar)
    entries = Sidecars(tuple(Sidecar(p, s, "x.edge.yaml") for p, s in file.methods.items()))
    policies = entries.policies(DEFAULT)
    found = sidecar_policy_for(policies, "pkg.v1.Svc.Get")
    assert found is not None and found.pattern == "pkg.v1.*"
    assert found.for_method("pkg.v1.Svc.Get", []).refused
    assert index_for(sidecar, DEFAULT).for_route("pkg.v1.Svc.Get").name == "sidecar:pkg.v1.*"
