"""What enters, on the rendered stacks: each app reached from outside gets exactly one Ingress for its
resourceUrl's host, TLS on, routing `/mcp` and its RFC 9728 metadata path to the MCP port and nothing else;
metrics and probes are in no route; the policy pack refuses a route that exposes more."""

from __future__ import annotations

import json
import shlex
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from infra.authz import ROUTED
from infra.config import SELF_SIGNED_SECRET, StackConfigError, parse
from infra.mocked import kubernetes_objects, stack_config
from infra.policy.checks import check_resource
from tests.infra.conftest import run_program

INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
RELEASE = "kubernetes:helm.sh/v3:Release"
APPS = "mcp-apps"
PATHS = ["/mcp", "/.well-known/oauth-protected-resource/mcp"]


def dev_apps() -> dict[str, dict[str, Any]]:
    return dict(stack_config("dev")["mcpfleet:apps"])


def resource_urls(stack_name: str) -> dict[str, str]:
    """The stack's apps as deployed under the mocks (the GitHub server is left out of dev: no credential)."""
    apps = stack_config(stack_name)["mcpfleet:apps"].items()
    return {name: app["resourceUrl"] for name, app in apps if app["module"] != "apps.github"}


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


def test_in_cluster_apps_get_no_route_and_kind_no_edge():
    apps = {name: {**app, "resourceUrl": f"http://{name}.mcp-apps.svc/mcp"} for name, app in dev_apps().items()}
    in_cluster = {"mcpfleet:apps": apps, "mcpfleet:routes": {}, "mcpfleet:issuer": "http://authz.mcp-auth.svc:9400"}
    result = run_program("dev", in_cluster)
    assert result.returncode == 0, result.stderr
    resources = json.loads(result.stdout)["resources"]
    assert not [o for o in kubernetes_objects(resources) if o["kind"] == "Ingress"]
    assert not [r for r in resources if r["type"] in ("mcpfleet:index:DevEdge", RELEASE)]


def test_the_dev_stack_serves_prods_routes_from_kinds_traefik(dev):
    """The same two Exact paths under TLS as prod, for `<app>.localhost`, served by a pinned Traefik whose HTTPS
    node port is the one kind maps the laptop's port to (loopback only), with a certificate for every host."""
    hosts = sorted(urlsplit(url).hostname for url in resource_urls("dev").values())
    routes = {ingress["metadata"]["name"]: ingress for ingress in dev.of_kind("Ingress")}
    assert set(routes) == {*resource_urls("dev"), "authz"}  # and the local issuer's own route, below
    for name, url in resource_urls("dev").items():
        ingress = routes[name]
        assert ingress["spec"]["ingressClassName"] == "traefik"
        assert ingress["metadata"]["annotations"] == {"traefik.ingress.kubernetes.io/router.entrypoints": "websecure"}
        assert ingress["spec"]["tls"] == [{"hosts": [urlsplit(url).hostname], "secretName": SELF_SIGNED_SECRET}]
        [rule] = ingress["spec"]["rules"]
        assert [p["path"] for p in rule["http"]["paths"]] == PATHS
        assert check_resource(INGRESS, ingress) == []

    [release] = [r["inputs"] for r in dev.resources if r["type"] == RELEASE]
    assert (release["chart"], release["version"], release["namespace"]) == ("traefik", "41.3.0", "mcp-ingress")
    values = release["values"]
    assert values["ingressClass"] == {"enabled": True, "isDefaultClass": False, "name": "traefik"}
    assert values["service"]["spec"]["type"] == "NodePort"
    assert values["ports"]["web"]["expose"] == {"default": False}  # HTTPS only

    [create] = [r["inputs"]["create"] for r in dev.resources if "kind create cluster" in r["inputs"].get("create", "")]
    printf, fmt, kind_file, pipe, *_ = shlex.split(create)
    assert (printf, fmt, pipe) == ("printf", "%s", "|")
    [node] = yaml.safe_load(kind_file)["nodes"]
    assert node["extraPortMappings"] == [
        {
            "containerPort": values["ports"]["websecure"]["nodePort"],
            "hostPort": 443,
            "listenAddress": "127.0.0.1",
            "protocol": "TCP",
        }
    ]

    issuer = routes["authz"]
    assert issuer["metadata"]["namespace"] == "mcp-auth"
    assert issuer["spec"]["tls"] == [{"hosts": ["auth.localhost"], "secretName": SELF_SIGNED_SECRET}]
    [rule] = issuer["spec"]["rules"]
    assert {p["path"]: p["pathType"] for p in rule["http"]["paths"]} == ROUTED  # its OAuth paths only
    assert check_resource(INGRESS, issuer) == []
    assert dev.one("Secret", SELF_SIGNED_SECRET, "mcp-auth")["type"] == "kubernetes.io/tls"
    assert values["providers"]["kubernetesIngress"]["namespaces"] == [APPS, "mcp-auth"]
    hosts = sorted([*hosts, "auth.localhost"])

    [request] = [r["inputs"] for r in dev.resources if r["type"] == "tls:index/certRequest:CertRequest"]
    assert request["dnsNames"] == hosts  # one name per host: TLS libraries refuse a wildcard under `localhost`
    [ca] = [r["inputs"] for r in dev.resources if r["type"] == "tls:index/selfSignedCert:SelfSignedCert"]
    assert ca["isCaCertificate"] is True and "cert_signing" in ca["allowedUses"]
    assert dev.one("Secret", SELF_SIGNED_SECRET, APPS)["type"] == "kubernetes.io/tls"
    assert "dev_certificate" in dev.outputs
    assert dev.outputs["dev_hosts_entries"] == [f"127.0.0.1 {host}" for host in hosts]

    policy = dev.one("NetworkPolicy", "traefik", "mcp-ingress")
    assert policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8443}]}]
    assert [rule["ports"] for rule in policy["spec"]["egress"]] == [
        [{"protocol": "TCP", "port": 8080}],  # the apps' MCP port
        [{"protocol": "TCP", "port": 9400}],  # the local authorization server
        [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}],  # the API server
    ]
    assert check_resource("kubernetes:networking.k8s.io/v1:NetworkPolicy", policy) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mcpfleet:cluster": {"mode": "kind", "httpsPort": 8443}}, "must name cluster.httpsPort 8443"),
        (
            {"mcpfleet:cluster": {"mode": "existing", "image": "ghcr.io/x/apps:1", "authzImage": "ghcr.io/x/authz:1"}},
            "routes.selfSigned is for a kind cluster",
        ),
        (
            {"mcpfleet:cluster": {"mode": "existing", "image": "ghcr.io/x/apps:1"}},
            "identity.provider local on an existing cluster: set cluster.authzImage",
        ),
        ({"mcpfleet:routes": {"selfSigned": True, "tlsSecret": "wild"}}, "set one of clusterIssuer, tlsSecret"),
    ],
)
def test_the_dev_edge_refuses_what_cannot_work(change, message):
    values = {key.removeprefix("mcpfleet:"): value for key, value in (stack_config("dev") | change).items()}
    with pytest.raises(StackConfigError, match=message):
        parse(values)


