"""The policy pack's checks pass on both stacks and fail, with the right message, on bad objects."""

from __future__ import annotations

import copy

import pytest

from infra.policy.checks import check_resource, check_stack

DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def test_both_stacks_pass_every_policy(stack):
    objects = [(r["type"], r["inputs"]) for r in stack.resources if r["type"].startswith("kubernetes:")]
    assert [p for t, props in objects for p in check_resource(t, props)] == []
    assert check_stack(objects) == []


@pytest.fixture
def app(dev):
    return copy.deepcopy(dev.one("Deployment", "mcp-db", "mcp-apps"))


def container(manifest):
    return manifest["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda c: c["resources"].pop("limits"), "missing cpu limit"),
        (lambda c: c["resources"]["requests"].pop("memory"), "missing memory request"),
        (lambda c: c.pop("readinessProbe"), "missing readinessProbe"),
        (lambda c: c.pop("livenessProbe"), "missing livenessProbe"),
        (lambda c: c.update(image="ghcr.io/mcpfleet/apps:latest"), "uses :latest"),
        (lambda c: c.update(image="ghcr.io/mcpfleet/apps"), "has no tag"),
        (lambda c: c["securityContext"].update(runAsNonRoot=False), "must run as non-root"),
        (lambda c: c["securityContext"].update(readOnlyRootFilesystem=False), "must be read-only"),
        (lambda c: c["env"].append({"name": "DB_PASSWORD", "value": "hunter2"}), "env DB_PASSWORD looks like a secret"),
        (
            lambda c: c["env"].append({"name": "DSN", "value": "postgresql://app:pw@db/app"}),
            "env DSN looks like a secret",
        ),
    ],
)
def test_bad_workloads_are_refused_with_the_reason(app, break_it, message):
    assert check_resource(DEPLOYMENT, app) == []
    break_it(container(app))
    problems = check_resource(DEPLOYMENT, app)
    assert problems and any(message in p for p in problems), problems
    assert all(p.startswith("Deployment mcp-db container mcp-db:") for p in problems)


def test_pinned_digest_is_accepted(app):
    container(app)["image"] = "ghcr.io/mcpfleet/apps@sha256:" + "a" * 64
    assert check_resource(DEPLOYMENT, app) == []


def test_exemption_needs_an_explicit_reason(app):
    container(app)["securityContext"]["runAsNonRoot"] = False
    app["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = False
    app["spec"]["template"]["metadata"]["annotations"]["mcpfleet.io/policy-exempt"] = "non-root:"
    assert any("non-root" in p for p in check_resource(DEPLOYMENT, app))
    app["spec"]["template"]["metadata"]["annotations"]["mcpfleet.io/policy-exempt"] = "non-root: reads node logs"
    assert check_resource(DEPLOYMENT, app) == []


def test_load_balancer_only_when_allowed():
    service = {"metadata": {"name": "grafana"}, "spec": {"type": "LoadBalancer", "selector": {"a": "b"}}}
    assert check_resource("kubernetes:core/v1:Service", service) == [
        "Service grafana: LoadBalancer Services are not allowed (set allowLoadBalancer to permit)"
    ]
    assert check_resource("kubernetes:core/v1:Service", service, allow_load_balancer=True) == []


def test_app_without_pdb_or_own_network_policy_is_refused(dev):
    objects = [(r["type"], r["inputs"]) for r in dev.resources if r["type"].startswith("kubernetes:")]
    without_pdb = [(t, p) for t, p in objects if not t.endswith(":PodDisruptionBudget")]
    apps = sorted(d["metadata"]["name"] for d in dev.of_kind("Deployment", "mcp-apps"))
    assert sorted(check_stack(without_pdb)) == [
        f"Deployment {app}: no PodDisruptionBudget selects its pods" for app in apps
    ]
    without_policy = [
        (t, p) for t, p in objects if not (t.endswith(":NetworkPolicy") and p["metadata"]["name"] == "mcp-db")
    ]
    assert check_stack(without_policy) == ["Deployment mcp-db: no NetworkPolicy selects its pods specifically"]


def test_only_the_node_agents_namespace_is_privileged(stack):
    levels = {
        n["metadata"]["name"]: n["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        for n in stack.of_kind("Namespace")
    }
    assert levels == {
        "mcp-apps": "restricted",
        "mcp-data": "restricted",
        "mcp-observability": "restricted",
        "mcp-node-agents": "privileged",
    } | ({"mcp-ingress": "restricted", "mcp-auth": "restricted"} if stack.stack == "dev" else {})  # no hostPort
    agents = [
        w["metadata"]["name"]
        for k in ("Deployment", "StatefulSet", "DaemonSet")
        for w in stack.of_kind(k, "mcp-node-agents")
    ]
    assert agents == ["otel-collector"]


def test_every_observability_backend_meets_the_restricted_profile(stack):
    from infra.policy.checks import restricted_profile

    for kind in ("Deployment", "StatefulSet"):
        for workload in stack.of_kind(kind, "mcp-observability"):
            assert restricted_profile(workload["spec"]["template"]) == [], workload["metadata"]["name"]


def test_the_collector_would_be_refused_in_a_restricted_namespace(dev):
    """The check can fail: moved into the observability namespace, the collector breaks the profile."""
    objects = [(r["type"], copy.deepcopy(r["inputs"])) for r in dev.resources if r["type"].startswith("kubernetes:")]
    for _, props in objects:
        if props.get("kind", "") == "DaemonSet" or props.get("metadata", {}).get("name") == "otel-collector":
            props["metadata"]["namespace"] = "mcp-observability"
    problems = check_stack(objects)
    assert any(
        "DaemonSet mcp-observability/otel-collector: Pod Security restricted: volume pod-logs" in p for p in problems
    )
    assert any("otel-collector: Pod Security restricted: container otel-collector: runAsNonRoot" in p for p in problems)
