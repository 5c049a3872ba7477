"""The auth layer's verified-token cache never outlives a token (no network)."""

from __future__ import annotations

import asyncio

import jwt
import pytest

from edge.call import Call, Reply
from edge.errors import Unauthenticated
from edge.pipeline.auth import AuthLayer, KeyRing
from edge.pipeline.policy import PolicyIndex
from edge.policy_config import AuthConfig, AuthRequirement, IssuerConfig, KeyConfig, PolicyConfig

SECRET = "s" * 40
ISSUER = IssuerConfig(issuer="i", algorithms=["HS256"], keys=[KeyConfig(secret=SECRET)], leeway=0)


async def ok(call: Call) -> Reply:
    return Reply()


def test_cached_tokens_are_still_checked_for_expiry() -> None:
    now = [1000.0]
    layer = AuthLayer(
        AuthConfig(issuers=[ISSUER]),
        PolicyIndex([], PolicyConfig(auth=AuthRequirement(require="token"))),
        KeyRing([ISSUER]),
        clock=lambda: now[0],
    )
    token = jwt.encode({"iss": "i", "sub": "u", "exp": 1010}, SECRET, algorithm="HS256")

    def call() -> Call:
        return Call(upstream="u", route="r", metadata=[], timeout=None, token=token)

    asyncio.run(layer(call(), ok))
    asyncio.run(layer(call(), ok))  # from the cache
    assert len(layer._verified) == 1
    now[0] = 1011.0
    with pytest.raises(Unauthenticated, match="expired"):
        asyncio.run(layer(call(), ok))
