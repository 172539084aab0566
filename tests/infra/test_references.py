"""Cross-references hold, every object validates against the Kubernetes schema, and the
deployed configs are the repo's own files."""

from __future__ import annotations

import json
import os
from ipaddress import ip_network
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from alerts.params import AlertParams
from alerts.render import RULES_FILE, TEMPLATES_DIR
from alerts.routing import render_alertmanager
from apps import fleet as apps_fleet
from infra.config import parse, stack_config
from infra.fleet import load_server, uses_redis
from tests.infra.rendered_proxy import proxy_allowlists, proxy_ports

APPS, DATA, OBS, AGENTS = "mcp-apps", "mcp-data", "mcp-observability", "mcp-node-agents"
SCHEMA_DIR = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
KUBERNETES_VERSION = max(
    (d.removeprefix("v").removesuffix("-local-strict") for d in os.listdir(SCHEMA_DIR) if d.endswith("-local-strict")),
    key=lambda v: tuple(map(int, v.split("."))),
)


def pod_specs(stack):
    for kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        for workload in stack.of_kind(kind):
            yield workload, workload["spec"]["template"]


def test_schema_version_is_current():
    assert tuple(map(int, KUBERNETES_VERSION.split(".")))[:2] >= (1, 33)


def test_every_object_validates_strictly_against_the_kubernetes_schema(stack):
    failures = []
    for manifest in stack.objects:
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            failures.append(f"{manifest['kind']} {manifest['metadata'].get('name')}: {error.message}")
    assert not failures, failures
    assert len(stack.objects) > 50


def test_a_wrong_object_fails_schema_validation():
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "three", "selector": {}, "template": {}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_every_referenced_secret_and_config_map_exists(stack):
    existing = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in stack.objects}
    missing = []
    for workload, template in pod_specs(stack):
        namespace = workload["metadata"]["namespace"]
        spec = template["spec"]
        for container in spec["containers"]:
            for env in container.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ("Secret", namespace, ref["name"]) not in existing:
                    missing.append((workload["metadata"]["name"], "Secret", ref["name"]))
        for volume in spec.get("volumes", []):
            if "configMap" in volume and ("ConfigMap", namespace, volume["configMap"]["name"]) not in existing:
                missing.append((workload["metadata"]["name"], "ConfigMap", volume["configMap"]["name"]))
            if "secret" in volume and ("Secret", namespace, volume["secret"]["secretName"]) not in existing:
                missing.append((workload["metadata"]["name"], "Secret", volume["secret"]["secretName"]))
        if sa := spec.get("serviceAccountName"):
            if ("ServiceAccount", namespace, sa) not in existing:
                missing.append((workload["metadata"]["name"], "ServiceAccount", sa))
    assert not missing


def test_every_secret_key_referenced_is_in_its_secret(stack):
    secrets = {
        (s["metadata"]["namespace"], s["metadata"]["name"]): set(s.get("stringData") or s.get("data") or {})
        for s in stack.of_kind("Secret")
    }
    for workload, template in pod_specs(stack):
        for container in template["spec"]["containers"]:
            for env in container.get("env", []):
                if ref := (env.get("valueFrom") or {}).get("secretKeyRef"):
                    assert ref["key"] in secrets[(workload["metadata"]["namespace"], ref["name"])], ref


def test_service_selectors_match_pod_labels(stack):
    pods = [(w["metadata"]["namespace"], t["metadata"]["labels"]) for w, t in pod_specs(stack)]
    for service in stack.of_kind("Service"):
        selector = service["spec"]["selector"]
        namespace = service["metadata"]["namespace"]
        assert any(ns == namespace and all(labels.get(k) == v for k, v in selector.items()) for ns, labels in pods), (
            service["metadata"]["name"]
        )


def test_workload_selectors_match_their_own_template(stack):
    for workload, template in pod_specs(stack):
        if workload["kind"] == "Job":
            continue
        selector = workload["spec"]["selector"]["matchLabels"]
        assert all(template["metadata"]["labels"].get(k) == v for k, v in selector.items())


