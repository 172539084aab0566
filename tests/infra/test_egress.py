"""What leaves the cluster, on the rendered stacks: no egress rule reaches "anywhere", each client reaches
exactly the outside hosts it declared, by name, through its own port on the egress proxy, and the policy
pack refuses the shapes that would reopen the hole (a rule without `to`, a public address block)."""

from __future__ import annotations

import copy
from ipaddress import ip_network
from pathlib import Path

import pytest
import yaml

from alerts.params import AlertParams
from infra.policy.checks import check_resource
from tests.infra.rendered_proxy import proxy_allowlists, proxy_ports

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PROXY_LABELS = {"app.kubernetes.io/name": "egress-proxy"}
DATA, APPS, OBS, AGENTS = "mcp-data", "mcp-apps", "mcp-observability", "mcp-node-agents"
JWKS = "login.example.com:443"

# What each client may reach outside the cluster, from the stacks' declarations: the issuer's key host on
# prod (tokens are checked against a JWKS), notify's webhook and Slack targets, prod's alert webhook and SIEM.
EXPECTED = {
    "dev": {"mcp-notify": {"hooks.example.com:443"}},
    "prod": {
        "alertmanager": {"alerts.example.com:443"},
        "otel-collector": {"siem.example.com:443"},
        "mcp-db": {JWKS},
        "mcp-files": {JWKS},
        "mcp-oncall": {JWKS},
        "mcp-notify": {JWKS, "hooks.example.com:443", "hooks.slack.com:443"},
    },
}


def test_no_egress_rule_reaches_anywhere(stack):
    """Each rule names its peers (DNS included); only the proxy reaches public addresses, never private ones."""
    for policy in stack.of_kind("NetworkPolicy"):
        name = policy["metadata"]["name"]
        is_proxy = policy["spec"]["podSelector"].get("matchLabels") == PROXY_LABELS
        for rule in policy["spec"].get("egress", []):
            assert rule.get("to"), name
            for peer in rule["to"]:
                if "ipBlock" not in peer:
                    continue
                block = ip_network(peer["ipBlock"]["cidr"])
                if not is_proxy:
                    assert block.is_private, (name, str(block))
                elif not block.is_private:  # the proxy's public rule excludes every private range
                    excluded = [ip_network(b) for b in peer["ipBlock"]["except"]]
                    for private in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8"):
                        assert any(ip_network(private).subnet_of(e) for e in excluded), (name, private)


def test_each_client_reaches_exactly_the_outside_hosts_it_declared(stack):
    assert proxy_allowlists(stack) == EXPECTED[stack.stack]


def test_each_app_reaches_only_its_own_port_on_the_proxy(stack):
    ports = proxy_ports(stack)
    assert len(set(ports.values())) == len(ports)
    for policy in stack.of_kind("NetworkPolicy", APPS):
        app = policy["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        to_proxy = [
            port["port"]
            for rule in policy["spec"].get("egress", [])
            if any(peer.get("podSelector", {}).get("matchLabels") == PROXY_LABELS for peer in rule.get("to", []))
            for port in rule["ports"]
        ]
        assert to_proxy == ([ports[app]] if app in ports else []), app
    # On the proxy's side, each client is admitted on its own port alone.
    for client, port in ports.items():
        admit = stack.one("NetworkPolicy", f"egress-proxy-from-{client}", DATA)["spec"]
        assert admit["podSelector"]["matchLabels"] == PROXY_LABELS
        [rule] = admit["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": port}]
        [peer] = rule["from"]
        namespace = {"alertmanager": OBS, "otel-collector": AGENTS}.get(client, APPS)
        assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": namespace}
        assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": client}


def test_alertmanager_reaches_an_outside_webhook_only_through_the_proxy(stack):
    policies = [p["metadata"]["name"] for p in stack.of_kind("NetworkPolicy", OBS)]
    if stack.stack == "dev":  # its receiver is in its own namespace, which the namespace's policy already allows
        assert "alertmanager-egress" not in policies
        return
    [rule] = stack.one("NetworkPolicy", "alertmanager-egress", OBS)["spec"]["egress"]
    assert rule["to"][0]["podSelector"]["matchLabels"] == PROXY_LABELS
    assert rule["ports"] == [{"protocol": "TCP", "port": proxy_ports(stack)["alertmanager"]}]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({}, "an egress rule without `to` reaches anywhere (ports all)"),
        ({"ports": [{"protocol": "TCP", "port": 443}]}, "an egress rule without `to` reaches anywhere (ports [443])"),
        ({"to": [{"ipBlock": {"cidr": "54.0.0.0/12"}}]}, "egress to the public block 54.0.0.0/12"),
        (
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]},
            "egress to the public block 0.0.0.0/0",
        ),
    ],
)
def test_the_policy_pack_refuses_a_rule_that_reaches_outside_hosts_directly(prod, rule, message):
    policy = copy.deepcopy(prod.one("NetworkPolicy", "mcp-db", APPS))
    assert check_resource(NETWORK_POLICY, policy) == []
    policy["spec"]["egress"].append(rule)
    problems = check_resource(NETWORK_POLICY, policy)
    assert any(message in p for p in problems), problems


def test_the_policy_pack_allows_the_proxy_alone_its_public_rule(prod):
    proxy = prod.one("NetworkPolicy", "egress-proxy-egress", DATA)
    assert check_resource(NETWORK_POLICY, proxy) == []
    # The same public rule on a policy that selects the proxy's labels in another namespace is refused.
    impostor = copy.deepcopy(proxy)
    impostor["metadata"]["namespace"] = APPS
    assert any("public block" in p for p in check_resource(NETWORK_POLICY, impostor))


def test_prometheus_scrapes_each_proxy_replicas_meter_and_may_reach_it(prod):
    """The denied-egress alert reads the meter's series: the job the rule names keeps the meter's port of
    the proxy's pods, Prometheus's egress reaches that port, and the proxy's side admits Prometheus there."""
    config = yaml.safe_load(Path("infra/observability/prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == AlertParams().egress_job]
    [keep] = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    pod = prod.one("Deployment", "egress-proxy", DATA)["spec"]["template"]
    [meter] = [c for c in pod["spec"]["containers"] if c["name"] == "meter"]
    [port] = meter["ports"]
    assert keep["regex"] == f"{pod['metadata']['labels']['app.kubernetes.io/name']};{port['name']}"
    assert meter["args"] == ["sidecars.egress_meter", *(f"--client={c}" for c in proxy_ports(prod))]
    reaches = prod.one("NetworkPolicy", "prometheus-egress", OBS)["spec"]["egress"]
    assert {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": DATA}},
                    "podSelector": {"matchLabels": PROXY_LABELS}}],
            "ports": [{"protocol": "TCP", "port": port["containerPort"]}]} in reaches  # fmt: skip
    [admit] = prod.one("NetworkPolicy", "egress-proxy-from-prometheus", DATA)["spec"]["ingress"]
    assert admit["ports"] == [{"protocol": "TCP", "port": port["containerPort"]}]
