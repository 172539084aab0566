"""The one-machine platform: a stack rendered as a Compose file, from the model `pulumi up` deploys.

    python -m onebox.compose            # (re)write compose.yaml and compose/ from Pulumi.dev.yaml
    python -m onebox.compose --check    # exit 1 when they drifted from the model

The apps, their settings and needs come from the stack file and each app's `FocusedServer`; each app's
environment is `infra.wiring`'s, as for Kubernetes; images are `infra.images`' pins, each overridable
with `MCPFLEET_IMAGE_<NAME>`; the configs are the ones the cluster mounts (alert rules, routing and
templates, dashboards, Loki, the collector, Grafana's provisioning). Every container answers to its
Kubernetes Service name too (`prometheus.mcp-observability.svc`, ...), so addresses derived for the
cluster hold here unchanged. What differs, and why:

- each app's resource URL is its published loopback port (`http://127.0.0.1:8081/mcp`), the URL a
  client on this machine calls;
- Prometheus finds the apps by a static list instead of pod discovery (`compose/prometheus.yml`);
- secrets come from `.env` (git-ignored; `scripts/up` writes it once) through `${...}`, and each app's
  environment names only its own;
- an entry's `oneMachineSettings` in the stack file apply here over its settings: the dev stack gives the
  notify server one more target, `local-sink`, the composition's webhook sink (`onebox/sink.py`), which is
  also where Alertmanager's webhook goes (`alert-receiver`);
- Grafana, Loki and the collector are in the `observability` profile; without it the apps export no
  traces (`MCPFLEET_OTLP_ENDPOINT` empty). There is no NetworkPolicy on Docker.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from typing import Any

import yaml

from alerts.names import METRICS_PORT, PORT
from apps.kit import FocusedServer, role_password_variable
from infra import authz, fleet, redis_acl
from infra.components.observability import SERVICES
from infra.components.observability.alertmanager import alertmanager_files
from infra.components.observability.collector import SIEM_CREDENTIAL_ENV, collector_config, otlp_endpoint
from infra.config import (
    AGENTS_NAMESPACE,
    AUTH_NAMESPACE,
    AUTHZ_PORT,
    DATA_NAMESPACE,
    REPO,
    AppConfig,
    StackConfig,
    load_stack,
)
from infra.images import PINNED, env_name
from infra.wiring import Deferred, Target, Value, Wiring, secret_values, wiring

COMPOSE_FILE = "compose.yaml"
GENERATED_DIR = "compose"
FIRST_APP_PORT = 8081
SINK_PORT = 8089
PUBLISHED = {"prometheus": 9090, "alertmanager": 9093, "grafana": 3000}
APPS_IMAGE = "${MCPFLEET_APPS_IMAGE:-mcpfleet/apps:dev}"
AUTHZ_IMAGE = "${MCPFLEET_AUTHZ_IMAGE:-mcpfleet/authz:dev}"
OTLP_DEFAULT = otlp_endpoint(AGENTS_NAMESPACE)  # the collector, when the observability profile runs
OTLP = f"${{MCPFLEET_OTLP_ENDPOINT-{OTLP_DEFAULT}}}"
OBSERVABILITY_PROFILE = "observability"
DATABASE = "mcpfleet"
APP_USER = "10001:10001"


# Alertmanager here groups for 5 s and flushes every 30 s (the cluster: 30 s and 5 minutes), so a notification and
# its resolve reach the sink within a drill (scripts/drill); the rules and their `for:` are the cluster's own.
ONE_MACHINE_NOTIFICATIONS = {"group_wait": "5s", "group_interval": "30s"}


def required(variable: str) -> str:
    """A secret from `.env`, with the fix named when it is missing."""
    return f"${{{variable}:?run scripts/up once: it writes the dev secrets to .env}}"


def secret_variable(app: str, key: str) -> str:
    """The `.env` variable holding an app's declared secret (`mcp-notify`, `signingKey` -> MCP_NOTIFY_SIGNINGKEY)."""
    return f"{app}_{key}".upper().replace("-", "_")


def image(name: str) -> str:
    return f"${{{env_name(name)}:-{PINNED[name]}}}"


@dataclass(frozen=True)
class LocalApp:
    name: str
    config: AppConfig
    server: FocusedServer[Any, Any]
    port: int  # its default published port; a checkout may publish another (`port_variable`)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


def port_variable(service: str) -> str:
    """The `.env` variable that may move a published port, so two checkouts run side by side."""
    return f"MCPFLEET_PORT_{service.upper().replace('-', '_')}"


