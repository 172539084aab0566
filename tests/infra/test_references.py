"""Cross-references hold, every object validates against the Kubernetes schema, and the
deployed configs are the repo's own files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from alerts.params import AlertParams
from alerts.render import RULES_FILE, TEMPLATES_DIR
from alerts.routing import render_alertmanager
from infra.postgres.apply import SQL_DIR

APPS, DATA, OBS = "mcp-apps", "mcp-data", "mcp-observability"
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
    assert ingress == {("ingress-nginx", None): [8080], (OBS, "prometheus"): [8080]}
    egress = {
        (
            rule["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        ): sorted(p["port"] for p in rule["ports"])
        for rule in spec["egress"]
    }
    assert egress == {(DATA, "postgres"): [5432], (DATA, "redis"): [6379], (OBS, "otel-collector"): [4317, 4318]}
    # and the other side lets the app in
    postgres_in = dev.one("NetworkPolicy", "postgres-ingress", DATA)["spec"]["ingress"][0]
    assert [p["port"] for p in postgres_in["ports"]] == [5432]
    assert dev.one("NetworkPolicy", "redis-ingress", DATA)["spec"]["ingress"][0]["ports"] == [
        {"protocol": "TCP", "port": 6379}
    ]


def test_roles_job_mounts_the_same_sql_the_tests_apply(stack):
    [job] = stack.of_kind("Job", DATA)
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["args"] == ["infra.postgres.apply"]
    assert {"name": "MCPFLEET_SQL_DIR", "value": "/sql"} in container["env"]
    [volume] = pod["volumes"]
    config_map = stack.one("ConfigMap", volume["configMap"]["name"], DATA)
    assert config_map["data"] == {p.name: p.read_text() for p in sorted(SQL_DIR.glob("*.sql"))}


def test_prometheus_carries_the_exact_rule_files(stack):
    assert stack.one("ConfigMap", "prometheus-rules", OBS)["data"] == {RULES_FILE.name: RULES_FILE.read_text()}
    assert (
        stack.one("ConfigMap", "prometheus", OBS)["data"]["prometheus.yml"]
        == Path("infra/observability/prometheus.yml").read_text()
    )


def test_alertmanager_carries_the_rendered_routes_and_templates(stack):
    data = stack.one("ConfigMap", "alertmanager", OBS)["data"]
    webhook = {"dev": AlertParams().webhook_url, "prod": "https://alerts.example.com/hooks/mcpfleet"}[stack.stack]
    assert yaml.safe_load(data["alertmanager.yml"]) == render_alertmanager(AlertParams(webhook_url=webhook))
    for template in TEMPLATES_DIR.glob("*.tmpl"):
        assert data[template.name] == template.read_text()


def test_grafana_carries_every_dashboard_and_both_datasources(stack):
    dashboards = stack.one("ConfigMap", "grafana-dashboards", OBS)["data"]
    assert dashboards == {p.name: p.read_text() for p in sorted(Path("dashboards").glob("*.json"))}
    datasources = yaml.safe_load(stack.one("ConfigMap", "grafana-datasources", OBS)["data"]["datasources.yaml"])
    assert {d["type"] for d in datasources["datasources"]} == {"prometheus", "loki"}


def test_loki_and_collector_load_the_repo_files(stack):
    assert stack.one("ConfigMap", "loki", OBS)["data"]["loki.yaml"] == Path("infra/observability/loki.yaml").read_text()
    assert (
        stack.one("ConfigMap", "otel-collector", OBS)["data"]["otelcol.yaml"]
        == Path("infra/observability/otelcol.yaml").read_text()
    )


def test_images_are_the_pinned_official_ones(stack):
    from infra.images import PINNED

    for _workload, template in pod_specs(stack):
        for container in template["spec"]["containers"]:
            image = container["image"]
            assert image in PINNED.values() or image.startswith(("mcpfleet/apps:dev-", "ghcr.io/mcpfleet/apps:")), image


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
