"""Security schemes and per-route requirements for the OpenAPI document (pure).

The schemes come from the ``auth`` section (a bearer JWT, the token's query parameter or
cookie when configured, API keys when any are configured); each route's requirement
comes from the policy its name matches (``PolicyIndex``, as the pipeline itself decides):
``token`` is any one of the schemes (API keys only where the policy accepts them),
``scopes`` a JWT with the scopes listed, ``public`` no requirement.
"""

from __future__ import annotations

from typing import Any

from edge.config import Config
from edge.pipeline.policy import PolicyIndex, RoutePolicy

Schema = dict[str, Any]


class SecurityRequirements:
    """Security schemes from the auth config, and each route's requirement from its policy."""

    def __init__(self, config: Config) -> None:
        self._auth = config.auth
        self._policies = PolicyIndex(config.policies, config.default_policy)
        self.schemes: dict[str, Any] = {}

    def _use(self, name: str, scheme: dict[str, Any]) -> str:
        self.schemes.setdefault(name, scheme)
        return name

    def _token_schemes(self) -> list[str]:
        issuers = ", ".join(issuer.issuer for issuer in self._auth.issuers) or "none configured"
        names = [
            self._use(
                "bearerAuth",
                {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": f"A JWT from an accepted issuer ({issuers})",
                },
            )
        ]
        if self._auth.token_query_parameter:
            names.append(
                self._use(
                    "tokenQuery",
                    {
                        "type": "apiKey",
                        "in": "query",
                        "name": self._auth.token_query_parameter,
                        "description": "The same JWT in a query parameter (for EventSource)",
                    },
                )
            )
        if self._auth.token_cookie:
            names.append(
                self._use(
                    "tokenCookie",
                    {
                        "type": "apiKey",
                        "in": "cookie",
                        "name": self._auth.token_cookie,
                        "description": "The same JWT in a cookie",
                    },
                )
            )
        return names

    def _api_key_schemes(self) -> list[str]:
        keys = self._auth.api_keys
        if not keys.keys:
            return []
        names = []
        if keys.header:
            names.append(
                self._use("apiKey", {"type": "apiKey", "in": "header", "name": keys.header})
            )
        if keys.query_parameter:
            names.append(
                self._use(
                    "apiKeyQuery", {"type": "apiKey", "in": "query", "name": keys.query_parameter}
                )
            )
        return names

    def requirement(self, route_name: str) -> tuple[list[dict[str, list[str]]] | None, Schema]:
        """The route's ``security`` alternatives (None when public) and its auth responses."""
        policy: RoutePolicy = self._policies.for_route(route_name)
        responses: Schema = {}
        if policy.limits:
            responses["429"] = {"$ref": "#/components/responses/RateLimited"}
        if policy.require == "public":
            return None, responses
        scopes = sorted(policy.scopes) if policy.require == "scopes" else []
        alternatives = [{name: scopes} for name in self._token_schemes()]
        if policy.require == "token" and policy.api_keys:
            alternatives += [{name: []} for name in self._api_key_schemes()]
        responses["401"] = {"$ref": "#/components/responses/Unauthenticated"}
        if scopes:
            responses["403"] = {"$ref": "#/components/responses/PermissionDenied"}
        return alternatives, responses
