"""The authentication layer: JWT (static keys and JWKS) and API keys, per-route requirements.

The I/O shell around ``jwt_core``: it finds keys (configured PEM files and secrets, and
each issuer's JWKS fetched, cached within ``jwks_max_age`` and the response's
Cache-Control, refetched on an unknown ``kid`` at most once per ``jwks_min_refresh``),
applies the route's requirement, and shapes what goes upstream. Claim headers a client
sent itself are always stripped before the verified ones are added, so they cannot be
forged; the raw ``Authorization`` header (and the API-key header) go upstream only when
``forward_authorization`` says so. Tokens are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from edge.call import Call, Metadata, Reply
from edge.errors import ConfigError, PermissionDenied, Unauthenticated
from edge.pipeline.chain import DONE, Next
from edge.pipeline.credentials import header_value, query_value
from edge.pipeline.jwt_core import (
    InsufficientScope,
    IssuerPolicy,
    TokenRejected,
    UnknownKey,
    VerificationKey,
    check_claims,
    issuer_of,
    require_scopes,
    same_secret,
    validity,
    verify_token,
)
from edge.pipeline.policy import PolicyIndex, RoutePolicy
from edge.policy_config import AuthConfig, IssuerConfig
from edge.redaction import redact_text, redact_url

log = logging.getLogger("edge.auth")

_MAX_AGE = re.compile(r"max-age=(\d+)")
VERIFIED_CACHE_SIZE = 10_000  # verified tokens remembered (LRU)
_Verified = tuple[dict[str, Any], int, IssuerPolicy, float, float]


def _family(key: Any) -> str:
    # imported here, as PyJWT is (jwt_core): a gateway without issuers never loads them
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC"
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "OKP"
    raise ConfigError(f"unsupported public key type {type(key).__name__}")


def load_static_keys(issuer: IssuerConfig) -> list[VerificationKey]:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    keys = []
    for config in issuer.keys:
        if config.secret is not None:
            keys.append(VerificationKey(config.kid, "oct", config.secret.encode()))
            continue
        assert config.pem_file is not None
        try:
            public = load_pem_public_key(config.pem_file.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"auth: cannot load public key {config.pem_file}: {exc}") from exc
        keys.append(VerificationKey(config.kid, _family(public), public))
    return keys


def parse_jwks(document: bytes) -> list[VerificationKey]:
    """Signing keys of a JWKS document; keys we cannot use are skipped, not fatal."""
    import jwt

    keys = []
    for entry in orjson.loads(document).get("keys", []):
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            jwk = jwt.PyJWK(entry)
        # PyJWK says a key it cannot read with PyJWKError, one it cannot build (bad
        # base64, a point off its curve) with InvalidKeyError: both only this key's fault,
        # so the document's other keys still load (a rotation must not wait on it)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            log.warning("skipping a JWKS key: %s", redact_text(str(exc)))
            continue
        family = {"RSA": "RSA", "EC": "EC", "OKP": "OKP", "oct": "oct"}.get(jwk.key_type or "")
        if family is not None:
            keys.append(VerificationKey(entry.get("kid"), family, jwk.key))
    return keys


@dataclass(slots=True)
class _IssuerKeys:
    config: IssuerConfig
    static: list[VerificationKey]
    fetched: list[VerificationKey] = field(default_factory=list)
    expires: float = 0.0
    last_fetch: float = float("-inf")
    lock: asyncio.Lock | None = None


class KeyRing:
    """Verification keys per issuer: static ones, plus the issuer's JWKS when it has one."""

    def __init__(
        self,
        issuers: Sequence[IssuerConfig],
        fetch: Callable[[str], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuers = {i.issuer: _IssuerKeys(i, load_static_keys(i)) for i in issuers}
        self._fetch = fetch or _fetch_with_aiohttp
        self._clock = clock
        self.generation = 0  # bumped whenever keys change; invalidates verified tokens

    def keys(self, issuer: str, kid: str | None) -> list[VerificationKey]:
        entry = self._issuers.get(issuer)
        if entry is None:
            return []
        candidates = entry.static + entry.fetched
        if kid is None:
            return candidates
        return [key for key in candidates if key.kid == kid]

    def stale(self, issuer: str) -> bool:
        """Past its max-age, and not fetched (or tried) within ``jwks_min_refresh``."""
        entry = self._issuers.get(issuer)
        if entry is None or not entry.config.jwks_url:
            return False
        now = self._clock()
        return now >= entry.expires and now - entry.last_fetch >= entry.config.jwks_min_refresh

    async def refresh(self, issuer: str, *, unknown_kid: bool) -> bool:
        """Fetch the issuer's JWKS if it is due; True when new keys were loaded."""
        entry = self._issuers.get(issuer)
        if entry is None or entry.config.jwks_url is None:
            return False
        if entry.lock is None:
            entry.lock = asyncio.Lock()
        async with entry.lock:
            now = self._clock()
            if now - entry.last_fetch < entry.config.jwks_min_refresh:
                return False  # fetched moments ago (maybe by a concurrent request)
            if not unknown_kid and now < entry.expires:
                return False
            entry.last_fetch = now
            try:
                document, cache_control = await self._fetch(entry.config.jwks_url)
                keys = parse_jwks(document)
            except Exception as exc:  # a JWKS outage must not take the old keys with it
                log.warning(  # the URL may carry credentials, and the error repeats it
                    "JWKS fetch from %s failed: %s",
                    redact_url(entry.config.jwks_url),
                    redact_text(str(exc)),
                )
                return False
            max_age = entry.config.jwks_max_age
            match = _MAX_AGE.search(cache_control or "")
            if match:
                max_age = min(max_age, float(match.group(1)))
            entry.fetched = keys
            entry.expires = now + max_age
            self.generation += 1
            log.info("loaded %d keys from %s", len(keys), redact_url(entry.config.jwks_url))
            return True


async def _fetch_with_aiohttp(url: str) -> tuple[bytes, str | None]:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
        response.raise_for_status()
        return await response.read(), response.headers.get("cache-control")


def _spelling(name: str) -> str:
    """A header name as an upstream might read it: any case, ``_`` and ``-`` alike.

    CGI-style servers (WSGI, PHP) read ``X_User_Id`` and ``x-user-id`` as one variable,
    so a claim header is stripped in every spelling, not just the configured one; and a
    grpc-gateway behind a proxied route reads ``Grpc-Metadata-X-User-Id`` as the
    ``x-user-id`` metadata, so the prefix is looked through too.
    """
    spelled = name.lower().replace("_", "-")
    return spelled[14:] if spelled.startswith("grpc-metadata-") else spelled


KEPT_NAMES = 4096  # metadata names whose fate is remembered (they come from clients)


def _challenge(error: str | None, description: str | None = None, scope: str | None = None) -> str:
    parts = ['Bearer realm="edge"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append('error_description="' + description.replace('"', "'") + '"')
    if scope:
        parts.append(f'scope="{scope}"')
    return ", ".join(parts)


class AuthLayer:
    def __init__(
        self,
        config: AuthConfig,
        index: PolicyIndex,
        ring: KeyRing,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.index = index
        self.ring = ring
        self.clock = clock
        if config.issuers:  # loaded now, with the config, so the first token waits for no import
            import jwt  # noqa: F401
        self.issuers = {
            i.issuer: IssuerPolicy(
                issuer=i.issuer,
                algorithms=frozenset(i.algorithms),
                audiences=frozenset(i.audiences),
                leeway=i.leeway,
                required_claims=tuple(i.required_claims),
            )
            for i in config.issuers
        }
        stripped = {_spelling(name) for name in config.claims_to_metadata}
        if not config.forward_authorization:
            stripped.add("authorization")
            if config.api_keys.header:
                stripped.add(_spelling(config.api_keys.header))
        self._stripped = frozenset(stripped)
        # metadata name -> kept or not: every request sends the same few names again
        self._keeps: dict[str, bool] = {}
        # (metadata name, claim) pairs, made once: most configs have none
        self._claim_fields = tuple(config.claims_to_metadata.items())
        # token -> (claims, key ring generation, issuer policy, first, last: see validity)
        self._verified: OrderedDict[str, _Verified] = OrderedDict()
        self._jwks_issuers = tuple(i.issuer for i in config.issuers if i.jwks_url)
        self._refreshing: dict[str, asyncio.Task[bool]] = {}
        self._api_header = (
            config.api_keys.header.lower().encode() if config.api_keys.header else None
        )

    def __call__(self, call: Call, next_: Next) -> Awaitable[Reply]:
        # not a coroutine itself: when the call is decided at once (a public route, a
        # token verified before and still valid) it costs no frame here
        if "auth.done" in call.state:  # checked before the chain (an HTTP body, a socket)
            return next_(call)
        pending = self.authenticate(call)
        if pending is DONE:
            return next_(call)
        return self._then(pending, call, next_)

    async def _then(self, pending: Awaitable[None], call: Call, next_: Next) -> Reply:
        await pending
        return await next_(call)

    def forget(self, call: Call) -> None:
        """Let ``authenticate`` check this call again (it gained credentials or metadata)."""
        call.state.pop("auth.done", None)

    def authenticate(self, call: Call, policy: RoutePolicy | None = None) -> Awaitable[None]:
        """Check the call's credentials against its route; shape its metadata. Idempotent.

        Raises Unauthenticated or PermissionDenied, at once or when awaited. ``DONE`` when
        it decided at once: no token, or one verified before and still valid.
        """
        if "auth.done" in call.state:
            return DONE
        token = call.token
        claims = None
        if token:
            claims = self._cached(token)
            if claims is None:
                return self._verify_and_admit(call, token, policy)
        self._admit(call, policy or self.index.for_route(call.route), claims)
        return DONE

    async def _verify_and_admit(self, call: Call, token: str, policy: RoutePolicy | None) -> None:
        claims = await self._verify(token)
        self._admit(call, policy or self.index.for_route(call.route), claims)

    def _admit(self, call: Call, policy: RoutePolicy, claims: dict[str, Any] | None) -> None:
        """The route's requirement against verified ``claims`` (or an API key); then the
        metadata: forged claim headers out, verified claims in."""
        api_key = None if claims is not None else self._api_key(call)
        if policy.require != "public":
            if claims is None and not (api_key and policy.api_keys):
                raise Unauthenticated(
                    "a bearer token is required",
                    headers={"www-authenticate": _challenge(None)},
                )
            if policy.require == "scopes":
                if claims is None:
                    raise PermissionDenied(
                        "this route needs a token with scopes, not an API key",
                        headers={"www-authenticate": _challenge("insufficient_scope")},
                    )
                try:
                    require_scopes(claims, policy.scopes, self.config.scope_claim)
                except InsufficientScope as exc:
                    scope = " ".join(sorted(policy.scopes))
                    raise PermissionDenied(
                        exc.description,
                        headers={
                            "www-authenticate": _challenge(
                                "insufficient_scope", exc.description, scope
                            )
                        },
                    ) from exc
        keeps = self._keeps
        metadata: Metadata = []
        try:  # every name judged before (the common request): one probe each, in a plain
            for pair in call.metadata:  # loop (a comprehension is a function call more)
                if keeps[pair[0]]:
                    metadata.append(pair)
        except KeyError:  # a name not judged before: judged now, and remembered
            metadata = [pair for pair in call.metadata if self._kept(pair[0])]
        if claims is not None:
            for name, claim in self._claim_fields:
                value = claims.get(claim)
                if value is not None:
                    text = value if isinstance(value, str) else orjson.dumps(value).decode()
                    metadata.append((name.lower(), text))
            call.state["claims"] = claims
            subject = claims.get("sub")
            call.subject = subject if isinstance(subject, str) else None
        if api_key is not None:
            call.state["api_key"] = api_key
        call.metadata = metadata
        call.state["auth.done"] = True

    async def _verify(self, token: str) -> dict[str, Any]:
        """Verified claims, from the cache when this exact token verified before.

        Signature checks are the costly part (PyJWT spends ~100 us on a small HS256 token);
        a client sends the same token again and again. The cache is keyed by the token's
        exact text and the key ring's generation (a JWKS refresh invalidates it), and the
        time claims are checked again on every use, so an expired token never passes.
        """
        self._refresh_stale()
        now = self.clock()
        cached = self._verified.get(token)
        try:
            if cached is not None and cached[1] == self.ring.generation:
                self._verified.move_to_end(token)
                check_claims(cached[0], cached[2], now)
                return cached[0]
            try:
                claims = verify_token(token, self.issuers, self.ring.keys, now)
            except UnknownKey as unknown:
                if not await self.ring.refresh(unknown.issuer, unknown_kid=True):
                    raise
                claims = verify_token(token, self.issuers, self.ring.keys, self.clock())
        except TokenRejected as exc:
            raise Unauthenticated(
                exc.description,
                headers={"www-authenticate": _challenge("invalid_token", exc.description)},
            ) from exc
        policy = self.issuers[issuer_of(claims)]
        self._verified[token] = (claims, self.ring.generation, policy, *validity(claims, policy))
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return claims

    def _kept(self, name: str) -> bool:
        """Whether metadata ``name`` stays, from memory when it was judged before."""
        keep = self._keeps.get(name)
        return self._keep(name) if keep is None else keep

    def _keep(self, name: str) -> bool:
        """Whether metadata ``name`` stays, remembered for the first ``KEPT_NAMES`` names."""
        keep = _spelling(name) not in self._stripped
        if len(self._keeps) < KEPT_NAMES:
            self._keeps[name] = keep
        return keep

    def _cached(self, token: str) -> dict[str, Any] | None:
        """``_verify`` without the coroutine, when it would answer from the cache: the
        claims of a token verified with the current keys and still in its time window."""
        if self._jwks_issuers:  # keys fetched from JWKS may be due a refresh
            self._refresh_stale()
        cached = self._verified.get(token)
        if cached is None:
            return None
        claims, generation, policy, first, last = cached
        now = self.clock()
        # valid_at, inline: the check every request with a token makes
        if generation != self.ring.generation or not (now <= last and now + policy.leeway >= first):
            return None  # _verify verifies it again, or says why it no longer passes
        self._verified.move_to_end(token)
        return claims

    def _refresh_stale(self) -> None:
        for issuer in self._jwks_issuers:
            if self.ring.stale(issuer) and issuer not in self._refreshing:
                # past its max-age: refetch in the background (a removed key must stop
                # verifying), while this request uses the keys we have
                task = asyncio.create_task(self.ring.refresh(issuer, unknown_kid=False))
                self._refreshing[issuer] = task
                task.add_done_callback(self._refreshed)

    def _refreshed(self, task: asyncio.Task[bool]) -> None:
        for issuer, running in list(self._refreshing.items()):
            if running is task:
                del self._refreshing[issuer]

    def has_api_key(self, call: Call) -> bool:
        keys = self.config.api_keys
        if not keys.keys:
            return False
        if self._api_header and header_value(call.headers, self._api_header) is not None:
            return True
        return bool(keys.query_parameter and query_value(call.query, keys.query_parameter))

    def _api_key(self, call: Call) -> str | None:
        keys = self.config.api_keys
        if not keys.keys:
            return None
        given = header_value(call.headers, self._api_header) if self._api_header else None
        if given is None and keys.query_parameter:
            given = query_value(call.query, keys.query_parameter)
        if given is None:
            return None
        matched = None
        for name, expected in keys.keys.items():  # compare with every key: constant time
            if same_secret(given, expected):
                matched = name
        if matched is None:
            raise Unauthenticated(
                "the API key is not valid",
                headers={"www-authenticate": _challenge("invalid_token", "unknown API key")},
            )
        return matched
