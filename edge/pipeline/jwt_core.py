"""JWT verification (sans-IO): signature, algorithm, issuer, audience, time and claims.

PyJWT checks signatures; everything that decides *which* key and *which* algorithm may be
used is decided here, before PyJWT sees the token, because that is where gateways get
attacked:

* the accepted algorithms are explicit per issuer; ``none`` is never accepted;
* a key is only ever used with the algorithm family it was configured for, so an RSA
  public key can never be fed to HMAC as a shared secret (the HS/RS confusion attack);
* the issuer is read from the token only to choose the issuer's policy and keys, and is
  then verified like every other claim.

Time claims are checked here against ``now`` (PyJWT would read the clock itself), so the
rules are tested with an injected time. An unknown ``kid`` is reported separately so the
I/O shell can refresh the issuer's JWKS (rate-limited) and try once more.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# PyJWT is imported where a token is verified, not here: it brings cryptography, about
# 8.6 MiB per worker that a gateway without issuers never needs

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS = frozenset({"ES256", "ES384", "ES512"})
OKP_ALGORITHMS = frozenset({"EdDSA"})
SUPPORTED_ALGORITHMS = HMAC_ALGORITHMS | RSA_ALGORITHMS | EC_ALGORITHMS | OKP_ALGORITHMS


def algorithm_family(algorithm: str) -> str:
    for family, members in (
        ("oct", HMAC_ALGORITHMS),
        ("RSA", RSA_ALGORITHMS),
        ("EC", EC_ALGORITHMS),
        ("OKP", OKP_ALGORITHMS),
    ):
        if algorithm in members:
            return family
    raise ValueError(f"unsupported JWT algorithm {algorithm!r}")


class TokenRejected(Exception):
    """The token is missing, malformed, badly signed, expired or not for us (401)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class UnknownKey(TokenRejected):
    """No key with the token's ``kid``: the issuer may have rotated its keys."""

    def __init__(self, issuer: str, kid: str | None) -> None:
        super().__init__(f"no key {kid!r} for issuer {issuer!r}")
        self.issuer = issuer
        self.kid = kid


class InsufficientScope(Exception):
    """The token is valid but does not grant what the route requires (403)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A key and the one algorithm family it may verify."""

    kid: str | None
    family: str  # "oct", "RSA", "EC" or "OKP"
    key: Any  # bytes for oct; a cryptography public key object otherwise


@dataclass(frozen=True, slots=True)
class IssuerPolicy:
    issuer: str
    algorithms: frozenset[str]
    audiences: frozenset[str] = frozenset()  # empty: aud is not checked
    leeway: float = 30.0
    required_claims: tuple[str, ...] = ("exp",)


KeyLookup = Callable[[str, str | None], Sequence[VerificationKey]]


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    import jwt  # loaded with the first token (see the note at the top)

    if token.count(".") != 2:
        raise TokenRejected("the token is not a JWS compact serialization")
    try:
        header = jwt.get_unverified_header(token)
        payload = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError as exc:
        raise TokenRejected(f"malformed token: {exc}") from exc
    if not isinstance(payload, dict):
        raise TokenRejected("the token payload is not a JSON object")
    return header, payload


