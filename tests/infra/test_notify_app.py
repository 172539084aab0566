"""The notification server on Kubernetes: egress to its targets' addresses and Redis only; its secrets by
reference from its own Secret, never in the pod spec."""

from __future__ import annotations

import pytest

from infra.config import StackConfigError, parse
from infra.fleet import check, load_server
from tests.infra.conftest import Declared

APPS, DATA, AGENTS = "mcp-apps", "mcp-data", "mcp-node-agents"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_notify_app_reaches_its_targets_and_redis_only(request, stack):
    declared: Declared = request.getfixturevalue(stack)
    egress = declared.one("NetworkPolicy", "mcp-notify", APPS)["spec"]["egress"]
    outside = {
        (peer["ipBlock"]["cidr"], port["port"])
        for rule in egress
        for peer in rule.get("to", [])
        if "ipBlock" in peer
        for port in rule["ports"]
    }
    # Only the in-network SMTP relay is an address; its webhook and Slack hosts are names on the egress proxy.
    assert outside == (set() if stack == "dev" else {("10.20.40.5/32", 587)})
    in_cluster = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in egress
        for peer in rule.get("to", [])
        if "namespaceSelector" in peer
    }
    # Redis and the egress proxy, the collector, DNS, and (dev) the local issuer's keys
    assert in_cluster <= {DATA, AGENTS, "kube-system", "mcp-auth"}
    assert 5432 not in {p["port"] for rule in egress for p in rule["ports"]}


def test_the_notify_secrets_are_referenced_never_inlined(prod):
    [container] = prod.one("Deployment", "mcp-notify", APPS)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    for name in ("NOTIFY_SIGNING_KEY", "NOTIFY_TARGET_SECRETS", "NOTIFY_SMTP_PASSWORD", "REDIS_URL"):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "mcp-notify-secrets", "key": name}
        assert "value" not in env[name]
    assert "hooks.slack.com" not in str(container)  # the Slack URL (a credential) is only in the Secret
    secret = prod.one("Secret", "mcp-notify-secrets", APPS)["stringData"]
    assert set(secret) == {"NOTIFY_SIGNING_KEY", "NOTIFY_TARGET_SECRETS", "NOTIFY_SMTP_PASSWORD", "REDIS_URL"}


def test_optional_secrets_are_left_out_when_the_stack_gives_none(dev):
    secret = dev.one("Secret", "mcp-notify-secrets", APPS)["stringData"]
    assert set(secret) == {"NOTIFY_SIGNING_KEY", "REDIS_URL"}  # signing key generated on dev


def test_a_bad_target_list_stops_the_program_naming_the_key():
    server = load_server("apps.notify")
    entry = {
        "module": "apps.notify",
        "resourceUrl": "http://n.mcp-apps.svc/mcp",
        "settings": {"NOTIFY_TARGETS": '{"x": {"kind": "fax"}}'},
    }
    app = parse({"issuer": "https://issuer.test", "jwksUrl": "https://issuer.test/jwks", "apps": {"n": entry}}).apps[
        "n"
    ]
    with pytest.raises(StackConfigError, match=r"mcpfleet:apps.n.settings.NOTIFY_TARGETS"):
        check("n", app, server)
