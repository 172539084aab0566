"""The Prometheus Operator's objects (kube-prometheus-stack): the platform's monitoring handed to an operator the
cluster already runs, instead of a Prometheus and an Alertmanager of its own.

One source for both: the rules are `alerts/mcp-rules.yml` (what the bundled Prometheus loads and promtool tests),
the route is `alerts.routing.render_alertmanager` in the operator's field names, the scrape jobs relabel to the
job names the rules use, and the dashboards are `dashboards/*.json` as ConfigMaps the Grafana sidecar loads. Each
builder returns a plain manifest, so the tests validate exactly what is applied against the operator's schemas.
"""

from __future__ import annotations

import re
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from alerts.names import EGRESS_JOB, SCRAPE_JOB
from alerts.params import AlertParams
from alerts.render import RULES_FILE
from alerts.routing import render_alertmanager
from infra.components.k8s import child_opts
from infra.components.observability.grafana import dashboard_files
from infra.config import (
    AGENTS_NAMESPACE,
    APP_NAMESPACE,
    DATA_NAMESPACE,
    OBSERVABILITY_NAMESPACE,
    MonitoringConfig,
)
from infra.egress import PROXY_NAME

MONITORING = "monitoring.coreos.com"
SPANMETRICS_JOB = "otel-collector-spanmetrics"
_MATCHER = re.compile(r'^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>=~|!~|!=|=)"(?P<value>.*)"$')


def _labels(monitoring: MonitoringConfig, **extra: str) -> dict[str, str]:
    """Ours, and what the operator's (or the Grafana sidecar's) selectors match."""
    return {"app.kubernetes.io/part-of": "mcpfleet", **monitoring.resource_labels, **extra}


def _meta(name: str, namespace: str, monitoring: MonitoringConfig, **extra_labels: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": _labels(monitoring, **extra_labels)}


def _job(name: str) -> dict[str, Any]:
    """A relabeling that names the job as the rules expect it (the operator's default is namespace/monitor)."""
    return {"targetLabel": "job", "replacement": name, "action": "replace"}


def prometheus_rule(monitoring: MonitoringConfig) -> dict[str, Any]:
    """The fleet's alert and recording rules, the groups of `alerts/mcp-rules.yml` unchanged."""
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return {
        "apiVersion": f"{MONITORING}/v1",
        "kind": "PrometheusRule",
        "metadata": _meta("mcpfleet", OBSERVABILITY_NAMESPACE, monitoring),
        "spec": {"groups": groups},
    }


def pod_monitors(monitoring: MonitoringConfig) -> list[dict[str, Any]]:
    """The MCP apps' pods (job, app, namespace and pod labelled as the bundled scrape labels them) and each egress
    proxy replica's meter."""
    apps = {
        "apiVersion": f"{MONITORING}/v1",
        "kind": "PodMonitor",
        "metadata": _meta("mcp-apps", APP_NAMESPACE, monitoring),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/component": "mcp-server"}},
            "podMetricsEndpoints": [
                {
                    "port": "metrics",
                    "path": "/metrics",
                    "relabelings": [
                        _job(SCRAPE_JOB),
                        {
                            "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
                            "targetLabel": "app",
                            "action": "replace",
                        },
                        {"sourceLabels": ["__meta_kubernetes_namespace"], "targetLabel": "namespace"},
                        {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "pod"},
                    ],
                }
            ],
        },
    }
    proxy = {
        "apiVersion": f"{MONITORING}/v1",
        "kind": "PodMonitor",
        "metadata": _meta(PROXY_NAME, DATA_NAMESPACE, monitoring),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": PROXY_NAME}},
            "podMetricsEndpoints": [
                {
                    "port": "metrics",
                    "relabelings": [
                        _job(EGRESS_JOB),
                        {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "pod"},
                    ],
                }
            ],
        },
    }
    return [apps, proxy]


def service_monitor(monitoring: MonitoringConfig) -> dict[str, Any]:
    """The collector's span metrics (the RED series of traces)."""
    return {
        "apiVersion": f"{MONITORING}/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta("otel-collector", AGENTS_NAMESPACE, monitoring),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "otel-collector"}},
            "endpoints": [{"port": "spanmetrics", "relabelings": [_job(SPANMETRICS_JOB)]}],
        },
    }


def _matchers(texts: list[str]) -> list[dict[str, str]]:
    matchers = []
    for text in texts:
        found = _MATCHER.match(text)
        if found is None:
            raise ValueError(f"not a matcher: {text!r}")
        matchers.append({"name": found["name"], "value": found["value"], "matchType": found["op"]})
    return matchers


