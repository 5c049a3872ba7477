"""Rate limits keyed on who the caller is, through the real gateway (Hypercorn, gRPC upstream).

Every request comes from 127.0.0.1, so a limit that keyed on anything but its configured
part (or on nothing: one bucket for everyone) would refuse the second user too.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

pytestmark = pytest.mark.e2e

ISSUER = "https://issuer.test"
SECRET = "a-test-secret-that-is-long-enough-for-hs256"
ROUTE = "/v1/kitchen/limited"


def bearer(sub: str, **claims: Any) -> dict[str, str]:
    # made when the module is imported (USERS below), minutes before the test runs
    payload = {"iss": ISSUER, "aud": "edge", "sub": sub, "exp": time.time() + 3600, **claims}
    return {"authorization": "Bearer " + jwt.encode(payload, SECRET, algorithm="HS256")}


def limited_by(key: list[str]) -> dict[str, Any]:
    """The ``key: [sub]`` limit of docs/policies.md, with a quota a test can use up: 2 a minute."""
    issuer = {
        "issuer": ISSUER,
        "algorithms": ["HS256"],
        "audiences": ["edge"],
        "keys": [{"kid": "hs", "secret": SECRET}],
    }
    return {
        "auth": {"issuers": [issuer], "api_keys": {"keys": {"ci": "key-ci", "bot": "key-bot"}}},
        "policies": [
            {
                "match": ["edgetest.v1.KitchenService.Echo"],
                "auth": {"require": "token"},
                "rate_limits": [
                    {"algorithm": "token_bucket", "limit": 2, "period": "60s", "key": key}
                ],
            }
        ],
    }


# (key, first user's headers, second user's headers)
USERS = {
    "sub": (["sub"], bearer("alice"), bearer("bob")),
    "claim": (
        ["claim:tenant"],
        bearer("same", tenant="acme"),
        bearer("same", tenant="globex"),
    ),
    "api_key": (["api_key"], {"x-api-key": "key-ci"}, {"x-api-key": "key-bot"}),
    "header": (
        ["header:x-tenant"],
        {**bearer("same"), "x-tenant": "acme"},
        {**bearer("same"), "x-tenant": "globex"},
    ),
}


@pytest.mark.parametrize("kind", sorted(USERS))
async def test_each_user_gets_an_allowance_of_their_own(stack_factory: Any, kind: str) -> None:
    key, first, second = USERS[kind]
    async with stack_factory(**limited_by(key)) as stack, stack.client() as client:
        first_statuses = [(await client.get(ROUTE, headers=first)).status_code for _ in range(3)]
        second_replies = [await client.get(ROUTE, headers=second) for _ in range(3)]
        again = await client.get(ROUTE, headers=first)
    assert first_statuses == [200, 200, 429]
    assert [r.status_code for r in second_replies] == [200, 200, 429]  # untouched by the first
    assert [r.headers.get("ratelimit-remaining") for r in second_replies[:2]] == ["1", "0"]
    assert again.status_code == 429  # and the first is still out of allowance