def test_a_public_app_needs_https_and_a_certificate_source():
    app = {"module": "apps.db", "resourceUrl": "http://mcp-db.example.com/mcp"}
    with pytest.raises(StackConfigError, match="is outside the cluster, so it is routed with TLS: use https"):
        parse({"issuer": "https://issuer.test", "jwksUrl": "https://issuer.test/jwks", "apps": {"mcp-db": app}})
    app["resourceUrl"] = "https://mcp-db.example.com/mcp"
    with pytest.raises(StackConfigError, match=r"set routes.clusterIssuer \(cert-manager\), routes.tlsSecret"):
        parse({"issuer": "https://issuer.test", "jwksUrl": "https://issuer.test/jwks", "apps": {"mcp-db": app}})
    with_secret = parse(
        {
            "issuer": "https://issuer.test",
            "jwksUrl": "https://issuer.test/jwks",
            "apps": {"mcp-db": app},
            "routes": {"tlsSecret": "wild"},
        }
    )
    assert with_secret.routes.tls_secret == "wild"


def _route(paths: list[tuple[str, str]]) -> dict[str, Any]:
    backend = {"service": {"name": "mcp-github", "port": {"name": "http"}}}
    rule = {"host": "gh.example", "http": {"paths": [{"path": p, "pathType": t, "backend": backend} for p, t in paths]}}
    return {"metadata": {"name": "mcp-github"}, "spec": {"tls": [{"hosts": ["gh.example"]}], "rules": [rule]}}


@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        ([("/connect/github", "Exact"), ("/connect/github/callback", "Exact")], False),  # a server's declared pages
        ([("/connect/", "Prefix")], True),  # a prefix routes whatever is under it
        ([("/admin", "Exact")], True),  # not a page beside the endpoint
        ([("/other/connect/x", "Exact")], True),
        ([("/.well-known/oauth-protected-resource/connect/x", "Exact")], True),
    ],
)
def test_the_policy_pack_lets_a_route_carry_declared_pages_under_connect_and_nothing_else(extra, refused):
    route = _route([(path, "Exact") for path in PATHS] + extra)
    assert bool(check_resource(INGRESS, route)) is refused
