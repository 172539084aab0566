"""Auth0 as code (`identity.provider: auth0`, pulumi-auth0): an API (resource server) per app, identified by its
resource URL with the scopes its tools declare, and the tenant's settings MCP clients need.

Auth0 names the API by `audience`; the tenant's resource parameter profile `compatibility` lets a client that
sends RFC 8707's `resource` (every MCP client) get a token for that API, with `aud` the resource URL. Dynamic
registration is the tenant's flag. Tokens are RS256 with the scopes granted in `scope` (the token profile `auth0`
reads that, not `permissions`). Everything is derived from the servers' declarations (`infra.authz.resources`).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_auth0 as auth0

from apps.kit import FocusedServer
from infra import authz
from infra.config import Auth0Config, StackConfig


class Auth0Tenant(pulumi.ComponentResource):
    apis: dict[str, auth0.ResourceServer]

    def __init__(
        self,
        name: str,
        stack: StackConfig,
        config: Auth0Config,
        servers: dict[str, FocusedServer[Any, Any]],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("mcpfleet:index:Auth0Tenant", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        auth0.Tenant(
            f"{name}-tenant",
            resource_parameter_profile="compatibility",  # `resource` (RFC 8707) names the API, as `audience` does
            flags={"enable_dynamic_client_registration": config.dynamic_registration},
            opts=child,
        )
        urls = {app: str(entry.resource_url) for app, entry in stack.apps.items()}
        self.apis = {}
        for app, (resource, scopes) in authz.resources(servers, urls).items():
            api = auth0.ResourceServer(
                f"{name}-api-{app}",
                name=app,
                identifier=resource,  # the audience: its tokens carry this in `aud`
                signing_alg="RS256",
                allow_offline_access=True,  # refresh tokens for its clients
                token_lifetime=3600,
                skip_consent_for_verifiable_first_party_clients=False,
                opts=child,
            )
            auth0.ResourceServerScopes(
                f"{name}-scopes-{app}",
                resource_server_identifier=api.identifier,
                scopes=[{"name": scope, "description": f"{scope} on {app}"} for scope in scopes],
                opts=child,
            )
            self.apis[app] = api
        self.register_outputs({})
