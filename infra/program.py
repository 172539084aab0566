"""The whole environment, composed from one component per part."""

from __future__ import annotations

import pulumi
import pulumi_random as random

from infra import config as stack_config
from infra.components.baseline import Baseline
from infra.components.cluster import Cluster
from infra.components.mcp_app import McpApp
from infra.components.observability import Observability
from infra.components.observability.collector import otlp_egress
from infra.components.postgres import Postgres
from infra.components.redis import Redis
from infra.config import AGENTS_NAMESPACE, APP_NAMESPACE, OBSERVABILITY_NAMESPACE


def main() -> None:
    stack = stack_config.load()
    secrets = pulumi.Config(stack_config.NAMESPACE)

    cluster = Cluster("cluster", stack.cluster)
    after_baseline = pulumi.ResourceOptions(depends_on=[Baseline("baseline", cluster.provider)])
    postgres = Postgres(
        "postgres",
        stack.postgres,
        cluster.image,
        cluster.provider,
        admin_password=secrets.get_secret("postgresAdminPassword"),
        external_admin_url=secrets.get_secret("postgresAdminUrl"),
        opts=after_baseline,
    )
    redis = Redis("redis", cluster.provider, opts=after_baseline)
    observability = Observability(
        "observability",
        stack,
        cluster.provider,
        grafana_admin_password=secrets.get_secret("grafanaAdminPassword"),
        opts=after_baseline,
    )
    jwt_secret = secrets.get_secret("jwtSecret") or random.RandomPassword("jwt-secret", length=48, special=False).result

    urls = {}
    for name, app in stack.apps.items():
        app_secrets: dict[str, pulumi.Input[str]] = {"REDIS_URL": redis.url}
        egress = [redis.egress, otlp_egress(AGENTS_NAMESPACE)]
        if not stack.jwks_url:
            app_secrets["MCP_JWT_SECRET"] = jwt_secret
        if app.database:
            app_secrets |= {"DB_READ_URL": postgres.reader_url, "DB_WRITE_URL": postgres.writer_url}
            egress.append(postgres.egress)
        urls[name] = McpApp(
            name, app, stack, cluster.image, cluster.provider, app_secrets, egress, opts=after_baseline
        ).url

    pulumi.export("app_urls", urls)
    pulumi.export("grafana_url", observability.grafana_url)
    pulumi.export(
        "port_forward",
        {
            **{name: f"kubectl -n {APP_NAMESPACE} port-forward svc/{name} 8080:80" for name in stack.apps},
            "grafana": f"kubectl -n {OBSERVABILITY_NAMESPACE} port-forward svc/grafana 3000:3000",
            "prometheus": f"kubectl -n {OBSERVABILITY_NAMESPACE} port-forward svc/prometheus 9090:9090",
        },
    )
    if not stack.jwks_url:
        pulumi.export(
            "dev_token_command",
            {
                name: "MCP_JWT_SECRET=$(pulumi stack output --show-secrets jwt_secret) "
                f"python -m apps.kit.token --sub you --scopes '{' '.join(app.scopes)}' "
                f"--aud {app.resource_url} --iss {stack.issuer}"
                for name, app in stack.apps.items()
            },
        )
        pulumi.export("jwt_secret", pulumi.Output.secret(jwt_secret))
