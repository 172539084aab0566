"""An app's wiring: the environment it runs with, derived once from its declaration (`Needs`) and its
stack entry, for every target: Kubernetes (`McpApp`) and the one-machine composition (`infra.compose`).

Plain values come back as they are; values that are secrets (its DSNs, the Redis URL, the token secret,
its declared secrets) come back as names only, for the target to fill from where it keeps secrets (a
Kubernetes Secret, a git-ignored file).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from apps.kit import FocusedServer
from infra import fleet, redis_acl
from infra.components.observability.collector import otlp_endpoint, sampling_env
from infra.config import AGENTS_NAMESPACE, APP_NAMESPACE, AppConfig, StackConfig
from infra.names import METRICS_PORT, PORT

SHUTDOWN_GRACE_SECONDS = 25  # the app drains this long after SIGTERM
JWKS_ALGORITHMS = "RS256 ES256"


def secret_values(
    app: AppConfig,
    server: FocusedServer[Any, Any],
    dsn: Callable[[str], Any],
    redis_url: Any,
    jwt_secret: Any,
    provided: Mapping[str, Any],
) -> dict[str, Any]:
    """The values of `secret_env`, for every target: its DSNs (`dsn(role)`), the Redis URL, the token secret
    when tokens are HS256, and the declared secrets the stack provides (`provided`: key -> value)."""
    needs = server.needs
    values: dict[str, Any] = {env: dsn(role) for env, role in needs.postgres.items()}
    if fleet.uses_redis(app, server) and redis_url is not None:
        values["REDIS_URL"] = redis_url
    if jwt_secret is not None:
        values["MCP_JWT_SECRET"] = jwt_secret
    values |= {env: provided[key] for env, key in needs.secrets.items()}
    values |= {env: provided[key] for env, key in needs.optional_secrets.items() if key in provided}
    return values


@dataclass(frozen=True)
class Wiring:
    env: dict[str, str]  # plain settings, in a stable order
    secret_env: list[str]  # settings whose values are secrets, sorted


def secret_env(
    app: AppConfig, server: FocusedServer[Any, Any], provided: Collection[str], shared_jwt_secret: bool
) -> list[str]:
    """The env vars an app gets from its secret: its DSNs, declared secrets, the Redis URL (`fleet.uses_redis`),
    optional secrets the stack provides (`provided`: their keys), and the token secret when tokens are HS256."""
    needs = server.needs
    keys = [*needs.postgres, *needs.secrets] + (["REDIS_URL"] if fleet.uses_redis(app, server) else [])
    keys += [env for env, key in needs.optional_secrets.items() if key in provided]
    return sorted(keys + (["MCP_JWT_SECRET"] if shared_jwt_secret else []))


def wiring(
    name: str,
    app: AppConfig,
    server: FocusedServer[Any, Any],
    stack: StackConfig,
    service_urls: Mapping[str, str],
    *,
    provided_secrets: Collection[str],
    shared_jwt_secret: bool,
    resource_url: str | None = None,
    egress_proxy: str | None = None,
) -> Wiring:
    """Everything an app's process is started with. `service_urls` are the platform services' URLs by the
    name `Needs.services` uses; `resource_url` overrides the stack's (the one-machine target's local URL);
    `egress_proxy` is the app's own port on the egress proxy, when it reaches any outside host."""
    needs = server.needs
    env = {
        "MCP_RESOURCE_URL": resource_url or str(app.resource_url),
        "MCP_ISSUER": str(stack.issuer),
        "RATE_LIMIT_PER_MINUTE": str(app.rate_limit_per_minute),
        "RATE_LIMIT_REDIS_FAILURE": stack.redis_failure_mode,
        "PORT": str(PORT),
        "MCP_METRICS_PORT": str(METRICS_PORT),
        "SHUTDOWN_GRACE_SECONDS": str(SHUTDOWN_GRACE_SECONDS),
        "OTEL_SERVICE_NAME": name,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint(AGENTS_NAMESPACE),
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
    if stack.jwks_url:
        env |= {"MCP_JWKS_URL": str(stack.jwks_url), "MCP_JWT_ALGORITHMS": JWKS_ALGORITHMS}
    wired = Wiring(env, secret_env(app, server, provided_secrets, shared_jwt_secret))
    fleet.check_wiring(name, wired.env, wired.secret_env, server)
    return wired
