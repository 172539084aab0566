"""`observability.mode: operator`: a cluster's Prometheus Operator (kube-prometheus-stack) gets the platform's
rules, scrape targets, route and dashboards as its own objects, and the platform deploys no Prometheus,
Alertmanager, Grafana or kube-state-metrics. The objects are checked against the operator's schemas (npm
`@kubernetes-models/prometheus-operator` 6.0.0, generated from its API types; no cluster or CRD download here) and
the rules with promtool; the NetworkPolicies admit the operator's Prometheus and create nothing in its namespace.

Not checked here: unknown fields (the generated validators accept them, as a structural schema prunes them), and
the operator itself reconciling these objects (no cluster)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from alerts.names import EGRESS_JOB, METRICS_PORT, SCRAPE_JOB
from alerts.render import RULES_FILE
from alerts.routing import render_alertmanager
from infra.config import StackConfigError, parse, stack_values
from infra.mocked import kubernetes_objects
from tests.conftest import requirement_missing
from tests.infra.conftest import Declared, run_program

INTEROP = Path(__file__).resolve().parents[1] / "interop"
MONITORING = "monitoring"
OPERATOR = {
    "mode": "operator",
    "webhookUrl": "https://alerts.example.com/hooks/mcpfleet",
    "monitoring": {
        "namespace": MONITORING,
        "prometheusUrl": "http://prometheus-operated.monitoring.svc:9090",
        "alertmanagerUrl": "http://alertmanager-operated.monitoring.svc:9093",
        "resourceLabels": {"release": "kube-prometheus-stack"},
    },
}
PROMETHEUS = {"app.kubernetes.io/name": "prometheus"}
CUSTOM = ("PrometheusRule", "PodMonitor", "ServiceMonitor", "AlertmanagerConfig")


@pytest.fixture(scope="module")
def operator() -> Declared:
    result = run_program("prod", {"mcpfleet:observability": OPERATOR})
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout)
    return Declared("prod-operator", data["resources"], kubernetes_objects(data["resources"]), data["outputs"])


def _validate(manifests: list[dict]) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None or not (INTEROP / "node_modules/@kubernetes-models/prometheus-operator").is_dir():
        requirement_missing("node and tests/interop/node_modules are needed (scripts/test installs them)")
    return subprocess.run(
        [node, "validate_operator.mjs"], input=json.dumps(manifests), capture_output=True, text=True, cwd=INTEROP,
        timeout=60,
    )  # fmt: skip


def test_no_prometheus_alertmanager_grafana_or_kube_state_metrics_of_ours(operator):
    workloads = {
        o["metadata"]["name"]
        for kind in ("Deployment", "StatefulSet")
        for o in operator.of_kind(kind, "mcp-observability")
    }
    assert workloads == {"loki"}  # the logs and the audit stream stay the platform's
    assert operator.outputs.get("grafana_url") is None


def test_its_custom_resources_validate_against_the_operators_schemas(operator):
    custom = [o for o in operator.objects if o["kind"] in CUSTOM]
    assert sorted(o["kind"] for o in custom) == sorted(
        ["PrometheusRule", "PodMonitor", "PodMonitor", "ServiceMonitor", "AlertmanagerConfig"]
    )
    result = _validate(custom)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok ") == len(custom)
    for manifest in custom:  # the labels the operator's selectors match (kube-prometheus-stack: its release)
        assert manifest["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # The check can fail: a duration the operator refuses, a port that is not a name.
    rule = json.loads(json.dumps(next(o for o in custom if o["kind"] == "PrometheusRule")))
    rule["spec"]["groups"][0]["rules"][-1]["for"] = "5 minutes"
    monitor = json.loads(json.dumps(next(o for o in custom if o["kind"] == "PodMonitor")))
    monitor["spec"]["podMetricsEndpoints"][0]["port"] = METRICS_PORT
    result = _validate([rule, monitor])
    assert result.returncode == 1 and result.stdout.count("invalid ") == 2, result.stdout


def test_the_rules_are_the_promtool_tested_file(operator, tmp_path):
    [rule] = operator.of_kind("PrometheusRule", "mcp-observability")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES_FILE.read_text())["groups"]
    promtool = shutil.which("promtool")
    if promtool is None:
        requirement_missing("promtool is not installed (Debian package prometheus; scripts/test unpacks it)")
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    checked = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_route_is_the_bundled_one_through_the_egress_proxy(operator):
    [config] = operator.of_kind("AlertmanagerConfig", "mcp-apps")  # the operator scopes it to the apps' namespace
    spec = config["spec"]
    rendered = render_alertmanager()

    def texts(matchers):
        return [f'{m["name"]}{m["matchType"]}"{m["value"]}"' for m in matchers]

    assert spec["route"]["receiver"] == rendered["route"]["receiver"]
    assert spec["route"]["groupBy"] == rendered["route"]["group_by"]
    assert [(r["receiver"], texts(r["matchers"])) for r in spec["route"]["routes"]] == [
        (r["receiver"], r["matchers"]) for r in rendered["route"]["routes"]
    ]
    assert [r["name"] for r in spec["receivers"]] == [r["name"] for r in rendered["receivers"]]
    proxy_port = next(
        int(line.split()[1])
        for line in operator.one("ConfigMap", "egress-proxy", "mcp-data")["data"]["squid.conf"].splitlines()
        if line.startswith("http_port ") and line.endswith("name=alertmanager")
    )
    for receiver in spec["receivers"]:
        [hook] = receiver["webhookConfigs"]
        assert hook["url"] == "https://alerts.example.com/hooks/mcpfleet"
        assert hook["httpConfig"]["proxyURL"] == f"http://egress-proxy.mcp-data.svc:{proxy_port}"
    admit = operator.one("NetworkPolicy", "egress-proxy-from-alertmanager", "mcp-data")["spec"]["ingress"][0]["from"]
    assert admit == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MONITORING}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "alertmanager"}},
        }
    ]


def test_the_scrapes_select_the_pods_and_keep_the_rules_job_names(operator):
    apps, proxy = sorted(operator.of_kind("PodMonitor"), key=lambda m: m["metadata"]["namespace"])
    assert apps["metadata"]["namespace"] == "mcp-apps" and proxy["metadata"]["namespace"] == "mcp-data"
    for monitor, job in ((apps, SCRAPE_JOB), (proxy, EGRESS_JOB)):
        [endpoint] = monitor["spec"]["podMetricsEndpoints"]
        assert {"targetLabel": "job", "replacement": job, "action": "replace"} in endpoint["relabelings"]
    # The apps' pods carry the selected label and name their metrics port as the endpoint does.
    selected = apps["spec"]["selector"]["matchLabels"]
    for deployment in operator.of_kind("Deployment", "mcp-apps"):
        template = deployment["spec"]["template"]
        assert selected.items() <= template["metadata"]["labels"].items()
        ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        assert ports["metrics"] == METRICS_PORT
    [collector] = operator.of_kind("ServiceMonitor", "mcp-node-agents")
    assert collector["spec"]["endpoints"][0]["port"] == "spanmetrics"


def test_the_network_policies_admit_the_operators_prometheus_and_touch_nothing_of_its(operator):
    scraper = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MONITORING}}, "podSelector": {
        "matchLabels": PROMETHEUS}}  # fmt: skip
    for deployment in operator.of_kind("Deployment", "mcp-apps"):
        name = deployment["metadata"]["name"]
        ingress = operator.one("NetworkPolicy", name, "mcp-apps")["spec"]["ingress"]
        metrics = [rule for rule in ingress if rule["ports"] == [{"protocol": "TCP", "port": METRICS_PORT}]]
        assert metrics == [{"from": [scraper], "ports": [{"protocol": "TCP", "port": METRICS_PORT}]}], name
    assert operator.one("NetworkPolicy", "egress-proxy-from-prometheus", "mcp-data")["spec"]["ingress"][0]["from"] == [
        scraper
    ]
    assert operator.of_kind("NetworkPolicy", MONITORING) == []  # its namespace's policies are its owners'
    # The on-call server reads the operator's Prometheus and Alertmanager, and may reach them alone.
    [container] = operator.one("Deployment", "mcp-oncall", "mcp-apps")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PROMETHEUS_URL"] == "http://prometheus-operated.monitoring.svc:9090"
    assert env["ALERTMANAGER_URL"] == "http://alertmanager-operated.monitoring.svc:9093"
    egress = operator.one("NetworkPolicy", "mcp-oncall", "mcp-apps")["spec"]["egress"]
    to_monitoring = [r for r in egress if any(MONITORING in json.dumps(peer) for peer in r["to"])]
    assert sorted(r["ports"][0]["port"] for r in to_monitoring) == [9090, 9093]


def test_dashboards_and_the_loki_datasource_are_config_maps_for_the_grafana_sidecar(operator):
    maps = operator.of_kind("ConfigMap", MONITORING)
    dashboards = [m for m in maps if m["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert sorted(name for m in dashboards for name in m["data"]) == sorted(
        p.name for p in Path("dashboards").glob("*.json")
    )
    [datasource] = [m for m in maps if m["metadata"]["labels"].get("grafana_datasource") == "1"]
    assert "uid: loki" in next(iter(datasource["data"].values()))
    loki = operator.one("ConfigMap", "loki", "mcp-observability")["data"]["loki.yaml"]
    assert "alertmanager_url: http://alertmanager-operated.monitoring.svc:9093" in loki


def _values(**observability) -> dict:
    values = stack_values("prod")
    return values | {"observability": observability}


def test_the_mode_and_its_monitoring_are_set_together():
    with pytest.raises(StackConfigError, match="monitoring"):
        parse(_values(mode="operator"))
    with pytest.raises(StackConfigError, match="monitoring"):
        parse(_values(monitoring=OPERATOR["monitoring"]))  # bundled, yet naming another Prometheus
    elsewhere = {**OPERATOR["monitoring"], "prometheusUrl": "http://prometheus.other.svc:9090"}
    with pytest.raises(StackConfigError, match="monitoring namespace 'monitoring'"):
        parse(_values(mode="operator", monitoring=elsewhere))
    assert parse(_values(mode="external", monitoring=OPERATOR["monitoring"])).observability.mode == "external"