def verify_token(
    token: str,
    issuers: Mapping[str, IssuerPolicy],
    keys: KeyLookup,
    now: float,
) -> dict[str, Any]:
    """The verified claims of ``token``; raises TokenRejected (or UnknownKey)."""
    import jwt

    header, unverified = _unverified(token)
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm.lower() == "none":
        raise TokenRejected("unsigned tokens (alg none) are not accepted")
    issuer = unverified.get("iss")
    if not isinstance(issuer, str) or issuer not in issuers:
        raise TokenRejected("the token's issuer is not trusted")
    policy = issuers[issuer]
    if algorithm not in policy.algorithms:
        raise TokenRejected(f"algorithm {algorithm} is not accepted for this issuer")
    family = algorithm_family(algorithm)
    kid = header.get("kid")
    kid = kid if isinstance(kid, str) else None
    candidates = [k for k in keys(issuer, kid) if k.family == family]
    if not candidates:
        raise UnknownKey(issuer, kid)
    claims: dict[str, Any] | None = None
    for candidate in candidates:
        try:
            claims = jwt.decode(
                token,
                candidate.key,
                algorithms=[algorithm],
                audience=sorted(policy.audiences) or None,
                issuer=issuer,
                leeway=0,
                options={
                    "verify_exp": False,  # checked below against ``now``
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": bool(policy.audiences),
                    "require": [],
                },
            )
            break
        except (jwt.InvalidSignatureError, jwt.InvalidKeyError):
            # InvalidKeyError: a key this algorithm cannot use (an "HMAC secret" that is a
            # PEM public key, which PyJWT refuses): it verifies nothing, like a wrong key
            continue
        except jwt.InvalidAudienceError as exc:
            raise TokenRejected("the token is not for this audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenRejected("the token's issuer is not trusted") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenRejected(f"invalid token: {exc}") from exc
    if claims is None:
        raise TokenRejected("the token's signature does not verify")
    check_claims(claims, policy, now)
    return claims


def issuer_of(claims: Mapping[str, Any]) -> str:
    return str(claims.get("iss", ""))


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenRejected(f"the {name} claim must be a number")
    number = float(value)
    if not math.isfinite(number):  # NaN compares false with everything: it would never expire
        raise TokenRejected(f"the {name} claim must be a finite number")
    return number


def check_claims(claims: Mapping[str, Any], policy: IssuerPolicy, now: float) -> None:
    """The claims checks that depend on time (and presence): run again on every use."""
    for name in policy.required_claims:
        if claims.get(name) is None:  # a null claim is no claim (an exp: null never expires)
            raise TokenRejected(f"the token has no {name} claim")
    leeway = policy.leeway
    expires = _number(claims, "exp")
    if expires is not None and now > expires + leeway:
        raise TokenRejected("the token has expired")
    not_before = _number(claims, "nbf")
    if not_before is not None and now + leeway < not_before:
        raise TokenRejected("the token is not valid yet")
    issued = _number(claims, "iat")
    if issued is not None and now + leeway < issued:
        raise TokenRejected("the token was issued in the future")


def validity(claims: Mapping[str, Any], policy: IssuerPolicy) -> tuple[float, float]:
    """``(first, last)``: claims that passed ``check_claims`` pass it again at ``now`` exactly
    when ``valid_at(first, last, policy.leeway, now)``.

    Only the time claims change their answer as time passes, and these are the same float
    comparisons ``check_claims`` makes, so a cached token is re-checked with two of them.
    """
    expires = _number(claims, "exp")
    starts = [n for n in (_number(claims, "nbf"), _number(claims, "iat")) if n is not None]
    first = max(starts) if starts else -math.inf
    last = expires + policy.leeway if expires is not None else math.inf
    return first, last


def valid_at(first: float, last: float, leeway: float, now: float) -> bool:
    return now <= last and now + leeway >= first


def granted_scopes(claims: Mapping[str, Any], claim: str | None = None) -> frozenset[str]:
    """Scopes from ``scope`` (space-separated) or ``scp`` (list), or a configured claim."""
    names = (claim,) if claim else ("scope", "scp")
    granted: set[str] = set()
    for name in names:
        value = claims.get(name)
        if isinstance(value, str):
            granted.update(value.split())
        elif isinstance(value, list):
            granted.update(str(item) for item in value)
    return frozenset(granted)


def require_scopes(claims: Mapping[str, Any], required: frozenset[str], claim: str | None) -> None:
    """Raise InsufficientScope unless every required scope is granted."""
    missing = required - granted_scopes(claims, claim)
    if missing:
        raise InsufficientScope(f"missing scope {' '.join(sorted(missing))}")


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison, for API keys."""
    return hmac.compare_digest(given.encode(), expected.encode())
