"""The JWT attack table, against the pure verifier with an injected clock."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.pipeline.auth import AuthLayer, KeyRing
from edge.pipeline.jwt_core import (
    InsufficientScope,
    IssuerPolicy,
    TokenRejected,
    UnknownKey,
    VerificationKey,
    check_claims,
    granted_scopes,
    require_scopes,
    valid_at,
    validity,
    verify_token,
)
from edge.pipeline.policy import PolicyIndex
from edge.policy_config import AuthConfig, PolicyConfig

NOW = 1_800_000_000.0
ISSUER = "https://issuer.example"
SECRET = b"s" * 32
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
RSA_PUBLIC_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)

KEYS = {
    "hs": VerificationKey("hs", "oct", SECRET),
    "rs": VerificationKey("rs", "RSA", RSA_KEY.public_key()),
    "es": VerificationKey("es", "EC", EC_KEY.public_key()),
    "ed": VerificationKey("ed", "OKP", ED_KEY.public_key()),
}
POLICY = IssuerPolicy(
    issuer=ISSUER,
    algorithms=frozenset({"RS256", "PS256", "ES256", "EdDSA", "HS256"}),
    audiences=frozenset({"edge"}),
    leeway=10.0,
)


def lookup(issuer: str, kid: str | None) -> list[VerificationKey]:
    if kid is None:
        return list(KEYS.values())
    return [KEYS[kid]] if kid in KEYS else []


def claims(**extra: Any) -> dict[str, Any]:
    base = {"iss": ISSUER, "aud": "edge", "sub": "alice", "exp": NOW + 60, "iat": NOW - 5}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], algorithm: str = "RS256", kid: str | None = "rs") -> str:
    key: Any = {
        "RS256": RSA_KEY,
        "PS256": RSA_KEY,
        "ES256": EC_KEY,
        "EdDSA": ED_KEY,
        "HS256": SECRET,
    }[algorithm]
    headers = {"kid": kid} if kid else {}
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def verify(token: str, policy: IssuerPolicy = POLICY) -> dict[str, Any]:
    return verify_token(token, {ISSUER: policy}, lookup, NOW)


@pytest.mark.parametrize(
    ("algorithm", "kid"),
    [("RS256", "rs"), ("PS256", "rs"), ("ES256", "es"), ("EdDSA", "ed"), ("HS256", "hs")],
)
def test_valid_tokens(algorithm: str, kid: str) -> None:
    assert verify(sign(claims(), algorithm, kid))["sub"] == "alice"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        [_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()), _b64(signature)]
    )


def _tampered() -> str:
    header, _, signature = sign(claims()).split(".")
    return ".".join([header, _b64(json.dumps(claims(sub="mallory")).encode()), signature])


ATTACKS = [
    ("alg none", lambda: _forge({"alg": "none"}, claims()), "alg none"),
    ("alg None", lambda: _forge({"alg": "None", "kid": "rs"}, claims()), "alg none"),
    # HS256 signed with the RSA public key as the HMAC secret: the classic confusion
    (
        "HS/RS confusion",
        lambda: _forge_hmac_with_public_key(),
        "no key",
    ),
    ("expired", lambda: sign(claims(exp=NOW - 11)), "expired"),
    ("not yet valid", lambda: sign(claims(nbf=NOW + 11)), "not valid yet"),
    ("issued in the future", lambda: sign(claims(iat=NOW + 60)), "future"),
    ("wrong issuer", lambda: sign(claims(iss="https://evil.example")), "issuer"),
    ("wrong audience", lambda: sign(claims(aud="someone-else")), "audience"),
    ("no exp", lambda: sign(claims(exp=None)), "no exp claim"),
    ("unknown kid", lambda: sign(claims(), kid="rotated"), "no key 'rotated'"),
    ("tampered payload", _tampered, "signature"),
    ("two segments", lambda: "a.b", "compact"),
    ("garbage segments", lambda: "###.###.###", "malformed"),
    ("signature by another key", lambda: _foreign_rsa(), "signature"),
    ("exp not a number", lambda: sign(claims(exp="tomorrow")), "must be a number"),
]


def _forge_hmac_with_public_key() -> str:
    header = {"alg": "HS256", "kid": "rs", "typ": "JWT"}
    signing_input = ".".join(
        [_b64(json.dumps(header).encode()), _b64(json.dumps(claims()).encode())]
    )
    signature = hmac.new(RSA_PUBLIC_PEM, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


def _foreign_rsa() -> str:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims(), other, algorithm="RS256", headers={"kid": "rs"})


@pytest.mark.parametrize(("name", "make", "problem"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attacks_are_rejected(name: str, make: Any, problem: str) -> None:
    with pytest.raises(TokenRejected) as rejected:
        verify(make())
    assert problem in rejected.value.description


def test_algorithm_must_be_allowed_for_the_issuer() -> None:
    rsa_only = IssuerPolicy(ISSUER, frozenset({"RS256"}), frozenset({"edge"}))
    with pytest.raises(TokenRejected, match="HS256 is not accepted"):
        verify(sign(claims(), "HS256", "hs"), rsa_only)


def test_unknown_kid_is_its_own_error_so_keys_can_be_refreshed() -> None:
    with pytest.raises(UnknownKey) as unknown:
        verify(sign(claims(), kid="next"))
    assert (unknown.value.issuer, unknown.value.kid) == (ISSUER, "next")


def test_leeway() -> None:
    assert verify(sign(claims(exp=NOW - 9)))["sub"] == "alice"
    assert verify(sign(claims(nbf=NOW + 9)))["sub"] == "alice"


def test_scopes() -> None:
    assert granted_scopes({"scope": "read write"}) == {"read", "write"}
    assert granted_scopes({"scp": ["read"]}) == {"read"}
    assert granted_scopes({"roles": ["admin"]}, "roles") == {"admin"}
    require_scopes({"scope": "read write"}, frozenset({"read"}), None)
    with pytest.raises(InsufficientScope, match="missing scope admin"):
        require_scopes({"scope": "read"}, frozenset({"admin", "read"}), None)


def test_an_hmac_secret_that_is_a_pem_key_verifies_nothing_and_raises_no_other_error() -> None:
    # PyJWT refuses a PEM public key as an HMAC secret with InvalidKeyError, which is no
    # InvalidTokenError: unhandled, it was a 500 instead of a 401
    pem_secret = {"hs": VerificationKey("hs", "oct", RSA_PUBLIC_PEM)}

    def only_pem(issuer: str, kid: str | None) -> list[VerificationKey]:
        return list(pem_secret.values())

    token = sign(claims(), "HS256", "hs")
    with pytest.raises(TokenRejected, match="signature does not verify"):
        verify_token(token, {ISSUER: POLICY}, only_pem, NOW)


_instants = st.one_of(st.none(), st.integers(-10, 10), st.floats(-10, 10, allow_nan=False))


@settings(max_examples=2000, deadline=None)
@given(
    exp=_instants,
    nbf=_instants,
    iat=_instants,
    leeway=st.one_of(st.just(0.0), st.floats(0, 5)),
    first_check=st.floats(-20, 20),
    now=st.floats(-20, 20),
)
def test_a_cached_tokens_window_is_check_claims_exactly(
    exp: float | None,
    nbf: float | None,
    iat: float | None,
    leeway: float,
    first_check: float,
    now: float,
) -> None:
    """The auth layer re-checks a cached token with ``valid_at`` (written inline in
    ``AuthLayer._cached``, where every request with a token makes it); both must agree
    with ``check_claims`` at every instant, for claims that passed it once."""
    claims = {k: v for k, v in (("exp", exp), ("nbf", nbf), ("iat", iat)) if v is not None}
    policy = IssuerPolicy(ISSUER, frozenset({"HS256"}), frozenset(), leeway, ())
    try:
        check_claims(claims, policy, first_check)
    except TokenRejected:
        return  # never cached
    try:
        check_claims(claims, policy, now)
        passes = True
    except TokenRejected:
        passes = False
    assert valid_at(*validity(claims, policy), leeway, now) is passes
    layer = AuthLayer(
        AuthConfig(issuers=[]),
        PolicyIndex([], PolicyConfig()),
        KeyRing([]),
        clock=lambda: now,
    )
    layer._verified["t"] = (claims, layer.ring.generation, policy, *validity(claims, policy))
    assert (layer._cached("t") is claims) is passes
