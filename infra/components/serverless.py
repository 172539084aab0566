"""What a serverless app (Cloud Run, Lambda) is started with: the same wiring as on the cluster
(`infra.wiring`), changed only where the platform differs. It keeps no background work between requests
(`MCP_SERVERLESS`), drains within the platform's notice after SIGTERM, exports spans by push (nothing scrapes
an instance that may not exist), and reaches the database and Redis through the VPC: the external database,
and a managed Redis (`mcpfleet:serverlessRedisUrl`) whenever it may run as more than one instance, since its
rate limit holds across instances only there."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from apps.kit import FocusedServer
from infra import fleet
from infra.components.postgres import Postgres
from infra.config import NAMESPACE, AppConfig, StackConfig, StackConfigError
from infra.wiring import Target, Wiring, secret_values, wiring

# Seconds between SIGTERM and the kill: Cloud Run gives 10, Lambda's shutdown phase 2 (with an extension).
NOTICE_SECONDS = {"cloudrun": 10, "lambda": 2}


@dataclass
class ServerlessPlatform:
    stack: StackConfig
    image: pulumi.Input[str]
    postgres: Postgres
    redis_url: pulumi.Input[str] | None  # a managed Redis the VPC reaches
    app_secrets: dict[str, dict[str, pulumi.Input[str]]] = field(default_factory=dict)


def check(name: str, app: AppConfig, server: FocusedServer[Any, Any], stack: StackConfig, has_redis: bool) -> None:
    """What a serverless target cannot give an app, refused before anything is created."""
    key = f"{NAMESPACE}:apps.{name}"
    if server.needs.services:
        raise StackConfigError(
            f"{key} targets {app.target} but uses in-cluster services {sorted(server.needs.services.values())}, "
            "which a serverless instance cannot reach: run it on kubernetes"
        )
    if server.needs.postgres and stack.postgres.mode != "external":
        raise StackConfigError(
            f"{key} targets {app.target}: its database must be external (postgres.mode external), reachable "
            "from the VPC; the in-cluster statefulset is not"
        )
    if fleet.uses_redis(app, server) and not has_redis:
        raise StackConfigError(
            f"{key} targets {app.target} with maxReplicas {app.max_replicas}: set the secret "
            f"{NAMESPACE}:serverlessRedisUrl (a managed Redis in the VPC), or its rate limit would hold per "
            "instance only (or set maxReplicas 1)"
        )


def serverless_wiring(name: str, app: AppConfig, server: FocusedServer[Any, Any], stack: StackConfig) -> Wiring:
    # No metrics port (metrics are pushed) and no node agent: spans go to the stack's OTLP endpoint, or nowhere.
    otlp = stack.serverless.otlp_endpoint
    target = Target(
        otlp_endpoint=str(otlp) if otlp is not None else None,
        unset=frozenset({"MCP_METRICS_PORT"} | ({"OTEL_EXPORTER_OTLP_ENDPOINT"} if otlp is None else set())),
        overrides={
            "MCP_SERVERLESS": "true",
            "SHUTDOWN_GRACE_SECONDS": str(NOTICE_SECONDS[app.target] - 2),  # drained, spans flushed, within notice
            "MCP_MAX_CONCURRENT_REQUESTS": str(1 if app.target == "lambda" else app.concurrency),
        },
    )
    return wiring(name, app, server, stack, {}, provided_secrets=(), target=target)


def app_secret_values(
    name: str, app: AppConfig, server: FocusedServer[Any, Any], platform: ServerlessPlatform
) -> dict[str, pulumi.Input[str]]:
    """This app's own secret values, as on the cluster (`infra.wiring.secret_values`)."""
    provided = platform.app_secrets.get(name, {})
    return secret_values(app, server, platform.postgres.dsn, platform.redis_url, provided)


def sized_for_instance(app: AppConfig, server: FocusedServer[Any, Any]) -> AppConfig:
    """A serverless instance takes `concurrency` requests at once (Lambda: one), so its pools need no more
    connections than that, unless the stack sized them; the connection check then counts what they open."""
    setting = server.needs.postgres_pool_setting
    if not app.serverless or setting is None or setting.upper() in {k.upper() for k in app.settings}:
        return app
    size = 1 if app.target == "lambda" else app.concurrency
    return app.model_copy(update={"settings": {**app.settings, setting.upper(): str(size)}})
