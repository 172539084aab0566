"""The audit stream to a SIEM (`observability.auditExport`): only the audit pipeline exports there, through the
collector's own port on the egress proxy, with the SIEM's credential from a Secret; a stack without it keeps the
repository's collector config unchanged. The collector itself cannot run here (its image is on Docker Hub): what
it does with this config is its documented `otlphttp` exporter's behaviour, checked here as rendered."""

from __future__ import annotations

import pytest
import yaml

from infra.components.observability.backend import CONFIG_DIR
from infra.components.observability.collector import SIEM_EXPORTER, collector_config
from infra.config import StackConfigError, parse, stack_values
from infra.egress import COLLECTOR, audit_export_allowlist
from infra.mocked import MOCK_SECRETS
from tests.infra.conftest import run_program
from tests.infra.rendered_proxy import proxy_allowlists, proxy_ports

AGENTS = "mcp-node-agents"
PROXY_LABELS = {"app.kubernetes.io/name": "egress-proxy"}


def _collector(declared) -> dict:
    return yaml.safe_load(declared.one("ConfigMap", "otel-collector", AGENTS)["data"]["otelcol.yaml"])


def _pipelines_are_wired(config: dict) -> None:
    defined = {kind: set(config.get(kind) or {}) for kind in ("receivers", "processors", "exporters", "connectors")}
    for name, pipeline in config["service"]["pipelines"].items():
        for receiver in pipeline["receivers"]:
            assert receiver in defined["receivers"] | defined["connectors"], (name, receiver)
        for exporter in pipeline["exporters"]:
            assert exporter in defined["exporters"] | defined["connectors"], (name, exporter)


def test_only_the_audit_pipeline_exports_to_the_siem_through_the_collectors_proxy_port(prod):
    config = _collector(prod)
    _pipelines_are_wired(config)
    exporting = {name for name, p in config["service"]["pipelines"].items() if SIEM_EXPORTER in p["exporters"]}
    assert exporting == {"logs/audit"}  # operational logs and traces stay in the cluster
    assert config["service"]["pipelines"]["logs/audit"]["exporters"] == ["otlphttp/loki", SIEM_EXPORTER]
    siem = config["exporters"][SIEM_EXPORTER]
    assert siem["logs_endpoint"] == "https://siem.example.com/services/collector/otlp/v1/logs"
    assert siem["proxy_url"] == f"http://egress-proxy.mcp-data.svc:{proxy_ports(prod)[COLLECTOR]}"
    assert siem["timeout"] == "10s" and siem["sending_queue"]["queue_size"] == 1000  # a deadline and a bound
    assert siem["retry_on_failure"]["max_elapsed_time"] == "300s"
    # The proxy lets the collector's port reach the SIEM and nothing else.
    assert proxy_allowlists(prod)[COLLECTOR] == {"siem.example.com:443"}
    to_proxy = [
        rule
        for rule in prod.one("NetworkPolicy", "otel-collector-egress", AGENTS)["spec"]["egress"]
        if any(peer.get("podSelector", {}).get("matchLabels") == PROXY_LABELS for peer in rule["to"])
    ]
    assert [rule["ports"] for rule in to_proxy] == [[{"protocol": "TCP", "port": proxy_ports(prod)[COLLECTOR]}]]


def test_the_siems_credential_is_in_a_secret_never_in_the_collectors_config(prod):
    credential = MOCK_SECRETS["prod"]["auditExportCredential"]
    config_map = prod.one("ConfigMap", "otel-collector", AGENTS)["data"]["otelcol.yaml"]
    assert credential not in config_map
    assert _collector(prod)["exporters"][SIEM_EXPORTER]["headers"] == {
        "Authorization": "${env:AUDIT_EXPORT_CREDENTIAL}"
    }
    assert prod.one("Secret", "audit-export", AGENTS)["stringData"] == {"credential": credential}
    [container] = prod.one("DaemonSet", "otel-collector", AGENTS)["spec"]["template"]["spec"]["containers"]
    [env] = [e for e in container["env"] if e["name"] == "AUDIT_EXPORT_CREDENTIAL"]
    assert env["valueFrom"] == {"secretKeyRef": {"name": "audit-export", "key": "credential"}}


def test_a_stack_without_a_siem_keeps_the_repositorys_collector_config(dev):
    assert (
        dev.one("ConfigMap", "otel-collector", AGENTS)["data"]["otelcol.yaml"]
        == (CONFIG_DIR / "otelcol.yaml").read_text()
    )
    assert COLLECTOR not in proxy_ports(dev)
    [container] = dev.one("DaemonSet", "otel-collector", AGENTS)["spec"]["template"]["spec"]["containers"]
    assert [e["name"] for e in container["env"]] == ["K8S_NODE_NAME"]


def _stack(audit_export: dict) -> dict:
    values = stack_values("dev")
    return values | {"observability": {"auditExport": audit_export}}


def test_a_siem_in_the_cluster_is_reached_directly_and_a_public_one_only_over_https():
    inside = parse(_stack({"logsUrl": "http://siem.security.svc:4318/v1/logs"}))
    assert audit_export_allowlist(inside) == []  # no proxy port: a NetworkPolicy to its namespace instead
    config = yaml.safe_load(collector_config(inside, proxy_url=None))
    assert "proxy_url" not in config["exporters"][SIEM_EXPORTER] and "headers" not in config["exporters"][SIEM_EXPORTER]
    with pytest.raises(StackConfigError, match="logsUrl must be https"):
        parse(_stack({"logsUrl": "http://siem.example.com/v1/logs"}))
    with pytest.raises(StackConfigError, match="logUrl"):
        parse(_stack({"logUrl": "https://siem.example.com/v1/logs"}))  # misspelt: an error, not a default
    with pytest.raises(StackConfigError, match="header"):
        parse(_stack({"logsUrl": "https://siem.example.com/v1/logs", "header": "Authorization: Bearer x"}))


def test_a_siem_in_the_cluster_gets_an_egress_rule_to_its_namespace_alone():
    result = run_program(
        "dev", {"mcpfleet:observability": {"auditExport": {"logsUrl": "http://siem.security.svc:4318/v1/logs"}}}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    import json

    from infra.mocked import kubernetes_objects

    objects = kubernetes_objects(json.loads(result.stdout)["resources"])
    [policy] = [o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "otel-collector-egress"]
    siem_rules = [r for r in policy["spec"]["egress"] if r["ports"] == [{"protocol": "TCP", "port": 4318}]]
    assert siem_rules == [
        {
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "security"}}}],
            "ports": [{"protocol": "TCP", "port": 4318}],
        }
    ]


def test_a_header_without_its_secret_stops_the_program_naming_the_secret():
    overrides = {
        "mcpfleet:observability": {
            "auditExport": {"logsUrl": "https://siem.example.com/v1/logs", "header": "Authorization"}
        }
    }
    result = run_program("dev", overrides)
    assert result.returncode != 0
    assert "mcpfleet:auditExportCredential" in result.stderr
