"""edge.pipeline.jwt_core, pinned where mutation testing found the attack table loose.

The exact 401 reasons, the time checks at their very boundaries, key rotation (several
keys for one kid), a ``kid`` that is not a string, a token carrying ``aud`` for an issuer
whose audiences are not checked, a critical header extension nobody understands, claims
PyJWT checks only after the signature, and the scope helpers' own arguments. HS256 keeps
the file fast; the algorithm table is in test_jwt_core.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest

from edge.pipeline.jwt_core import (
    InsufficientScope,
    IssuerPolicy,
    TokenRejected,
    VerificationKey,
    algorithm_family,
    check_claims,
    issuer_of,
    require_scopes,
    verify_token,
)

NOW = 1_800_000_000.0
ISSUER = "https://issuer.example"
SECRET = b"s" * 32
OTHER_SECRET = b"o" * 32
POLICY = IssuerPolicy(ISSUER, frozenset({"HS256"}), frozenset({"edge"}), leeway=10.0)


def sign(secret: bytes = SECRET, headers: dict[str, Any] | None = None, **extra: Any) -> str:
    payload = {"iss": ISSUER, "aud": "edge", "exp": NOW + 60, **extra}
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers or {"kid": "k"})


def hs256(header: dict[str, Any]) -> str:
    """A token signed with SECRET under any header, even one PyJWT would not write."""
    parts = [_b64(json.dumps(header).encode()), _b64(json.dumps({"iss": ISSUER}).encode())]
    signing_input = ".".join(parts).encode()
    return ".".join([*parts, _b64(hmac.new(SECRET, signing_input, hashlib.sha256).digest())])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def verify(token: str, policy: IssuerPolicy = POLICY, *secrets: bytes) -> dict[str, Any]:
    keys = [VerificationKey("k", "oct", s) for s in secrets or (SECRET,)]
    return verify_token(token, {ISSUER: policy}, lambda issuer, kid: keys, NOW)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("a.b", "the token is not a JWS compact serialization"),
        (
            jwt.encode({"iss": ISSUER}, None, algorithm="none"),
            "unsigned tokens (alg none) are not accepted",
        ),
        (sign(iss="https://evil.example"), "the token's issuer is not trusted"),
        (sign(aud="other"), "the token is not for this audience"),
        (sign(OTHER_SECRET), "the token's signature does not verify"),
        (sign(exp=NOW - 11), "the token has expired"),
        (sign(nbf=NOW + 11), "the token is not valid yet"),
        (sign(iat=NOW + 11), "the token was issued in the future"),
        (sign(exp=None), "the token has no exp claim"),
    ],
)
def test_rejections_say_exactly_why(token: str, message: str) -> None:
    with pytest.raises(TokenRejected) as rejected:
        verify(token)
    assert str(rejected.value) == message
    assert rejected.value.description == message


def test_a_critical_header_extension_nobody_understands_is_rejected() -> None:
    # RFC 7515 4.1.11: a recipient that does not understand a "crit" extension must refuse
    token = sign(headers={"kid": "k", "crit": ["exp-v2"], "exp-v2": 1})
    with pytest.raises(TokenRejected) as rejected:
        verify(token)
    assert str(rejected.value) == "malformed token: Unsupported critical extension: exp-v2"


def test_a_subject_that_is_not_a_string_is_rejected() -> None:
    # checked by PyJWT only once the signature verified: the "invalid token" branch
    with pytest.raises(TokenRejected) as rejected:
        verify(sign(sub=123))
    assert str(rejected.value) == "invalid token: Subject must be a string"


@pytest.mark.parametrize(
    ("claim", "accepted"),
    [
        ({"exp": NOW - 10}, True),  # expired exactly leeway ago: still accepted
        ({"exp": NOW - 10.5}, False),
        ({"nbf": NOW + 10}, True),  # valid exactly leeway from now: already accepted
        ({"nbf": NOW + 10.5}, False),
        ({"iat": NOW + 10}, True),  # issued exactly leeway ahead: accepted
        ({"iat": NOW + 10.5}, False),
    ],
)
def test_time_claims_are_accepted_up_to_the_leeway_itself(
    claim: dict[str, float], accepted: bool
) -> None:
    claims = {"exp": NOW + 60, **claim}
    if accepted:
        check_claims(claims, POLICY, NOW)
    else:
        with pytest.raises(TokenRejected):
            check_claims(claims, POLICY, NOW)


def test_every_key_of_the_kid_is_tried_until_one_verifies() -> None:
    # during a rotation the old and the new key share a kid (or there is none)
    claims = verify(sign(OTHER_SECRET), POLICY, SECRET, OTHER_SECRET)
    assert claims["iss"] == ISSUER


def test_a_kid_that_is_not_a_string_never_reaches_the_key_lookup() -> None:
    asked: list[str | None] = []

    def lookup(issuer: str, kid: str | None) -> list[VerificationKey]:
        asked.append(kid)
        return [VerificationKey(None, "oct", SECRET)]

    with pytest.raises(TokenRejected, match="Key ID header parameter must be a string"):
        verify_token(hs256({"alg": "HS256", "kid": 7}), {ISSUER: POLICY}, lookup, NOW)
    assert asked == []


def test_aud_is_not_checked_for_an_issuer_without_audiences() -> None:
    policy = IssuerPolicy(ISSUER, frozenset({"HS256"}), leeway=10.0)
    assert verify(sign(aud="anything"), policy)["aud"] == "anything"


def test_the_issuer_of_claims() -> None:
    assert issuer_of({"iss": ISSUER}) == ISSUER
    assert issuer_of({}) == ""


def test_required_scopes_read_the_configured_claim() -> None:
    claims = {"scope": "read", "roles": ["admin", "audit"]}
    require_scopes(claims, frozenset({"admin"}), "roles")
    with pytest.raises(InsufficientScope) as refused:
        require_scopes(claims, frozenset({"write", "delete"}), None)
    assert str(refused.value) == "missing scope delete write"
    assert refused.value.description == "missing scope delete write"


def test_an_unsupported_algorithm_is_named() -> None:
    with pytest.raises(ValueError, match=r"^unsupported JWT algorithm 'HS1'$"):
        algorithm_family("HS1")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_time_claim_must_be_a_finite_number(value: float) -> None:
    with pytest.raises(TokenRejected) as rejected:
        check_claims({"exp": value}, POLICY, NOW)
    assert str(rejected.value) == "the exp claim must be a finite number"