def published(service: str, default: int) -> str:
    """A published loopback port as compose.yaml writes it: the checkout's choice, else the default."""
    return f"${{{port_variable(service)}:-{default}}}"


def default_ports(apps: list[LocalApp]) -> dict[str, int]:
    """Every port the composition publishes on 127.0.0.1, by service."""
    return {**PUBLISHED, "alert-receiver": SINK_PORT, "authz": AUTHZ_PORT, **{app.name: app.port for app in apps}}


def issuer(stack: StackConfig) -> Value:
    """The tokens' issuer on this machine: the local authorization server at its published loopback port (the URL
    a client here discovers), or the stack's external issuer."""
    if stack.identity.provider != "local":
        return stack.issuer
    return Deferred(f"http://127.0.0.1:{published('authz', AUTHZ_PORT)}", f"http://127.0.0.1:{AUTHZ_PORT}")


def authz_service(apps: list[LocalApp], stack: StackConfig) -> dict[str, Any]:
    """The local authorization server (`authz/`), its view of the fleet derived from the apps' declarations
    (`infra.authz`), at each app's published URL; Compose fills the ports in from `.env`."""
    servers = {app.name: app.server for app in apps}
    urls = {app.name: f"http://127.0.0.1:{published(app.name, app.port)}/mcp" for app in apps}
    written = issuer(stack)
    assert isinstance(written, Deferred)
    settings = authz.config(stack, servers, urls, written.written, every_scope=authz.stack_scopes(stack))
    return {
        "image": AUTHZ_IMAGE,
        "environment": {
            "AUTHZ_CONFIG": json.dumps(settings, separators=(",", ":")),
            **{variable: required(variable) for variable in authz.secret_variables(stack)},
        },
        "volumes": ["authz-data:/data"],  # its signing keys, kept across restarts
        "ports": [f"127.0.0.1:{published('authz', AUTHZ_PORT)}:{AUTHZ_PORT}"],
        "restart": "unless-stopped",
        **_aliases("authz", AUTH_NAMESPACE),
    }


def local_apps(stack: StackConfig) -> list[LocalApp]:
    """The stack's apps, each checked against its declaration, with its published port (in stack order); an
    app that needs a credential another party issues (the GitHub server) is left out."""
    found = []
    for index, (name, config) in enumerate(stack.apps.items()):
        server = fleet.load_server(config.module)
        config = on_one_machine(config)
        fleet.check(name, config, server)
        if server.needs.issued_secrets:  # somebody else's API credential: the one-machine stack has none
            continue
        found.append(LocalApp(name, config, server, FIRST_APP_PORT + index))
    return found


def on_one_machine(config: AppConfig) -> AppConfig:
    """The entry as this target runs it: its settings, with what differs on one machine (`oneMachineSettings`)."""
    return config.model_copy(update={"settings": {**config.settings, **config.one_machine_settings}})


def _secret_values(app: LocalApp, stack: StackConfig) -> dict[str, str]:
    """The app's secret settings (`infra.wiring.secret_values`) as `${...}` references into `.env`."""
    host = f"postgres.{DATA_NAMESPACE}.svc:5432/{DATABASE}"
    return secret_values(
        app.config,
        app.server,
        dsn=lambda role: f"postgresql://{role}:{required(role_password_variable(role))}@{host}",
        redis_url=redis_acl.url(
            app.name, required(redis_acl.password_variable(app.name)), f"redis.{DATA_NAMESPACE}.svc"
        ),
        provided={key: required(secret_variable(app.name, key)) for key in app.server.needs.secrets.values()},
    )


def _aliases(name: str, namespace: str) -> dict[str, Any]:
    return {"networks": {"default": {"aliases": [f"{name}.{namespace}.svc"]}}}


def platform_wiring(app: LocalApp, stack: StackConfig) -> Wiring:
    """The app's environment as `infra.wiring` derives it (the platform services at their Service names, no
    optional secrets) on this target: its resource URL is the one a client on this machine calls, at the port the
    checkout publishes, and its spans go to the collector only when the observability profile runs."""
    services = {name: reachable.url for name, reachable in SERVICES.items()}
    target = Target(
        resource_url=Deferred(f"http://127.0.0.1:{published(app.name, app.port)}/mcp", app.url),
        issuer=issuer(stack),
        otlp_endpoint=Deferred(OTLP, OTLP_DEFAULT),
    )
    return wiring(
        app.name,
        app.config,
        app.server,
        stack,
        services,
        provided_secrets=(),
        target=target,
    )