def test_network_policies_select_real_pods(stack):
    pods = [(w["metadata"]["namespace"], t["metadata"]["labels"]) for w, t in pod_specs(stack)]
    # A pinned chart's pods carry its selector labels (`app.kubernetes.io/name: <chart>`)
    pods += [
        (r["inputs"]["namespace"], {"app.kubernetes.io/name": r["inputs"]["chart"]})
        for r in stack.resources
        if r["type"] == "kubernetes:helm.sh/v3:Release"
    ]
    for policy in stack.of_kind("NetworkPolicy"):
        wanted = policy["spec"]["podSelector"].get("matchLabels", {})
        namespace = policy["metadata"]["namespace"]
        assert any(ns == namespace and all(labels.get(k) == v for k, v in wanted.items()) for ns, labels in pods), (
            policy["metadata"]["name"]
        )


def test_app_network_policy_allows_exactly_the_needed_ports(dev):
    spec = dev.one("NetworkPolicy", "mcp-db", APPS)["spec"]
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "mcp-db"}}
    ingress = {
        (
            peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            (peer.get("podSelector") or {}).get("matchLabels", {}).get("app.kubernetes.io/name"),
        ): sorted(p["port"] for p in rule["ports"])
        for rule in spec["ingress"]
        for peer in rule["from"]
    }
    assert ingress == {("mcp-ingress", None): [8080], (OBS, "prometheus"): [9464]}  # /metrics: its own port
    egress = {
        (
            rule["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        ): sorted(p["port"] for p in rule["ports"])
        for rule in spec["egress"]
    }
    assert egress == {
        (DATA, "postgres"): [5432],
        (DATA, "redis"): [6379],
        (AGENTS, "otel-collector"): [4317, 4318],
        ("mcp-auth", "authz"): [9400],  # the local issuer's keys
    }
    # and the other side lets this app in, by a policy of its own, on that port only
    for service, port, namespace in (("postgres", 5432, DATA), ("redis", 6379, DATA), ("authz", 9400, "mcp-auth")):
        [rule] = dev.one("NetworkPolicy", f"{service}-from-mcp-db", namespace)["spec"]["ingress"]
        assert rule["from"] == [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": APPS}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "mcp-db"}},
            }
        ]
        assert rule["ports"] == [{"protocol": "TCP", "port": port}]
    # nothing else in the apps namespace reaches the data tier
    data_policies = {p["metadata"]["name"] for p in dev.of_kind("NetworkPolicy", DATA)}
    apps = parse({k.split(":", 1)[1]: v for k, v in stack_config("dev").items()}).apps
    servers = {app: load_server(entry.module) for app, entry in apps.items()}
    servers = {app: server for app, server in servers.items() if not server.needs.issued_secrets}  # left out
    admitted = {f"redis-from-{app}" for app, server in servers.items() if uses_redis(apps[app], server)}
    admitted |= {f"postgres-from-{app}" for app, server in servers.items() if server.needs.postgres}
    assert admitted >= {"postgres-from-mcp-db", "redis-from-mcp-db"} and "postgres-from-mcp-files" not in admitted
    proxied = sorted(proxy_allowlists(dev))
    assert proxied == ["mcp-notify"]  # on dev only its webhook target is outside (tokens are HS256)
    assert data_policies == {
        "default-deny",
        "allow-dns",
        "postgres-from-roles-job",
        "postgres-roles-egress",
        *({"egress-proxy-egress", "egress-proxy-from-prometheus"} if proxied else set()),  # and its meter
        *(f"egress-proxy-from-{app}" for app in proxied),  # each app with an outside host, to its own port
        *admitted,  # an app using Redis (declared, or for a rate limit across replicas) or a database role
    }


def test_roles_job_mounts_the_sql_each_server_declares(stack):
    """The Job applies every declared schema (`Needs.schema`) by the kit's command; its files, mounted under the
    module's name, are the ones the tests apply."""
    declared = {m: s.needs.schema for m, s in apps_fleet.servers().items() if s.needs.schema is not None}
    assert set(declared) == {"apps.db", "apps.github"}
    [job] = stack.of_kind("Job", DATA)
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    deployed = [m for m in declared if m in container["args"]]
    assert container["args"] == ["apps.kit.cli.schema", *deployed] and "apps.db" in deployed
    assert {"name": "MCPFLEET_SQL_DIR", "value": "/sql"} in container["env"]
    [volume] = pod["volumes"]
    config_map = stack.one("ConfigMap", volume["configMap"]["name"], DATA)
    mounted = {item["path"]: config_map["data"][item["key"]] for item in volume["configMap"]["items"]}
    assert mounted == {
        f"{m.removeprefix('apps.')}/{p.name}": p.read_text()
        for m in deployed
        for p in sorted(declared[m].glob("*.sql"))
    }


def test_prometheus_carries_the_exact_rule_files(stack):
    assert stack.one("ConfigMap", "prometheus-rules", OBS)["data"] == {RULES_FILE.name: RULES_FILE.read_text()}
    assert (
        stack.one("ConfigMap", "prometheus", OBS)["data"]["prometheus.yml"]
        == Path("infra/observability/prometheus.yml").read_text()
    )


def test_alertmanager_carries_the_rendered_routes_and_templates(stack):
    data = stack.one("ConfigMap", "alertmanager", OBS)["data"]
    if stack.stack == "dev":  # the receiver runs in the cluster: reached directly
        params = AlertParams()
    else:  # an outside receiver: by name, through Alertmanager's own port on the egress proxy, that host alone
        port = proxy_ports(stack)["alertmanager"]
        assert proxy_allowlists(stack)["alertmanager"] == {"alerts.example.com:443"}
        params = AlertParams(
            webhook_url="https://alerts.example.com/hooks/mcpfleet",
            webhook_proxy_url=f"http://egress-proxy.mcp-data.svc:{port}",
        )
    assert yaml.safe_load(data["alertmanager.yml"]) == render_alertmanager(params)
    for template in TEMPLATES_DIR.glob("*.tmpl"):
        assert data[template.name] == template.read_text()


def test_grafana_carries_every_dashboard_and_both_datasources(stack):
    dashboards = stack.one("ConfigMap", "grafana-dashboards", OBS)["data"]
    assert dashboards == {p.name: p.read_text() for p in sorted(Path("dashboards").glob("*.json"))}
    datasources = yaml.safe_load(stack.one("ConfigMap", "grafana-datasources", OBS)["data"]["datasources.yaml"])
    assert {d["type"] for d in datasources["datasources"]} == {"prometheus", "loki"}


def test_loki_and_collector_load_the_repo_files(stack):
    """Loki's file as it is; the collector's as the stack renders it (the file, plus a SIEM's exporter on prod)."""
    from infra.components.observability.collector import collector_config
    from infra.config import load_stack
    from infra.egress import COLLECTOR
    from tests.infra.rendered_proxy import proxy_ports

    assert stack.one("ConfigMap", "loki", OBS)["data"]["loki.yaml"] == Path("infra/observability/loki.yaml").read_text()
    port = proxy_ports(stack).get(COLLECTOR)
    proxy = f"http://egress-proxy.mcp-data.svc:{port}" if port else None
    assert stack.one("ConfigMap", "otel-collector", AGENTS)["data"]["otelcol.yaml"] == collector_config(
        load_stack(stack.stack), proxy
    )


def test_images_are_the_pinned_official_ones(stack):
    from infra.images import PINNED

    for _workload, template in pod_specs(stack):
        for container in template["spec"]["containers"]:
            image = container["image"]
            built = ("mcpfleet/apps:dev-", "ghcr.io/mcpfleet/apps:", "mcpfleet/authz:dev-")  # built from this repo
            assert image in PINNED.values() or image.startswith(built), image


def test_an_image_override_reaches_the_manifests():
    from infra.mocked import kubernetes_objects
    from tests.infra.conftest import run_program

    result = run_program("dev", images={"MCPFLEET_IMAGE_REDIS": "mirror.example.com/library/redis:7.4.1-alpine"})
    assert result.returncode == 0, result.stderr
    objects = kubernetes_objects(json.loads(result.stdout)["resources"])
    [redis] = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "redis"]
    assert (
        redis["spec"]["template"]["spec"]["containers"][0]["image"] == "mirror.example.com/library/redis:7.4.1-alpine"
    )


