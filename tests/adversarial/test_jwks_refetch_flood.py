"""Tokens with made-up key ids must not turn the gateway into a JWKS fetch amplifier.

An unknown ``kid`` makes the gateway refetch the issuer's JWKS (a key may have been rotated
in), at most once per ``jwks_min_refresh``. A client that sends many tokens with made-up
kids, one after another and all at once, must cause one fetch in that time, not one each,
whether the JWKS answers, answers with ``max-age=0`` or fails. The JWKS here is a real
server on an ephemeral loopback port that counts what it is asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from conftest import make_config, run_gateway
from cryptography.hazmat.primitives.asymmetric import rsa
from http_upstream import serve_asgi

from edge.config import Config

pytestmark = pytest.mark.e2e

ISSUER = "https://issuer.test"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
FLOOD = 40


class CountingJwks:
    """An ASGI JWKS endpoint serving RSA_KEY as ``k1``; counts every request it answers."""

    def __init__(self, status: int, max_age: int, before: list[Any] | None = None) -> None:
        self.status = status
        self.max_age = max_age
        self.fetches = 0
        self.before = before or []  # entries listed ahead of k1

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.fetches += 1
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True)
        keys = [*self.before, {**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]
        body = json.dumps({"keys": keys})
        headers = [
            (b"content-type", b"application/json"),
            (b"cache-control", f"max-age={self.max_age}".encode()),
        ]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body.encode()})


@contextlib.asynccontextmanager
async def serving(app: CountingJwks) -> AsyncIterator[str]:
    async with serve_asgi(app) as port:
        yield f"http://127.0.0.1:{port}/jwks"


def token_required(upstream_port: int, jwks_url: str, **issuer: Any) -> Config:
    """A gateway whose every route needs a token of ISSUER, its keys from ``jwks_url``."""
    settings = {"issuer": ISSUER, "algorithms": ["RS256"], "audiences": ["edge"], **issuer}
    extra = {
        "auth": {"issuers": [{**settings, "jwks_url": jwks_url}]},
        "policies": [{"match": ["*"], "auth": {"require": "token"}}],
    }
    return make_config(upstream_port, extra=extra)


def token(kid: str) -> dict[str, str]:
    claims = {"iss": ISSUER, "aud": "edge", "sub": "mallory", "exp": time.time() + 60}
    encoded = jwt.encode(claims, RSA_KEY, algorithm="RS256", headers={"kid": kid})
    return {"authorization": f"Bearer {encoded}"}


@pytest.mark.parametrize(
    ("status", "max_age"),
    [(200, 600), (200, 0), (500, 600)],
    ids=["answers", "max-age=0", "fails"],
)
async def test_unknown_kids_cause_one_fetch_per_min_refresh(
    kitchen_upstream: Any, status: int, max_age: int
) -> None:
    jwks = CountingJwks(status, max_age)
    async with serving(jwks) as url:
        port, _ = kitchen_upstream
        async with run_gateway(token_required(port, url, jwks_min_refresh="30s")) as gateway:
            async with gateway.client() as client:
                known = await client.get("/v1/kitchen/a", headers=token("k1"))
                one_by_one = [
                    await client.get("/v1/kitchen/b", headers=token(f"made-up-{index}"))
                    for index in range(FLOOD)
                ]
                at_once = await asyncio.gather(
                    *(
                        client.get("/v1/kitchen/c", headers=token(f"at-once-{index}"))
                        for index in range(FLOOD)
                    )
                )
                known_after = await client.get("/v1/kitchen/d", headers=token("k1"))
    assert jwks.fetches == 1
    assert {r.status_code for r in [*one_by_one, *at_once]} == {401}
    expected = 200 if status == 200 else 401  # a failing JWKS leaves no keys to verify with
    assert known.status_code == known_after.status_code == expected


BROKEN_ENTRIES = [
    {"kty": "RSA", "kid": "bad-base64", "n": "not base64!", "e": "AQAB"},
    {"kty": "EC", "crv": "P-256", "kid": "off-curve", "x": "AAAA", "y": "AAAA"},
    {"kty": "nonsense", "kid": "unknown-type"},
    {"kid": "no-type"},
    "not an object",
]


@pytest.mark.parametrize("entry", BROKEN_ENTRIES, ids=lambda entry: str(entry)[:24])
async def test_a_broken_key_beside_a_good_one_does_not_stop_verification(
    kitchen_upstream: Any, entry: Any
) -> None:
    """An issuer's JWKS with one entry no library can build (a typo, a key mid-rotation)
    still gives the gateway its good keys: the entry is skipped, not the document."""
    jwks = CountingJwks(200, 600, before=[entry])
    async with serving(jwks) as url:
        port, _ = kitchen_upstream
        async with run_gateway(token_required(port, url)) as gateway:
            async with gateway.client() as client:
                answer = await client.get("/v1/kitchen/a", headers=token("k1"))
                forged = await client.get("/v1/kitchen/a", headers=token("bad-base64"))
    assert answer.status_code == 200
    assert forged.status_code == 401  # a kid whose key was skipped verifies nothing
    assert jwks.fetches == 1
