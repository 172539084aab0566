"""Token profiles: where each identity provider puts the audience, the client, the scopes and the groups in
an access token, read into one `Principal`.

Providers agree on the signature, `iss` and `exp`, and on little else. A profile only says where to read a fact;
every token still passes the same checks first (signature, pinned `alg`, issuer, expiry), and a profile never
widens what a token grants: it reads the claims the provider documents as the grant for this API and nothing
that merely describes the person (Auth0's `permissions` lists what a person may be granted, not what this token
was; Cognito's `cognito:groups` is read as groups, never as scopes).

Each profile, as its provider documents its access tokens (audience; client; scopes; groups):
- `rfc9068` (the default, RFC 9068 §2.2): `aud`; `client_id`, else `azp`; `scope`, else `scp`; `groups`.
- `keycloak`: `aud` (from an audience mapper); `azp`; `scope`; `groups` and `realm_access.roles`.
- `entra` (Microsoft identity platform, v1 and v2): `aud` (the application ID URI or app id); `azp`, else
  `appid`; delegated `scp` and application `roles` together; `groups`.
- `okta` (a custom authorization server): `aud`; `cid`; `scp` (a list); `groups`.
- `auth0`: `aud` (the API identifier, a string or a list); `azp`; `scope`; no groups.
- `cognito`: no `aud` in an access token, so `client_id` must be an accepted audience; `client_id`; `scope`,
  where a custom scope is `<resource server identifier>/<name>` and only this server's (its resource URL) count;
  `cognito:groups`; and `token_use` must be `access`.

`MCP_ACCEPTED_AUDIENCES` names what else than the resource URL the provider writes as the audience (Entra's
application ID URI or app id, Okta's authorization-server audience, Cognito's app client ids); nothing is
accepted that the operator did not name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apps.kit.declare.config import TokenProfileName as ProfileName


@dataclass(frozen=True)
class TokenProfile:
    name: ProfileName
    # the claim holding the audience; None: the provider writes none in access tokens (Cognito), and the client
    # the token was issued to must be an accepted audience instead
    audience_claim: str | None
    client_claims: tuple[str, ...]  # the first present names the client
    scope_claims: tuple[str, ...]  # each a space-separated string or a list of strings
    group_claims: tuple[str, ...]  # dotted paths into the claims (`realm_access.roles`), their union
    # a claim that must hold this value (Cognito's `token_use`: an ID token is no access token)
    must_hold: tuple[str, str] | None = None
    # the scope claims together (Entra: delegated `scp` and application `roles`), or only the first present
    scopes_together: bool = True
    # scopes are `<resource server>/<name>` (Cognito): only this resource's count, by their names
    scopes_under_resource: bool = False

    def audiences(self, claims: dict[str, Any]) -> list[str]:
        value = claims.get(self.audience_claim or "client_id")
        values = value if isinstance(value, list) else [value]
        return [v for v in values if isinstance(v, str)]

    def client(self, claims: dict[str, Any]) -> str | None:
        for claim in self.client_claims:
            value = claims.get(claim)
            if isinstance(value, str) and value:
                return value
        return None

    def scopes(self, claims: dict[str, Any], resource: str) -> frozenset[str]:
        present = [claim for claim in self.scope_claims if claim in claims]
        read = present if self.scopes_together else present[:1]
        words = [word for claim in read for word in _words(claims[claim])]
        if self.scopes_under_resource:
            prefix = resource.rstrip("/") + "/"
            words = [word.removeprefix(prefix) for word in words if word.startswith(prefix)]
        return frozenset(words)

    def groups(self, claims: dict[str, Any]) -> frozenset[str]:
        return frozenset(word for path in self.group_claims for word in _strings(_at(claims, path)))

    def holds_required(self, claims: dict[str, Any]) -> bool:
        return self.must_hold is None or claims.get(self.must_hold[0]) == self.must_hold[1]


PROFILES: dict[str, TokenProfile] = {
    profile.name: profile
    for profile in (
        TokenProfile("rfc9068", "aud", ("client_id", "azp"), ("scope", "scp"), ("groups",), scopes_together=False),
        TokenProfile("keycloak", "aud", ("azp", "client_id"), ("scope",), ("groups", "realm_access.roles")),
        TokenProfile("entra", "aud", ("azp", "appid"), ("scp", "roles"), ("groups",)),
        TokenProfile("okta", "aud", ("cid",), ("scp",), ("groups",)),
        TokenProfile("auth0", "aud", ("azp",), ("scope",), ()),
        TokenProfile(
            "cognito",
            None,
            ("client_id",),
            ("scope",),
            ("cognito:groups",),
            ("token_use", "access"),
            scopes_under_resource=True,
        ),
    )
}


def _words(value: Any) -> list[str]:
    """A scope claim: a space-separated string (RFC 8693 `scope`, Entra `scp`) or a list of strings."""
    if isinstance(value, str):
        return value.split()
    return _strings(value)


def _strings(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _at(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
