"""The whole environment, composed from one component per part.

Adding a focused server is its folder under `apps/` plus one entry under `mcpfleet:apps`: what it
may reach, its scopes and its alerts all follow from its own declaration.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pulumi
import pulumi_random as random

from apps import fleet as apps_fleet
from apps.kit import FocusedServer
from infra import config as stack_config
from infra import fleet
from infra.components import serverless
from infra.components.baseline import Baseline
from infra.components.cloud_run import CloudRunApp
from infra.components.cluster import Cluster
from infra.components.dev_edge import DevEdge, routed_hosts
from infra.components.egress_proxy import EgressProxy
from infra.components.identity import local as authorization_server
from infra.components.identity.auth0 import Auth0Tenant
from infra.components.identity.keycloak import KeycloakRealm
from infra.components.identity.local import AuthorizationServer
from infra.components.lambda_app import LambdaApp
from infra.components.mcp_app import McpApp, Platform
from infra.components.observability import Observability
from infra.components.postgres import Postgres
from infra.components.redis import Redis
from infra.components.registries import ArtifactRegistryRemote, EcrCopy
from infra.config import APP_NAMESPACE, OBSERVABILITY_NAMESPACE, StackConfig, StackConfigError
from infra.egress import plan as egress_plan


def app_secrets(
    stack: StackConfig, servers: dict[str, FocusedServer[Any, Any]], config: pulumi.Config
) -> dict[str, dict[str, pulumi.Input[str]]]:
    """Each app's declared secrets from `mcpfleet:<app>.<key>` (set with `--secret`); generated on a dev stack,
    except those issued by somebody else (`Needs.issued_secrets`)."""
    values: dict[str, dict[str, pulumi.Input[str]]] = {}
    for name, server in servers.items():
        values[name] = {}
        for key in server.needs.secrets.values():
            value = config.get_secret(f"{name}.{key}")
            if value is None and (stack.cluster.mode == "existing" or key in server.needs.issued_secrets):
                issued = " (issued by the API's owner: never generated)" if key in server.needs.issued_secrets else ""
                raise StackConfigError(
                    f"set the secret {stack_config.NAMESPACE}:{name}.{key} (pulumi config set --secret){issued}"
                )
            values[name][key] = value or random.RandomPassword(f"{name}-{key}", length=40, special=False).result
        for key in server.needs.optional_secrets.values():
            if (value := config.get_secret(f"{name}.{key}")) is not None:
                values[name][key] = value
    return values


def without_uncredentialed(
    stack: StackConfig, servers: dict[str, FocusedServer[Any, Any]], config: pulumi.Config
) -> StackConfig:
    """On a kind (dev) stack, an app whose issued credential is not set is left out, saying which secret brings
    it in: a laptop stands up without somebody else's API token. An existing cluster stops instead."""
    if stack.cluster.mode != "kind":
        return stack
    kept = {}
    for name, app in stack.apps.items():
        issued = sorted(servers[name].needs.issued_secrets)
        missing = [key for key in issued if config.get_secret(f"{name}.{key}") is None]
        if missing:
            pulumi.log.warn(
                f"{stack_config.NAMESPACE}:apps.{name} is left out of this dev stack: set "
                + ", ".join(f"{stack_config.NAMESPACE}:{name}.{key}" for key in missing)
                + " (pulumi config set --secret; issued by the API's owner, never generated) to deploy it"
            )
        else:
            kept[name] = app
    if not kept:
        raise StackConfigError("every app of this stack is left out for want of its credential")
    return stack.model_copy(update={"apps": kept})


def checked_stack(
    secrets: pulumi.Config,
) -> tuple[StackConfig, dict[str, FocusedServer[Any, Any]]]:
    """The stack file as its apps declare themselves: every entry checked against its server, apps without their
    issued credential left out (dev), serverless apps sized per instance; stops before anything is created."""
    stack = stack_config.load()
    servers = {name: fleet.load_server(app.module) for name, app in stack.apps.items()}
    for name, app in stack.apps.items():
        if app.module not in apps_fleet.modules():  # a demo or an outside module: deployed, but not in the registry
            pulumi.log.warn(
                f"{stack_config.NAMESPACE}:apps.{name}: module {app.module} is not a server of this repository's "
                "fleet (apps/<name>/): its own alerts, runbooks and dashboard row are not rendered"
            )
    for name, app in stack.apps.items():
        fleet.check(name, app, servers[name])
        fleet.check_app_policies(stack, name, servers[name])
    stack = without_uncredentialed(stack, servers, secrets)
    servers = {name: servers[name] for name in stack.apps}
    sized = {name: serverless.sized_for_instance(app, servers[name]) for name, app in stack.apps.items()}
    stack = stack.model_copy(update={"apps": sized})
    for name, app in stack.apps.items():
        if app.serverless:
            has_redis = secrets.get_secret("serverlessRedisUrl") is not None
            serverless.check(name, app, servers[name], stack, has_redis=has_redis)
    fleet.check_connections(stack, servers)
    return stack, servers


