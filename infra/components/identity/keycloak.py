"""Keycloak as code (`identity.provider: keycloak`, pulumi-keycloak): the realm (or an existing one), a client scope
per server scope, and on each of them an audience mapper that writes the server's resource URL into `aud`.

Without an audience mapper Keycloak writes `aud: account` (every server refuses that); the mapper on each scope is
what binds a token to the server whose scope it carries (so a token asked with `db:read` names the db server, and
the files server refuses it). The scopes are optional client scopes of the realm, so a client asks for them; with
`registrationTrustedHosts`, anonymous dynamic registration is allowed from those hosts only (Keycloak's Trusted
Hosts policy). Everything is derived from the servers' declarations (`infra.authz.resources`).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_keycloak as keycloak

from apps.kit import FocusedServer
from infra import authz
from infra.config import KeycloakConfig, StackConfig


class KeycloakRealm(pulumi.ComponentResource):
    scopes: dict[str, keycloak.openid.ClientScope]

    def __init__(
        self,
        name: str,
        stack: StackConfig,
        config: KeycloakConfig,
        servers: dict[str, FocusedServer[Any, Any]],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("mcpfleet:index:KeycloakRealm", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if config.existing_realm:
            realm_id: pulumi.Input[str] = config.realm
        else:
            realm = keycloak.Realm(f"{name}-realm", realm=config.realm, enabled=True, opts=child)
            realm_id = realm.id
        urls = {app: str(entry.resource_url) for app, entry in stack.apps.items()}
        self.scopes = {}
        for app, (resource, scopes) in authz.resources(servers, urls).items():
            for scope in scopes:
                client_scope = keycloak.openid.ClientScope(
                    f"{name}-scope-{scope.replace(':', '-')}",
                    realm_id=realm_id,
                    name=scope,
                    description=f"{scope} on {app}",
                    include_in_token_scope=True,  # the token's `scope` names it
                    opts=child,
                )
                keycloak.openid.AudienceProtocolMapper(
                    f"{name}-audience-{scope.replace(':', '-')}",
                    realm_id=realm_id,
                    client_scope_id=client_scope.id,
                    name="audience",
                    included_custom_audience=resource,  # `aud`: the one server this scope is of
                    add_to_access_token=True,
                    add_to_id_token=False,
                    opts=child,
                )
                self.scopes[scope] = client_scope
        keycloak.RealmOptionalClientScopes(
            f"{name}-optional-scopes",
            realm_id=realm_id,
            optional_scopes=[scope.name for scope in self.scopes.values()],
            opts=child,
        )
        if config.registration_trusted_hosts:
            keycloak.RealmClientRegistrationPolicy(
                f"{name}-trusted-hosts",
                realm_id=realm_id,
                name="mcp-clients-trusted-hosts",
                provider_id="trusted-hosts",
                sub_type="anonymous",
                config={
                    "trusted-hosts": "##".join(config.registration_trusted_hosts),
                    "host-sending-registration-request-must-match": "false",
                    "client-uris-must-match": "true",
                },
                opts=child,
            )
        self.register_outputs({})