# --- every address an app is configured to use is one its NetworkPolicy lets it reach ----------------

DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "redis": 6379}


def configured_endpoints(stack, app: str) -> dict[str, tuple[str, int]]:
    """host:port of every URL in the app's env and Secret (DSNs, Redis, OTLP, JWKS)."""
    [container] = stack.one("Deployment", app, APPS)["spec"]["template"]["spec"]["containers"]
    secret = stack.one("Secret", f"{app}-secrets", APPS)["stringData"]
    values = {e["name"]: e["value"] for e in container["env"] if "value" in e} | secret
    endpoints = {}
    for name, value in values.items():
        if name in ("MCP_RESOURCE_URL", "MCP_ISSUER") or "://" not in str(value):
            continue  # identifiers compared with token claims, never contacted; and non-URLs
        parts = urlsplit(value)
        endpoints[name] = (parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme])
    return endpoints


def container_port(stack, namespace: str, service_name: str, port: int) -> tuple[dict, int]:
    """The pod labels behind a Service port, and the container port it targets."""
    service = stack.one("Service", service_name, namespace)
    [service_port] = [p for p in service["spec"]["ports"] if p["port"] == port]
    target = service_port.get("targetPort", port)
    for workload, template in pod_specs(stack):
        labels = template["metadata"]["labels"]
        if workload["metadata"]["namespace"] != namespace:
            continue
        if all(labels.get(k) == v for k, v in service["spec"]["selector"].items()):
            if isinstance(target, int):
                return labels, target
            for container in template["spec"]["containers"]:
                for declared in container.get("ports", []):
                    if declared.get("name") == target:
                        return labels, declared["containerPort"]
    raise AssertionError(f"Service {namespace}/{service_name}:{port} reaches no pod")