def main() -> None:
    secrets = pulumi.Config(stack_config.NAMESPACE)
    stack, servers = checked_stack(secrets)
    serverless_redis = secrets.get_secret("serverlessRedisUrl")

    local_issuer = stack.identity.provider == "local"
    cluster = Cluster("cluster", stack.cluster, local_issuer=local_issuer)
    baseline = Baseline("baseline", cluster.provider, local_issuer=local_issuer)
    after_baseline = pulumi.ResourceOptions(depends_on=[baseline])
    issuer = None
    if local_issuer:
        assert cluster.authz_image is not None  # kind builds it; an existing cluster names it (stack check)
        issuer = AuthorizationServer(
            "authz", stack, servers, cluster.authz_image, cluster.provider, opts=after_baseline
        )
        pulumi.export("dev_logins", {login: pulumi.Output.secret(p) for login, p in issuer.passwords.items()})
    if stack.identity.keycloak is not None:  # a provider the platform configures from the same declarations
        KeycloakRealm("keycloak", stack, stack.identity.keycloak, servers)
    if stack.identity.auth0 is not None:
        Auth0Tenant("auth0", stack, stack.identity.auth0, servers)
    postgres = Postgres(
        "postgres",
        stack.postgres,
        cluster.image,
        cluster.provider,
        fleet.schemas({app.module: servers[name] for name, app in stack.apps.items()}),
        admin_password=secrets.get_secret("postgresAdminPassword"),
        external_admin_url=secrets.get_secret("postgresAdminUrl"),
        opts=after_baseline,
    )
    redis = Redis(
        "redis",
        cluster.provider,
        users=[name for name, app in stack.on_cluster().items() if fleet.uses_redis(app, servers[name])],
        opts=after_baseline,
    )
    egress = egress_plan(stack, servers)
    observability = Observability(
        "observability",
        stack,
        cluster.provider,
        egress,
        grafana_admin_password=secrets.get_secret("grafanaAdminPassword"),
        audit_export_credential=secrets.get_secret("auditExportCredential"),
        opts=after_baseline,
    )
    if stack.cluster.mode == "kind" and (stack.routed() or stack.issuer_routed()):
        edge = DevEdge("dev-edge", stack, cluster.provider, opts=after_baseline)
        if edge.certificate_pem is not None:
            pulumi.export("dev_certificate", edge.certificate_pem)  # the CA a laptop's clients trust
        # RFC 6761 names *.localhost loopback; a resolver that does not (macOS's, glibc without systemd) needs these
        pulumi.export("dev_hosts_entries", [f"127.0.0.1 {host}" for host in routed_hosts(stack)])
    if egress.ports:
        EgressProxy(
            "egress-proxy", egress, cluster.image, cluster.provider, stack.observability.scraper(), opts=after_baseline
        )
    declared_secrets = app_secrets(stack, servers, secrets)
    platform = Platform(
        stack=stack,
        image=cluster.image,
        provider=cluster.provider,
        postgres=postgres,
        redis=redis,
        services=observability.services,
        authorization_server=authorization_server.reachable() if issuer is not None else None,
        egress=egress,
        app_secrets=declared_secrets,
    )
    urls: dict[str, pulumi.Input[str]] = {
        name: McpApp(name, app, servers[name], platform, opts=after_baseline).url
        for name, app in stack.on_cluster().items()
    }
    elsewhere = serverless.ServerlessPlatform(stack, cluster.image, postgres, serverless_redis, declared_secrets)
    images = serverless_images(stack)
    for name, app in stack.apps.items():
        if app.target == "cloudrun":
            urls[name] = CloudRunApp(name, app, servers[name], replace(elsewhere, image=images["cloudrun"])).url
        elif app.target == "lambda":
            urls[name] = LambdaApp(name, app, servers[name], replace(elsewhere, image=images["lambda"])).url

    export_outputs(stack, urls, observability)


def serverless_images(stack: StackConfig) -> dict[str, pulumi.Input[str]]:
    """The apps image as each serverless target pulls it, from a registry of its own cloud and region: Lambda from
    ECR (the stack's image copied there, by digest), Cloud Run through an Artifact Registry remote repository."""
    targets = {app.target for app in stack.apps.values()} - {"kubernetes"}
    source = stack.cluster.image
    if targets and source is None:
        raise StackConfigError(
            f"apps targeting {sorted(targets)} need cluster.image: the apps image in a registry their cloud can copy "
            "or pull it from (a kind cluster's image is built on this machine)"
        )
    images: dict[str, pulumi.Input[str]] = {}
    if source is None:  # no serverless target (else refused above)
        return images
    if "lambda" in targets and (aws_config := stack.serverless.aws) is not None:
        images["lambda"] = EcrCopy("apps-image-ecr", source, aws_config.region).image
    if "cloudrun" in targets and (gcp_config := stack.serverless.gcp) is not None:
        images["cloudrun"] = ArtifactRegistryRemote(
            "apps-image-gcp", source, gcp_config.project, gcp_config.region
        ).image
    return images


def export_outputs(
    stack: StackConfig,
    urls: dict[str, pulumi.Input[str]],
    observability: Observability,
) -> None:
    """What a person needs after `pulumi up`: the issuer, each app's URL, Grafana, port-forwards."""
    pulumi.export("issuer", stack.issuer)
    pulumi.export("app_urls", urls)
    pulumi.export("grafana_url", observability.grafana_url)
    forwards = {name: f"kubectl -n {APP_NAMESPACE} port-forward svc/{name} 8080:80" for name in stack.apps}
    if stack.observability.bundled:  # else Grafana and Prometheus are the cluster's own
        forwards["grafana"] = f"kubectl -n {OBSERVABILITY_NAMESPACE} port-forward svc/grafana 3000:3000"
        forwards["prometheus"] = f"kubectl -n {OBSERVABILITY_NAMESPACE} port-forward svc/prometheus 9090:9090"
    pulumi.export("port_forward", forwards)