def policies_variable(app: str) -> str:
    """The variable `scripts/up` sets to the digest of an app's policy files (`mcp-db` -> MCPFLEET_POLICIES_MCP_DB)."""
    return "MCPFLEET_POLICIES_" + app.upper().replace("-", "_")


def policies_digest(stack: StackConfig, app: str) -> str:
    files = fleet.policy_files(stack, app)
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]


def app_service(app: LocalApp, stack: StackConfig) -> dict[str, Any]:
    wired = platform_wiring(app, stack)
    secrets = _secret_values(app, stack)
    env = {**wired.env, **{key: secrets[key] for key in wired.secret_env}}
    needs = app.server.needs
    depends: dict[str, Any] = {}
    if needs.postgres:
        depends["postgres-roles"] = {"condition": "service_completed_successfully"}
    if fleet.uses_redis(app.config, app.server):
        depends["redis"] = {"condition": "service_healthy"}
    if stack.identity.provider == "local":
        depends["authz"] = {"condition": "service_healthy"}  # its keys verify every token
    depends |= {service: {"condition": "service_started"} for service in needs.services.values()}
    if needs.volumes:
        depends["volumes-init"] = {"condition": "service_completed_successfully"}
    read_only = fleet.read_only_volumes(app.name, app.config, app.server)
    service: dict[str, Any] = {
        "image": APPS_IMAGE,
        "command": [app.config.module],
        "environment": env,
        "ports": [f"127.0.0.1:{published(app.name, app.port)}:{PORT}"],
        "user": APP_USER,
        "read_only": True,
        "tmpfs": ["/tmp"],  # noqa: S108 - a private tmpfs, as the pod's emptyDir
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "restart": "unless-stopped",
        # The stack's limits, as on the cluster: the process's own saturation series (mcp_process_*_limit, read
        # from the cgroup) make the CPU and memory alerts fire here as there.
        "cpus": app.config.resources.cpu_limit_cores,
        "mem_limit": f"{app.config.resources.memory_limit_mib}m",
        **_aliases(app.name, "mcp-apps"),
    }
    if depends:
        service["depends_on"] = depends
    if needs.volumes:
        service["volumes"] = [
            f"{app.name}-{v.name}:{v.mount_path}{':ro' if v.name in read_only else ''}" for v in needs.volumes
        ]
    if fleet.policy_files(stack, app.name):  # the organisation's policies, read at start
        service.setdefault("volumes", []).append(f"./{stack.policies}/{app.name}:{fleet.POLICY_DIR}:ro")
        env["MCP_POLICY_DIR"] = fleet.POLICY_DIR
        # `scripts/up` sets their digest: a changed policy recreates the app, an unchanged one leaves it running
        service["labels"] = {"mcpfleet.dev/policies-sha256": f"${{{policies_variable(app.name)}:-}}"}
    return service


