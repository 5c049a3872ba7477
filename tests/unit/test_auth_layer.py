"""The auth layer's verified-token cache never outlives a token (no network)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any
from unittest.mock import patch

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


def _run(step: Awaitable[Reply]) -> Reply:
    """Await what the layer hands back: the next step's coroutine, or its own."""

    async def main() -> Reply:
        return await step

    return asyncio.run(main())


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

    _run(layer(call(), ok))
    _run(layer(call(), ok))  # from the cache
    assert len(layer._verified) == 1
    now[0] = 1011.0
    with pytest.raises(Unauthenticated, match="expired"):
        _run(layer(call(), ok))


def _layer(now: list[float], **auth: Any) -> AuthLayer:
    return AuthLayer(
        AuthConfig(issuers=[ISSUER], **auth),
        PolicyIndex([], PolicyConfig(auth=AuthRequirement(require="token"))),
        KeyRing([ISSUER]),
        clock=lambda: now[0],
    )


def test_a_cached_token_is_decided_without_a_coroutine_of_the_layers_own() -> None:
    layer = _layer([1000.0])
    token = jwt.encode({"iss": "i", "sub": "u", "exp": 1010}, SECRET, algorithm="HS256")

    async def twice() -> None:
        first = layer(Call(upstream="u", route="r", metadata=[], timeout=None, token=token), ok)
        assert first.cr_code is not ok.__code__  # type: ignore[attr-defined]  # verified now
        await first
        again = layer(Call(upstream="u", route="r", metadata=[], timeout=None, token=token), ok)
        assert again.cr_code is ok.__code__  # type: ignore[attr-defined]  # the next step's own
        await again

    asyncio.run(twice())


def test_a_cached_token_is_verified_again_once_the_keys_change() -> None:
    layer = _layer([1000.0])
    token = jwt.encode({"iss": "i", "sub": "u", "exp": 1010}, SECRET, algorithm="HS256")
    _run(layer(Call(upstream="u", route="r", metadata=[], timeout=None, token=token), ok))
    layer.ring.generation += 1  # as a JWKS refresh does
    pending = layer(Call(upstream="u", route="r", metadata=[], timeout=None, token=token), ok)
    assert pending.cr_code is not ok.__code__  # type: ignore[attr-defined]
    _run(pending)
    assert layer._verified[token][1] == layer.ring.generation


@pytest.mark.parametrize("repeat", [1, 3])
def test_forged_claim_headers_go_in_every_spelling_every_time(repeat: int) -> None:
    layer = _layer([1000.0], claims_to_metadata={"x-user": "sub"})
    token = jwt.encode({"iss": "i", "sub": "u", "exp": 1010}, SECRET, algorithm="HS256")
    forged = [
        ("x-user", "admin"),
        ("X_User", "admin"),
        ("grpc-metadata-x-user", "admin"),
        ("authorization", "Bearer " + token),
        ("x-kept", "1"),
    ]
    for _ in range(repeat):
        call = Call(upstream="u", route="r", metadata=list(forged), timeout=None, token=token)
        _run(layer(call, ok))
        assert call.metadata == [("x-kept", "1"), ("x-user", "u")]


def test_metadata_names_are_judged_once_and_stripped_in_every_spelling() -> None:
    """Forged claim headers and the token leave the metadata whether their names were
    judged before or not; names seen before are not judged again."""
    layer = _layer([1000.0], claims_to_metadata={"x-user-id": "sub"})
    token = jwt.encode({"iss": "i", "sub": "u", "exp": 1010}, SECRET, algorithm="HS256")
    sent = [
        ("authorization", f"Bearer {token}"),
        ("x-user-id", "forged"),
        ("x_user_id", "forged"),
        ("X-User-Id", "forged"),
        ("x-request-id", "r"),
    ]
    for _ in range(2):  # the second time from memory
        call = Call(upstream="u", route="r", metadata=list(sent), timeout=None, token=token)
        _run(layer(call, ok))
        assert call.metadata == [("x-request-id", "r"), ("x-user-id", "u")]
    assert set(layer._keeps) == {name for name, _ in sent}
    judged = dict(layer._keeps)
    with patch.object(layer, "_keep", side_effect=AssertionError("judged again")):
        call = Call(upstream="u", route="r", metadata=list(sent), timeout=None, token=token)
        _run(layer(call, ok))
    assert layer._keeps == judged
    # a new name among known ones is judged, and the known ones still from memory
    call = Call(
        upstream="u",
        route="r",
        metadata=[*sent, ("grpc-metadata-x-user-id", "forged"), ("x-other", "o")],
        timeout=None,
        token=token,
    )
    _run(layer(call, ok))
    assert call.metadata == [("x-request-id", "r"), ("x-other", "o"), ("x-user-id", "u")]
