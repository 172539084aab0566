"""An app's wiring: the environment it runs with, derived once from its declaration (`Needs`) and its
stack entry, for every target: Kubernetes (`McpApp`), Cloud Run and Lambda (`serverless_wiring`) and the
one-machine composition (`onebox.compose`). What differs between targets is stated once per target as a
`Target`, and the environment is checked by the app's own settings class as the target will start it: nothing
changes it after the check.

Plain values come back as they are; values that are secrets (its DSNs, the Redis URL, the token secret,
its declared secrets) come back as names only, for the target to fill from where it keeps secrets (a
Kubernetes Secret, a git-ignored file).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from alerts.names import METRICS_PORT, PORT
from apps.kit import FocusedServer, KitSettings
from infra import authz, fleet, redis_acl
from infra.components.observability.collector import otlp_endpoint, sampling_env
from infra.config import AGENTS_NAMESPACE, APP_NAMESPACE, AUTHZ_HOST, AUTHZ_PORT, AppConfig, StackConfig

# the app drains this long after SIGTERM: the kit's default, written once (`KitSettings`)
SHUTDOWN_GRACE_SECONDS = int(KitSettings.model_fields["shutdown_grace_seconds"].default)
JWKS_ALGORITHMS = "RS256 ES256"


def secret_values(
    app: AppConfig,
    server: FocusedServer[Any, Any],
    dsn: Callable[[str], Any],
    redis_url: Any,
    provided: Mapping[str, Any],
) -> dict[str, Any]:
    """An app's secret settings, for every target, from where that target keeps them: its DSNs (`dsn(role)`),
    the Redis URL (`fleet.uses_redis`), its declared secrets and the optional ones the stack provides
    (`provided`: key -> value). No token secret: every server verifies tokens by the issuer's public keys."""
    needs = server.needs
    values: dict[str, Any] = {env: dsn(role) for env, role in needs.postgres.items()}
    if fleet.uses_redis(app, server) and redis_url is not None:
        values["REDIS_URL"] = redis_url
    values |= {env: provided[key] for env, key in needs.secrets.items()}
    values |= {env: provided[key] for env, key in needs.optional_secrets.items() if key in provided}
    return values


@dataclass(frozen=True)
class Deferred:
    """A value the target fills in when the app starts (a Compose `${VAR:-default}`): written as `written`,
    checked as `checked` (what it comes to when nothing moves it)."""

    written: str
    checked: str


Value = str | Deferred


@dataclass(frozen=True)
class Target:
    """What one target changes in every app's environment. `resource_url`, `issuer` and `otlp_endpoint` replace
    the stack's and the cluster's; `unset` drops settings the target has no use for; `overrides` are the target's own
    values (a serverless instance's grace and concurrency)."""

    resource_url: Value | None = None
    issuer: Value | None = None
    otlp_endpoint: Value | None = None
    unset: frozenset[str] = frozenset()
    overrides: Mapping[str, str] = field(default_factory=dict)


KUBERNETES = Target()


@dataclass(frozen=True)
class Wiring:
    env: dict[str, str]  # plain settings, in a stable order
    secret_env: list[str]  # settings whose values are secrets, sorted


def secret_env(app: AppConfig, server: FocusedServer[Any, Any], provided: Collection[str]) -> list[str]:
    """The names of `secret_values` (the one derivation), before any value exists: what a Kubernetes Secret
    reference or a `.env` entry is made for. `provided`: the keys of the optional secrets the stack gives."""
    values = secret_values(
        app,
        server,
        dsn=str,
        redis_url="",
        provided=dict.fromkeys([*server.needs.secrets.values(), *provided], ""),
    )
    return sorted(values)


def wiring(
    name: str,
    app: AppConfig,
    server: FocusedServer[Any, Any],
    stack: StackConfig,
    service_urls: Mapping[str, str],
    *,
    provided_secrets: Collection[str],
    target: Target = KUBERNETES,
    egress_proxy: str | None = None,
) -> Wiring:
    """Everything an app's process is started with, on `target`. `service_urls` are the platform services' URLs
    by the name `Needs.services` uses; `egress_proxy` is the app's own port on the egress proxy, when it reaches
    any outside host."""
    needs = server.needs
    env: dict[str, Value] = {
        "MCP_RESOURCE_URL": target.resource_url or str(app.resource_url),
        "MCP_ISSUER": target.issuer or str(stack.issuer),
        "RATE_LIMIT_PER_MINUTE": str(app.rate_limit_per_minute),
        "RATE_LIMIT_REDIS_FAILURE": stack.redis_failure_mode,
        "PORT": str(PORT),
        "MCP_METRICS_PORT": str(METRICS_PORT),
        "SHUTDOWN_GRACE_SECONDS": str(SHUTDOWN_GRACE_SECONDS),
        "OTEL_SERVICE_NAME": name,
        "OTEL_EXPORTER_OTLP_ENDPOINT": target.otlp_endpoint or otlp_endpoint(AGENTS_NAMESPACE),
        "OTEL_RESOURCE_ATTRIBUTES": f"service.namespace={APP_NAMESPACE}",
        **sampling_env(stack.observability.trace_sample_ratio),
        **{variable: service_urls[service] for variable, service in needs.services.items()},
    }
    volumes = fleet.volume_env(server, fleet.read_only_volumes(name, app, server))
    env |= volumes
    env |= {key.upper(): value for key, value in sorted(app.settings.items()) if key.upper() not in volumes}
    if fleet.uses_redis(app, server):
        env["REDIS_KEY_PREFIX"] = redis_acl.key_prefix(name)  # its ACL user may touch these keys only
    if egress_proxy:
        env["MCP_EGRESS_PROXY"] = egress_proxy
    env |= {"MCP_JWKS_URL": stack.keys_url, "MCP_JWT_ALGORITHMS": JWKS_ALGORITHMS}
    if stack.identity.provider == "local":
        env["MCP_JWT_REQUIRE_AT_TYP"] = "true"  # oidc-provider's access tokens are RFC 9068's, typ at+jwt
        if any(path.endswith("/signed-in") for path in server.pages):  # its pages sign the person in
            env["MCP_SIGNIN_CLIENT_ID"] = authz.signin_client_id(name)
            env["MCP_ISSUER_INTERNAL_URL"] = f"http://{AUTHZ_HOST}:{AUTHZ_PORT}"
    if stack.identity.profile != "rfc9068":  # where this provider puts audience, client, scopes and groups
        env["MCP_TOKEN_PROFILE"] = stack.identity.profile
    if audiences := stack.identity.accepted_audiences.get(name):
        env["MCP_ACCEPTED_AUDIENCES"] = " ".join(audiences)
    env = {key: value for key, value in env.items() if key not in target.unset} | dict(target.overrides)
    wired = Wiring(
        {key: value.written if isinstance(value, Deferred) else value for key, value in env.items()},
        secret_env(app, server, provided_secrets),
    )
    checked = {key: value.checked if isinstance(value, Deferred) else value for key, value in env.items()}
    fleet.check_wiring(name, checked, wired.secret_env, server)
    return wired