def render(stack_name: str = "dev") -> dict[str, str]:
    """Every generated file, by path relative to the repository: compose.yaml and compose/*."""
    stack = load_stack(stack_name)
    apps = local_apps(stack)
    composed = stack.model_copy(update={"apps": {app.name: stack.apps[app.name] for app in apps}})
    fleet.check_connections(composed, {app.name: app.server for app in apps})
    volumes: dict[str, Any] = {"postgres-data": {}, "prometheus-data": {}, "alertmanager-data": {}, "grafana-data": {}}
    volumes |= {f"{app.name}-{v.name}": {} for app in apps for v in app.server.needs.volumes}
    schemas = fleet.schemas({app.config.module: app.server for app in apps})
    services: dict[str, Any] = {
        "postgres": {
            "image": image("postgres"),
            "command": ["postgres", "-c", f"max_connections={stack.postgres.max_connections}"],
            "environment": {"POSTGRES_PASSWORD": required("POSTGRES_PASSWORD"), "POSTGRES_DB": DATABASE},
            "volumes": ["postgres-data:/var/lib/postgresql/data"],
            "healthcheck": {"test": ["CMD", "pg_isready", "-U", "postgres"], "interval": "2s", "retries": 60},
            "restart": "unless-stopped",
            **_aliases("postgres", DATA_NAMESPACE),
        },
        "postgres-roles": {  # the roles Job of the cluster: each app's declared SQL, applied by the apps image
            "image": APPS_IMAGE,
            "command": ["apps.kit.cli.schema", *(schema.module for schema in schemas)],
            "environment": {
                "DATABASE_ADMIN_URL": f"postgresql://postgres:{required('POSTGRES_PASSWORD')}"
                f"@postgres.{DATA_NAMESPACE}.svc:5432/{DATABASE}",
                **{role_password_variable(r): required(role_password_variable(r)) for s in schemas for r in s.roles},
            },
            "depends_on": {"postgres": {"condition": "service_healthy"}},
            "restart": "on-failure",
        },
        "redis": {
            "image": image("redis"),
            "command": redis_acl.server_args(
                required("REDIS_PASSWORD"),
                redis_users(apps),
                {user: required(redis_acl.password_variable(user)) for user in redis_users(apps)},
            ),
            "mem_limit": f"{redis_acl.REDIS_MEMORY_LIMIT_MIB}m",
            "healthcheck": {
                "test": ["CMD-SHELL", 'redis-cli -a "$$REDIS_PASSWORD" --no-auth-warning ping | grep -q PONG'],
                "interval": "2s",
                "retries": 30,
            },
            "environment": {"REDIS_PASSWORD": required("REDIS_PASSWORD")},
            "restart": "unless-stopped",
            **_aliases("redis", DATA_NAMESPACE),
        },
        "prometheus": {
            "image": image("prometheus"),
            "command": ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"],
            "volumes": [
                f"./{GENERATED_DIR}/prometheus.yml:/etc/prometheus/prometheus.yml:ro",
                "./alerts/mcp-rules.yml:/etc/prometheus/rules/mcp-rules.yml:ro",
                "prometheus-data:/prometheus",
            ],
            "ports": [f"127.0.0.1:{published('prometheus', PUBLISHED['prometheus'])}:9090"],
            "restart": "unless-stopped",
            **_aliases("prometheus", "mcp-observability"),
        },
        "alertmanager": {
            "image": image("alertmanager"),
            "command": ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"],
            "volumes": [
                f"./{GENERATED_DIR}/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro",
                "./alerts/templates:/etc/alertmanager/templates:ro",
                "alertmanager-data:/alertmanager",
            ],
            "ports": [f"127.0.0.1:{published('alertmanager', PUBLISHED['alertmanager'])}:9093"],
            "restart": "unless-stopped",
            **_aliases("alertmanager", "mcp-observability"),
        },
        "alert-receiver": {
            "image": image("python"),
            "command": ["python3", "/sink/sink.py"],
            "environment": {"NOTIFY_SIGNING_KEY": _signing_key_reference(apps)},
            "volumes": ["./onebox/sink.py:/sink/sink.py:ro"],
            "ports": [f"127.0.0.1:{published('alert-receiver', SINK_PORT)}:8080"],
            "user": APP_USER,
            "restart": "unless-stopped",
            **_aliases("alert-receiver", "mcp-observability"),
        },
        **_observability_profile(stack),
    }
    if any(app.server.needs.volumes for app in apps):
        services["volumes-init"] = {  # Kubernetes' fsGroup: the app user owns its volumes
            "image": image("python"),
            "user": "0:0",
            "command": [
                "chown",
                APP_USER,
                *[f"/v/{app.name}-{v.name}" for app in apps for v in app.server.needs.volumes],
            ],
            "volumes": [
                f"{app.name}-{v.name}:/v/{app.name}-{v.name}" for app in apps for v in app.server.needs.volumes
            ],
        }
    if stack.identity.provider == "local":
        services["authz"] = authz_service(apps, stack)
        volumes["authz-data"] = {}
    services |= {app.name: app_service(app, stack) for app in apps}
    header = (
        f"# Generated by `python -m onebox.compose` from Pulumi.{stack_name}.yaml and the apps' declarations; do not\n"
        "# edit (tests/infra/test_compose.py fails on drift). Start it with scripts/up (which writes the dev\n"
        "# secrets to .env once), or `docker compose up -d` after that. Grafana, Loki and the collector:\n"
        f"# `--profile {OBSERVABILITY_PROFILE}`.\n"
    )
    if not schemas:  # no app declares SQL: nothing to apply
        del services["postgres-roles"]
    compose = {"services": services, "volumes": volumes}  # the project name is in .env (Compose 1.29 has no `name:`)
    return {
        COMPOSE_FILE: header + yaml.safe_dump(compose, sort_keys=False, width=120),
        f"{GENERATED_DIR}/prometheus.yml": _prometheus(apps),
        f"{GENERATED_DIR}/alertmanager.yml": alertmanager_files(stack, timing=ONE_MACHINE_NOTIFICATIONS)[
            "alertmanager.yml"
        ],
        f"{GENERATED_DIR}/otelcol.yaml": collector_config(stack, proxy_url=None),
    }


