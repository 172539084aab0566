"""The on-call server on Kubernetes: it reaches Prometheus and Alertmanager in the observability namespace
(each admits it on its own side) and Redis, and nothing else; its runbooks are in the image."""

from __future__ import annotations

import pytest

from infra import images
from tests.infra.conftest import Declared

APPS, OBS, DATA, AGENTS = "mcp-apps", "mcp-observability", "mcp-data", "mcp-node-agents"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_oncall_app_reaches_prometheus_and_alertmanager_only(request, stack):
    declared: Declared = request.getfixturevalue(stack)
    [container] = declared.one("Deployment", "mcp-oncall", APPS)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PROMETHEUS_URL"] == "http://prometheus.mcp-observability.svc:9090"
    assert env["ALERTMANAGER_URL"] == "http://alertmanager.mcp-observability.svc:9093"
    egress = declared.one("NetworkPolicy", "mcp-oncall", APPS)["spec"]["egress"]
    reached = {
        (
            rule["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            rule["to"][0].get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name"),
        ): sorted(p["port"] for p in rule["ports"])
        for rule in egress
        if "to" in rule
    }
    expected = {
        (OBS, "prometheus"): [9090],
        (OBS, "alertmanager"): [9093],
        (DATA, "redis"): [6379],
        (AGENTS, "otel-collector"): [4317, 4318],
    }
    if stack == "dev":  # tokens checked against the local issuer's JWKS, in the cluster
        expected[("mcp-auth", "authz")] = [9400]
    if stack == "prod":  # tokens checked against the issuer's JWKS: its host, through its own proxy port
        expected[(DATA, "egress-proxy")] = reached[(DATA, "egress-proxy")]
        assert len(expected[(DATA, "egress-proxy")]) == 1
    assert {k: v for k, v in reached.items() if k != ("kube-system", None)} == expected
    assert 5432 not in {p["port"] for rule in egress for p in rule["ports"]}  # no database: none declared
    for service, port in (("prometheus", 9090), ("alertmanager", 9093)):
        [rule] = declared.one("NetworkPolicy", f"{service}-from-mcp-oncall", OBS)["spec"]["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": port}]
        assert rule["from"][0]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "mcp-oncall"}}
    secret = declared.one("Secret", "mcp-oncall-secrets", APPS)["stringData"]
    assert "DB_READ_URL" not in secret and "REDIS_URL" in secret


def test_the_runbooks_are_an_input_of_the_image():
    """One source: the image copies the repository's runbooks/, and its tag changes when they do."""
    assert "runbooks" in images.APPS.inputs
    dockerfile = open("Dockerfile").read()
    assert "COPY runbooks/ /app/runbooks/" in dockerfile
    assert "runbooks" not in open(".dockerignore").read().split()