def allows(rule: dict, namespace: str | None, labels: dict | None, address: str | None, port: int) -> bool:
    if not any(p["port"] == port for p in rule.get("ports", [{"port": port}])):
        return False
    if "to" not in rule:
        return True  # any destination on this port
    for peer in rule["to"]:
        if "ipBlock" in peer and address is not None:
            if ip_network(address).subnet_of(ip_network(peer["ipBlock"]["cidr"])):
                return True
        selector = (peer.get("namespaceSelector") or {}).get("matchLabels", {})
        if namespace is not None and selector.get("kubernetes.io/metadata.name") == namespace:
            wanted = (peer.get("podSelector") or {}).get("matchLabels", {})
            if all(labels.get(k) == v for k, v in wanted.items()):
                return True
    return False


def test_every_address_an_app_uses_is_allowed_by_its_network_policy(stack):
    """Under an enforcing CNI an app reaches only what its policy admits: each configured host:port must be."""
    postgres = stack_config(stack.stack)["mcpfleet:postgres"]
    external = {postgres["host"]: postgres["cidr"]} if postgres.get("mode") == "external" else {}
    app = "mcp-db"
    egress = stack.one("NetworkPolicy", app, APPS)["spec"]["egress"]
    endpoints = configured_endpoints(stack, app)
    assert {"DB_READ_URL", "DB_WRITE_URL", "REDIS_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"} <= set(endpoints)
    for name, (host, port) in endpoints.items():
        if host.endswith(".svc"):
            service_name, namespace = host.split(".")[:2]
            labels, target = container_port(stack, namespace, service_name, port)
            assert any(allows(rule, namespace, labels, None, target) for rule in egress), (name, host, port)
        elif name == "MCP_JWKS_URL":  # outside, by name: the app's own allowlist on the egress proxy
            assert f"{host}:{port}" in proxy_allowlists(stack)[app], (name, host, port)
        else:
            assert host in external, f"{name}: {host} has no CIDR in the stack config"
            assert any(allows(rule, None, None, external[host], port) for rule in egress), (name, host, port)


def test_an_external_database_without_its_address_block_is_refused():
    from infra.config import StackConfigError, parse

    with pytest.raises(StackConfigError, match="mcpfleet:postgres"):
        parse(
            {
                "issuer": "https://issuer.test",
                "jwksUrl": "https://issuer.test/jwks",
                "apps": {"mcp-db": {"module": "apps.db", "resourceUrl": "http://mcp-db.mcp-apps.svc/mcp"}},
                "postgres": {"mode": "external", "host": "db.internal"},
            }
        )
