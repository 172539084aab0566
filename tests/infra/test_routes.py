"""What enters, on the rendered stacks: each app reached from outside gets exactly one Ingress for its
resourceUrl's host, TLS on, routing `/mcp` and its RFC 9728 metadata path to the MCP port and nothing else;
metrics and probes are in no route; the policy pack refuses a route that exposes more."""

from __future__ import annotations

import copy
from urllib.parse import urlsplit

import pytest

from infra.config import StackConfigError, parse
from infra.mocked import stack_config
from infra.policy.checks import check_resource

INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
APPS = "mcp-apps"
PATHS = ["/mcp", "/.well-known/oauth-protected-resource/mcp"]


def resource_urls(stack_name: str) -> dict[str, str]:
    return {name: app["resourceUrl"] for name, app in stack_config(stack_name)["mcpfleet:apps"].items()}


def test_each_prod_app_has_one_tls_route_with_exactly_the_two_mcp_paths(prod):
    routes = {ingress["metadata"]["name"]: ingress for ingress in prod.of_kind("Ingress")}
    assert set(routes) == set(resource_urls("prod"))
    for name, url in resource_urls("prod").items():
        ingress = routes[name]
        host = urlsplit(url).hostname
        assert ingress["metadata"]["namespace"] == APPS
        assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
        assert ingress["spec"]["tls"] == [{"hosts": [host], "secretName": f"{name}-tls"}]
        [rule] = ingress["spec"]["rules"]
        assert rule["host"] == host
        assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == [(p, "Exact") for p in PATHS]
        for path in rule["http"]["paths"]:
            assert path["backend"] == {"service": {"name": name, "port": {"name": "http"}}}
        # The Service's `http` port is the container's MCP port, not the metrics port.
        [service_port] = prod.one("Service", name, APPS)["spec"]["ports"]
        container = prod.one("Deployment", name, APPS)["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert service_port["targetPort"] == "http" and ports["http"] != ports["metrics"]
        assert check_resource(INGRESS, ingress) == []


def test_the_body_cap_at_the_ingress_lets_through_what_the_app_accepts(prod):
    sizes = {i["metadata"]["name"]: i["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
             for i in prod.of_kind("Ingress")}  # fmt: skip
    assert sizes["mcp-db"] == "4m"  # the kit's 4 MiB default
    files = prod.one("Deployment", "mcp-files", APPS)["spec"]["template"]["spec"]["containers"][0]["env"]
    body = next((int(e["value"]) for e in files if e["name"] == "MCP_MAX_BODY_BYTES"), 4 * 1024 * 1024)
    assert int(sizes["mcp-files"].removesuffix("m")) * 1024 * 1024 >= body


def test_in_cluster_apps_get_no_route(dev):
    assert all(urlsplit(url).hostname.endswith(".svc") for url in resource_urls("dev").values())
    assert dev.of_kind("Ingress") == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["http"]["paths"].append({**r["http"]["paths"][0], "path": "/metrics"}), "/metrics exposes"),
        (lambda r: r["http"]["paths"].append({**r["http"]["paths"][0], "path": "/health"}), "/health exposes"),
        (lambda r: r["http"]["paths"][0].update(pathType="Prefix"), "Prefix /mcp exposes"),
        (lambda r: r["http"]["paths"][0].update(path="/"), "/ exposes"),
        (lambda r: r["http"]["paths"].append({**r["http"]["paths"][0], "path": "/other/mcp"}), "/other/mcp exposes"),
        (lambda r: r["http"]["paths"][0]["backend"]["service"].update(port={"name": "metrics"}), "not the MCP port"),
        (lambda r: r.update(host="other.example.com"), "routed without TLS"),
    ],
)
def test_the_policy_pack_refuses_a_route_that_exposes_more(prod, change, message):
    ingress = copy.deepcopy(prod.one("Ingress", "mcp-db", APPS))
    change(ingress["spec"]["rules"][0])
    problems = check_resource(INGRESS, ingress)
    assert any(message in p for p in problems), problems


def test_a_public_app_needs_https_and_a_certificate_source():
    app = {"module": "apps.db", "resourceUrl": "http://mcp-db.example.com/mcp"}
    with pytest.raises(StackConfigError, match="is outside the cluster, so it is routed with TLS: use https"):
        parse({"issuer": "https://issuer.test", "apps": {"mcp-db": app}})
    app["resourceUrl"] = "https://mcp-db.example.com/mcp"
    with pytest.raises(StackConfigError, match=r"set routes.clusterIssuer \(cert-manager\) or routes.tlsSecret"):
        parse({"issuer": "https://issuer.test", "apps": {"mcp-db": app}})
    with_secret = parse({"issuer": "https://issuer.test", "apps": {"mcp-db": app}, "routes": {"tlsSecret": "wild"}})
    assert with_secret.routes.tls_secret == "wild"