def redis_users(apps: list[LocalApp]) -> list[str]:
    """The apps that use Redis: each has its own user and password there."""
    return [app.name for app in apps if fleet.uses_redis(app.config, app.server)]


def _signing_key_reference(apps: list[LocalApp]) -> str:
    for app in apps:
        for env, key in app.server.needs.secrets.items():
            if env == "NOTIFY_SIGNING_KEY":
                return required(secret_variable(app.name, key))
    return ""


def _observability_profile(stack: StackConfig) -> dict[str, Any]:
    """Grafana, Loki and the collector, with the cluster's configs; official images only (no stand-ins). With a
    SIEM (`observability.auditExport`) the collector sends it the audit stream directly: no egress proxy here."""
    profile = {"profiles": [OBSERVABILITY_PROFILE], "restart": "unless-stopped"}
    export = stack.observability.audit_export
    collector_env = (
        {SIEM_CREDENTIAL_ENV: f"${{{SIEM_CREDENTIAL_ENV}:?set the SIEM's credential in .env}}"}
        if export is not None and export.header is not None
        else {}
    )
    return {
        "grafana": {
            "image": image("grafana"),
            "environment": {"GF_SECURITY_ADMIN_PASSWORD": required("GRAFANA_ADMIN_PASSWORD")},
            "volumes": [
                "./infra/observability/grafana-datasources.yaml:/etc/grafana/provisioning/datasources/datasources.yaml:ro",
                "./infra/observability/grafana-dashboards.yaml:/etc/grafana/provisioning/dashboards/dashboards.yaml:ro",
                "./dashboards:/var/lib/grafana/dashboards:ro",
                "grafana-data:/var/lib/grafana",
            ],
            "ports": [f"127.0.0.1:{published('grafana', PUBLISHED['grafana'])}:3000"],
            **profile,
            **_aliases("grafana", "mcp-observability"),
        },
        "loki": {
            "image": image("loki"),
            "command": ["-config.file=/etc/loki/loki.yaml", "-target=all"],
            "volumes": ["./infra/observability/loki.yaml:/etc/loki/loki.yaml:ro"],
            **profile,
            **_aliases("loki", "mcp-observability"),
        },
        "otel-collector": {
            "image": image("otelcol"),
            "command": ["--config=/etc/otelcol/otelcol.yaml"],
            "volumes": [f"./{GENERATED_DIR}/otelcol.yaml:/etc/otelcol/otelcol.yaml:ro"],
            **({"environment": collector_env} if collector_env else {}),
            **profile,
            **_aliases("otel-collector", "mcp-node-agents"),
        },
    }


def _prometheus(apps: list[LocalApp]) -> str:
    """The cluster's scrape config with pod discovery replaced by the composition's containers."""
    cluster = yaml.safe_load((REPO / "infra/observability/prometheus.yml").read_text())
    apps_job = {
        "job_name": next(job["job_name"] for job in cluster["scrape_configs"] if "kubernetes_sd_configs" in job),
        "static_configs": [
            {"targets": [f"{app.name}:{METRICS_PORT}"], "labels": {"app": app.name, "namespace": "mcp-apps"}}
            for app in apps
        ],
    }
    kept = [job for job in cluster["scrape_configs"] if job["job_name"] in ("prometheus",)]
    document = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": cluster["rule_files"],
        "alerting": cluster["alerting"],
        "scrape_configs": [apps_job, *kept],
    }
    return "# Generated by `python -m onebox.compose` from infra/observability/prometheus.yml; do not edit.\n" + (
        yaml.safe_dump(document, sort_keys=False)
    )


def write(files: dict[str, str]) -> None:
    for path, text in files.items():
        target = REPO / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def drifted(files: dict[str, str]) -> list[str]:
    return [path for path, text in files.items() if not (REPO / path).exists() or (REPO / path).read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onebox.compose", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed files drifted")
    args = parser.parse_args(argv)
    files = render(args.stack)
    if args.check:
        stale = drifted(files)
        for path in stale:
            print(f"{path} drifted from the model; run: uv run python -m onebox.compose --stack {args.stack}")
        return 1 if stale else 0
    write(files)
    print("wrote " + ", ".join(files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