def alertmanager_config(params: AlertParams, monitoring: MonitoringConfig) -> dict[str, Any]:
    """`alerts.routing`'s route, receivers and inhibition in the AlertmanagerConfig's fields (v1alpha1).

    The operator scopes it to alerts whose `namespace` label is this object's: the rules' alerts carry the apps'
    namespace, so it sits there. Templates are not carried (the resource has no field for them): notifications
    use the operator's Alertmanager's own templates."""
    rendered = render_alertmanager(params)
    route = rendered["route"]

    def route_of(entry: dict[str, Any]) -> dict[str, Any]:
        converted: dict[str, Any] = {"receiver": entry["receiver"]}
        if "matchers" in entry:
            converted["matchers"] = _matchers(entry["matchers"])
        for key, field in (("group_by", "groupBy"), ("group_wait", "groupWait"),
                           ("group_interval", "groupInterval"), ("repeat_interval", "repeatInterval")):  # fmt: skip
            if key in entry:
                converted[field] = entry[key]
        return converted

    def webhook(config: dict[str, Any]) -> dict[str, Any]:
        converted: dict[str, Any] = {
            "url": config["url"],
            "sendResolved": config["send_resolved"],
            "maxAlerts": config["max_alerts"],
        }
        if "http_config" in config:
            converted["httpConfig"] = {"proxyURL": config["http_config"]["proxy_url"]}
        return converted

    return {
        "apiVersion": f"{MONITORING}/v1alpha1",
        "kind": "AlertmanagerConfig",
        "metadata": _meta("mcpfleet", APP_NAMESPACE, monitoring),
        "spec": {
            "route": {**route_of(route), "routes": [route_of(r) for r in route["routes"]]},
            "receivers": [
                {"name": r["name"], "webhookConfigs": [webhook(w) for w in r["webhook_configs"]]}
                for r in rendered["receivers"]
            ],
            "inhibitRules": [
                {
                    "sourceMatch": _matchers(rule["source_matchers"]),
                    "targetMatch": _matchers(rule["target_matchers"]),
                    "equal": rule["equal"],
                }
                for rule in rendered["inhibit_rules"]
            ],
        },
    }


def dashboard_config_maps(monitoring: MonitoringConfig) -> list[dict[str, Any]]:
    """Each dashboard as a ConfigMap the Grafana sidecar loads (its label), in the monitoring namespace, where the
    sidecar looks by default; and the Loki datasource the dashboards' log panels name (uid `loki`)."""
    dashboard = {monitoring.dashboard_label: "1"}
    maps = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(
                f"mcpfleet-dashboard-{name.removesuffix('.json')}", monitoring.namespace, monitoring, **dashboard
            ),
            "data": {name: text},
        }
        for name, text in dashboard_files().items()
    ]
    loki = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Loki (mcpfleet)",
                "uid": "loki",
                "type": "loki",
                "access": "proxy",
                "url": f"http://loki.{OBSERVABILITY_NAMESPACE}.svc:3100",
            }
        ],
    }
    maps.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("mcpfleet-datasource-loki", monitoring.namespace, monitoring, grafana_datasource="1"),
            "data": {"mcpfleet-loki.yaml": yaml.safe_dump(loki, sort_keys=False)},
        }
    )
    return maps


def operator_objects(params: AlertParams, monitoring: MonitoringConfig) -> list[dict[str, Any]]:
    """Every object the operator mode adds, in apply order."""
    return [
        prometheus_rule(monitoring),
        *pod_monitors(monitoring),
        service_monitor(monitoring),
        alertmanager_config(params, monitoring),
        *dashboard_config_maps(monitoring),
    ]


class OperatorMonitoring(pulumi.ComponentResource):
    """The operator's objects as Pulumi resources (custom resources through `apiextensions.CustomResource`)."""

    def __init__(
        self,
        name: str,
        params: AlertParams,
        monitoring: MonitoringConfig,
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("mcpfleet:observability:OperatorMonitoring", name, None, opts)
        for manifest in operator_objects(params, monitoring):
            meta = manifest["metadata"]
            resource_name = f"{manifest['kind'].lower()}-{meta['namespace']}-{meta['name']}"
            if manifest["kind"] == "ConfigMap":
                k8s.core.v1.ConfigMap(
                    resource_name, metadata=meta, data=manifest["data"], opts=child_opts(self, provider)
                )
            else:
                k8s.apiextensions.CustomResource(
                    resource_name,
                    api_version=manifest["apiVersion"],
                    kind=manifest["kind"],
                    metadata=meta,
                    spec=manifest["spec"],
                    opts=child_opts(self, provider),
                )
        self.register_outputs({})
