"""Verification keys from a JWKS: which entries are used, when the issuer is asked again,
and what an outage leaves in place (no network: the ring's fetch and clock are its own).

The fetch is the ring's one I/O edge, and the adversarial and e2e tests serve real JWKS
documents over HTTP; here it is a function that answers what each test needs, so every
branch of the refresh (due, not due, too soon, failed, raced) is asked for directly.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from edge.pipeline.auth import KeyRing, parse_jwks
from edge.policy_config import IssuerConfig

ISSUER = "https://issuer.test"
JWKS_URL = "https://user:hunter2@keys.issuer.test/jwks.json"


def rsa_jwk(kid: str, **extra: Any) -> dict[str, Any]:
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    return {**json.loads(RSAAlgorithm.to_jwk(public)), "kid": kid, **extra}


def ec_jwk(kid: str) -> dict[str, Any]:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    return {**json.loads(ECAlgorithm.to_jwk(public)), "kid": kid}


def okp_jwk(kid: str) -> dict[str, Any]:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    return {**json.loads(OKPAlgorithm.to_jwk(public)), "kid": kid}


def document(*keys: Any) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


def test_signing_keys_of_every_family_are_kept_with_their_kids() -> None:
    oct_key = {"kty": "oct", "k": "c2VjcmV0LWtleS1vZi10aGlydHktdHdvLWJ5dGVzLWxvbmc", "kid": "h"}
    keys = parse_jwks(document(rsa_jwk("r"), ec_jwk("e"), okp_jwk("o"), oct_key))
    assert isinstance(keys[0].key, rsa.RSAPublicKey)  # the key itself, ready to verify with
    assert isinstance(keys[1].key, ec.EllipticCurvePublicKey)
    assert isinstance(keys[2].key, ed25519.Ed25519PublicKey)
    assert keys[3].key == b"secret-key-of-thirty-two-bytes-long"
    assert [(key.kid, key.family) for key in keys] == [
        ("r", "RSA"),
        ("e", "EC"),
        ("o", "OKP"),
        ("h", "oct"),
    ]


def test_keys_for_encryption_and_entries_that_are_no_keys_are_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = {"kty": "RSA", "kid": "broken", "n": "not base64!", "e": "AQAB"}
    with caplog.at_level(logging.WARNING, logger="edge.auth"):
        keys = parse_jwks(
            document(
                rsa_jwk("enc", use="enc"),
                "not an object",
                broken,
                rsa_jwk("sig", use="sig"),
                rsa_jwk("unsaid"),  # no "use": a signing key
            )
        )
    assert [key.kid for key in keys] == ["sig", "unsaid"]
    # the broken one, said with PyJWK's reason, not fatal
    [said] = warnings(caplog)
    assert said.startswith("skipping a JWKS key: Unable to construct key from JWK")


def test_a_broken_key_does_not_hold_back_the_rotation() -> None:
    """One unusable entry beside the new key: the refresh still loads the new key (it
    once failed whole, as an outage, and the old keys stayed)."""
    broken = {"kty": "EC", "crv": "P-256", "kid": "bad", "x": "AAAA", "y": "AAAA"}
    issuer = Issuer((document(rsa_jwk("old")), None), (document(broken, rsa_jwk("new")), None))
    ring = issuer.ring(jwks_min_refresh="1s")
    assert refresh(ring)
    issuer.now += 2
    assert refresh(ring, unknown_kid=True)
    assert [key.kid for key in ring.keys(ISSUER, None)] == ["new"]


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the key ring warned of (its info lines show too where the suite logs them)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "edge.auth" and r.levelno >= logging.WARNING
    ]


def test_a_document_without_keys_has_none() -> None:
    assert parse_jwks(b"{}") == []


class Issuer:
    """A JWKS endpoint as the ring sees it: the documents to answer, in turn, and a clock."""

    def __init__(self, *answers: tuple[bytes, str | None] | Exception) -> None:
        self.answers = list(answers)
        self.fetched: list[str] = []
        self.now = 1000.0

    async def fetch(self, url: str) -> tuple[bytes, str | None]:
        self.fetched.append(url)
        await asyncio.sleep(0)  # an answer comes later, as one from the network does
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def ring(self, **settings: Any) -> KeyRing:
        config = IssuerConfig.model_validate(
            {"issuer": ISSUER, "algorithms": ["RS256"], "jwks_url": JWKS_URL, **settings}
        )
        return KeyRing([config], fetch=self.fetch, clock=lambda: self.now)


def refresh(ring: KeyRing, unknown_kid: bool = False) -> bool:
    return asyncio.run(ring.refresh(ISSUER, unknown_kid=unknown_kid))


def test_a_new_ring_is_stale_and_its_first_refresh_loads_the_keys(
    caplog: pytest.LogCaptureFixture,
) -> None:
    issuer = Issuer((document(rsa_jwk("a"), rsa_jwk("b")), None))
    ring = issuer.ring()
    assert ring.stale(ISSUER)
    with caplog.at_level(logging.INFO, logger="edge.auth"):
        assert refresh(ring)
    assert [r.getMessage() for r in caplog.records if r.name == "edge.auth"] == [
        "loaded 2 keys from https://user:***@keys.issuer.test/jwks.json"
    ]
    assert issuer.fetched == [JWKS_URL]
    assert ring.generation == 1  # tokens verified with the old keys are checked again
    assert [key.kid for key in ring.keys(ISSUER, None)] == ["a", "b"]
    assert [key.kid for key in ring.keys(ISSUER, "b")] == ["b"]
    assert ring.keys(ISSUER, "c") == [] and ring.keys("https://other.test", None) == []
    assert not ring.stale(ISSUER)


@pytest.mark.parametrize(
    ("cache_control", "fresh_for"),
    [
        (None, 3600.0),  # the configured ceiling
        ("public, max-age=600", 600.0),  # the issuer's, under the ceiling
        ("max-age=86400", 3600.0),  # never longer than the ceiling
    ],
)
def test_keys_are_fresh_for_max_age_capped_by_the_config(
    cache_control: str | None, fresh_for: float
) -> None:
    issuer = Issuer((document(rsa_jwk("a")), cache_control), (document(rsa_jwk("b")), None))
    ring = issuer.ring(jwks_max_age="1h", jwks_min_refresh="30s")
    assert refresh(ring)
    issuer.now += fresh_for - 0.001
    assert not ring.stale(ISSUER)
    assert not refresh(ring)  # not due: nobody asked for a key it lacks
    issuer.now += 0.001
    assert ring.stale(ISSUER)  # due exactly at its max-age
    assert refresh(ring)
    assert [key.kid for key in ring.keys(ISSUER, None)] == ["b"]  # the old set replaced
    assert ring.generation == 2


def test_an_unknown_kid_refetches_early_but_not_within_min_refresh() -> None:
    issuer = Issuer((document(rsa_jwk("a")), None), (document(rsa_jwk("rotated")), None))
    ring = issuer.ring(jwks_min_refresh="30s")
    assert refresh(ring)
    issuer.now += 29.999
    assert not refresh(ring, unknown_kid=True)  # a flood of made-up kids asks once
    assert len(issuer.fetched) == 1
    issuer.now += 0.001
    assert refresh(ring, unknown_kid=True)  # exactly min_refresh later: asked again
    assert [key.kid for key in ring.keys(ISSUER, None)] == ["rotated"]


def test_stale_waits_for_min_refresh_after_a_fetch_even_when_expired() -> None:
    issuer = Issuer((document(rsa_jwk("a")), "max-age=10"))
    ring = issuer.ring(jwks_min_refresh="60s")
    assert refresh(ring)
    issuer.now += 30  # past its max-age, but fetched 30 s ago
    assert not ring.stale(ISSUER)
    issuer.now += 30
    assert ring.stale(ISSUER)


def test_an_outage_keeps_the_old_keys_and_is_not_asked_again_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    issuer = Issuer(
        (document(rsa_jwk("a")), "max-age=60"),
        OSError(f"cannot connect to {JWKS_URL}"),
        (document(rsa_jwk("b")), None),
    )
    ring = issuer.ring(jwks_min_refresh="30s")
    assert refresh(ring)
    issuer.now += 60
    with caplog.at_level(logging.WARNING, logger="edge.auth"):
        assert not refresh(ring)
    assert [key.kid for key in ring.keys(ISSUER, None)] == ["a"]  # still verifying
    assert ring.generation == 1
    # the URL's credentials stay out of the log, in the URL and in the error's own text
    assert warnings(caplog) == [
        "JWKS fetch from https://user:***@keys.issuer.test/jwks.json failed: "
        "cannot connect to https://user:***@keys.issuer.test/jwks.json"
    ]
    assert not ring.stale(ISSUER)  # the failed try counts: no refetch storm
    issuer.now += 30
    assert ring.stale(ISSUER) and refresh(ring)
    assert [key.kid for key in ring.keys(ISSUER, None)] == ["b"]


def test_a_document_that_is_not_json_is_an_outage_too() -> None:
    issuer = Issuer((document(rsa_jwk("a")), None), (b"<html>", None))
    ring = issuer.ring(jwks_min_refresh="1s")
    assert refresh(ring)
    issuer.now += 3600
    assert not refresh(ring)
    assert [key.kid for key in ring.keys(ISSUER, None)] == ["a"]


def test_requests_racing_for_a_refresh_fetch_once() -> None:
    issuer = Issuer((document(rsa_jwk("a")), None))
    ring = issuer.ring()

    async def race() -> list[bool]:
        return list(
            await asyncio.gather(*(ring.refresh(ISSUER, unknown_kid=True) for _ in range(5)))
        )

    assert asyncio.run(race()) == [True, False, False, False, False]
    assert issuer.fetched == [JWKS_URL]


def test_an_issuer_without_jwks_is_never_stale_nor_fetched() -> None:
    issuer = Issuer()
    config = IssuerConfig.model_validate(
        {"issuer": ISSUER, "algorithms": ["HS256"], "keys": [{"secret": "s" * 32, "kid": "k"}]}
    )
    ring = KeyRing([config], fetch=issuer.fetch, clock=lambda: issuer.now)
    assert not ring.stale(ISSUER) and not ring.stale("https://unknown.test")
    assert not refresh(ring)
    assert not asyncio.run(ring.refresh("https://unknown.test", unknown_kid=True))
    assert issuer.fetched == []
    assert [(key.kid, key.family) for key in ring.keys(ISSUER, None)] == [("k", "oct")]
