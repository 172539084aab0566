"""The Pulumi program under mocks: inventory, defaults, prod overrides, outputs, bad config."""

from __future__ import annotations

import json

import pytest
import yaml

from infra.config import StackConfigError, parse
from infra.mocked import kubernetes_objects
from tests.infra.conftest import run_program

APPS, DATA, OBS, AGENTS = "mcp-apps", "mcp-data", "mcp-observability", "mcp-node-agents"


def test_inventory(stack):
    components = stack.components()
    for component in ("Cluster", "Baseline", "Postgres", "Redis", "Observability", "McpApp"):
        assert f"mcpfleet:index:{component}" in components
    # kind's ingress controller (infra.components.dev_edge) and the local authorization server: dev only
    edge = {"mcp-ingress", "mcp-auth"} if stack.stack == "dev" else set()
    assert {n["metadata"]["name"] for n in stack.of_kind("Namespace")} == {APPS, DATA, OBS, AGENTS} | edge
    for kind in (
        "ServiceAccount",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "Secret",
    ):
        assert stack.one(kind, "mcp-db" if kind != "Secret" else "mcp-db-secrets", APPS)
    for kind, name in (
        ("StatefulSet", "prometheus"),
        ("Deployment", "alertmanager"),
        ("Deployment", "grafana"),
        ("StatefulSet", "loki"),
        ("Deployment", "kube-state-metrics"),
    ):
        assert stack.one(kind, name, OBS)
        assert stack.one("Service", name, OBS)
    assert stack.one("DaemonSet", "otel-collector", AGENTS) and stack.one("Service", "otel-collector", AGENTS)
    assert stack.one("Deployment", "redis", DATA)
    assert [j["metadata"]["name"].startswith("postgres-roles-") for j in stack.of_kind("Job", DATA)] == [True]
    for namespace in (APPS, DATA, OBS, AGENTS):
        assert stack.one("NetworkPolicy", "default-deny", namespace)["spec"] == {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
        }


def test_dev_builds_a_kind_cluster_and_runs_postgres_in_it(dev):
    commands = [r["inputs"]["create"] for r in dev.resources if r["type"] == "command:local:Command"]
    assert any("| kind create cluster --name mcpfleet-dev --config=-" in c for c in commands)
    assert any("docker build" in c and "kind load docker-image" in c for c in commands)
    assert dev.one("StatefulSet", "postgres", DATA)["spec"]["volumeClaimTemplates"][0]["spec"]["resources"] == {
        "requests": {"storage": "2Gi"}
    }
    image = dev.one("Deployment", "mcp-db", APPS)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith("mcpfleet/apps:dev-")


def test_prod_uses_the_existing_cluster_registry_image_and_external_postgres(prod):
    assert not [r for r in prod.resources if r["type"] == "command:local:Command"]
    assert not prod.of_kind("StatefulSet", DATA)
    image = prod.one("Deployment", "mcp-db", APPS)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "ghcr.io/mcpfleet/apps:0.1.0"
    provider = next(r for r in prod.resources if r["type"] == "pulumi:providers:kubernetes")
    assert provider["inputs"]["context"] == "prod-eu-1"


def test_app_deployment_has_the_seed_defaults(dev):
    deployment = dev.one("Deployment", "mcp-db", APPS)
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }
    live, ready = container["livenessProbe"], container["readinessProbe"]
    assert (live["httpGet"]["path"], live["initialDelaySeconds"], live["periodSeconds"]) == ("/health", 30, 10)
    assert (ready["httpGet"]["path"], ready["initialDelaySeconds"], ready["periodSeconds"]) == ("/ready", 5, 5)
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert dev.one("ServiceAccount", "mcp-db", APPS)["automountServiceAccountToken"] is False
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9464",  # metrics on their own port, which only Prometheus is admitted to
        "prometheus.io/path": "/metrics",
    }
    assert {"name": "MCP_METRICS_PORT", "value": "9464"} in container["env"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8080, "metrics": 9464}
    assert pod["terminationGracePeriodSeconds"] > 25 + container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert dev.one("PodDisruptionBudget", "mcp-db", APPS)["spec"]["maxUnavailable"] == 1
    hpa = dev.one("HorizontalPodAutoscaler", "mcp-db", APPS)["spec"]
    # the seed's 3 replicas; the dev stack caps scaling at 4 so every pool fits its database's connections
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 4)


def test_secrets_reach_the_pod_only_through_secret_refs(stack):
    [container] = stack.one("Deployment", "mcp-db", APPS)["spec"]["template"]["spec"]["containers"]
    literal = {e["name"] for e in container["env"] if "value" in e}
    referenced = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
    assert {"DB_READ_URL", "DB_WRITE_URL", "REDIS_URL"} <= set(referenced)
    assert set(referenced.values()) == {"mcp-db-secrets"}
    assert not literal & {"DB_READ_URL", "DB_WRITE_URL", "REDIS_URL", "MCP_JWT_SECRET"}
    secret = stack.one("Secret", "mcp-db-secrets", APPS)["stringData"]
    assert set(secret) == set(referenced)  # the app's Secret holds only its own values
    assert secret["DB_READ_URL"].startswith("postgresql://mcp_db_reader:")
    assert secret["DB_WRITE_URL"].startswith("postgresql://mcp_db_writer:")


def test_prod_overrides_the_defaults(prod):
    spec = prod.one("Deployment", "mcp-db", APPS)["spec"]
    [container] = spec["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert spec["replicas"] == 4
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert prod.one("HorizontalPodAutoscaler", "mcp-db", APPS)["spec"]["maxReplicas"] == 20
    assert env["RATE_LIMIT_PER_MINUTE"] == "300"
    assert env["MCP_JWKS_URL"] == "https://login.example.com/.well-known/jwks.json"
    assert (
        "MCP_JWT_SECRET" not in env and "MCP_JWT_SECRET" not in prod.one("Secret", "mcp-db-secrets", APPS)["stringData"]
    )
    assert prod.one("Secret", "mcp-db-secrets", APPS)["stringData"]["DB_READ_URL"].endswith(
        "@db.internal:5432/mcpfleet"
    )
    # The JWKS fetch goes by name through the db server's own port on the egress proxy, never to 443 anywhere.
    egress = prod.one("NetworkPolicy", "mcp-db", APPS)["spec"]["egress"]
    [container] = prod.one("Deployment", "mcp-db", APPS)["spec"]["template"]["spec"]["containers"]
    proxy = next(e["value"] for e in container["env"] if e["name"] == "MCP_EGRESS_PROXY")
    port = int(proxy.rsplit(":", 1)[1])
    assert proxy == f"http://egress-proxy.mcp-data.svc:{port}"
    to_proxy = [r for r in egress if r["ports"] == [{"protocol": "TCP", "port": port}]]
    assert [r["to"][0]["podSelector"]["matchLabels"] for r in to_proxy] == [{"app.kubernetes.io/name": "egress-proxy"}]
    assert 443 not in {p["port"] for rule in egress for p in rule.get("ports", [])}


def test_stack_outputs(stack):
    outputs = stack.outputs
    domain = {"dev": "https://{}.localhost/mcp", "prod": "https://{}.example.com/mcp"}[stack.stack]  # both routed
    assert outputs["app_urls"]["mcp-db"] == domain.format("mcp-db")
    assert outputs["app_urls"]["mcp-files"] == domain.format("mcp-files")
    assert outputs["grafana_url"] == "http://grafana.mcp-observability.svc:3000"
    assert outputs["port_forward"]["mcp-db"] == "kubectl -n mcp-apps port-forward svc/mcp-db 8080:80"
    assert outputs["issuer"] == {"dev": "https://auth.localhost", "prod": "https://login.example.com"}[stack.stack]
    if stack.stack == "dev":  # the dev logins of the local authorization server, secret
        assert set(outputs["dev_logins"]) == {"reader", "writer"}
    assert "jwt_secret" not in outputs and "dev_token_command" not in outputs  # no shared secret to hand out


@pytest.mark.parametrize(
    ("values", "key"),
    [
        (
            {"apps": {"mcp-db": {"module": "apps.db", "resourceUrl": "http://mcp-db.mcp-apps.svc/mcp", "replicas": 0}}},
            "mcpfleet:apps.mcp-db.replicas",
        ),
        (
            {"apps": {"mcp-db": {"module": "apps.db", "resourceUrl": "not a url"}}},
            "mcpfleet:apps.mcp-db.resourceUrl",
        ),
        ({"cluster": {"mode": "existing", "image": "ghcr.io/x/apps:latest"}}, "mcpfleet:cluster"),
        ({"cluster": {"mode": "cloud"}}, "mcpfleet:cluster.mode"),
        ({"postgres": {"mode": "external"}}, "mcpfleet:postgres"),
        ({"issuer": "nope"}, "mcpfleet"),
        ({"surprise": 1}, "mcpfleet:surprise"),
    ],
)
def test_invalid_config_names_the_key(values, key):
    base = {
        "issuer": "https://issuer.test",
        "jwksUrl": "https://issuer.test/jwks",
        "apps": {"mcp-db": {"module": "apps.db", "resourceUrl": "http://mcp-db.mcp-apps.svc/mcp"}},
    }
    with pytest.raises(StackConfigError) as raised:
        parse({**base, **values})
    assert key in str(raised.value)


def test_invalid_config_stops_the_program_with_the_key_named():
    result = run_program("dev", {"mcpfleet:postgres": {"mode": "statefulset", "port": "not-a-port"}})
    assert result.returncode != 0
    assert "mcpfleet:postgres.port" in result.stderr


def test_the_prod_stack_file_lists_every_secret_the_program_reads():
    """The comment at the top of Pulumi.prod.yaml is what a new operator follows before the first `pulumi up`."""
    import re

    from infra.config import REPO
    from infra.mocked import MOCK_SECRETS

    listed = set(re.findall(r"pulumi config set --secret mcpfleet:([\w.-]+)", (REPO / "Pulumi.prod.yaml").read_text()))
    assert listed == set(MOCK_SECRETS["prod"])


def test_every_prod_app_runs_the_seeds_three_replicas_or_more_with_a_disruption_budget(prod):
    """The seed's default (3 replicas, rolling 1/1, a PDB): three prod apps ran 2 with no reason given."""
    deployments = prod.of_kind("Deployment", APPS)
    assert {d["metadata"]["name"] for d in deployments} == {"mcp-db", "mcp-files", "mcp-oncall", "mcp-notify"}
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        assert deployment["spec"]["replicas"] >= 3, name
        assert prod.one("PodDisruptionBudget", name, APPS)["spec"]["maxUnavailable"] == 1, name


def test_redis_gives_each_app_its_own_user_and_keeps_state_unevicted(stack):
    """infra/redis_acl.py is the one source: the cluster's Redis runs its arguments, as compose.yaml does."""
    from infra import redis_acl

    container = stack.one("Deployment", "redis", DATA)["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[: len(redis_acl.SERVER_ARGS)] == redis_acl.SERVER_ARGS
    assert container["resources"]["limits"]["memory"] == f"{redis_acl.REDIS_MEMORY_LIMIT_MIB}Mi"
    users = sorted(  # the apps given a Redis URL
        d["metadata"]["name"]
        for d in stack.of_kind("Deployment", APPS)
        if any(e["name"] == "REDIS_URL" for e in d["spec"]["template"]["spec"]["containers"][0]["env"])
    )
    assert users and [args[i + 1] for i, arg in enumerate(args) if arg == "--user"] == users
    for user in users:
        variable = redis_acl.password_variable(user)
        assert redis_acl.user_args(user, f"$({variable})") == args[args.index(user) - 1 :][:9]
        secret_keys = {e["name"] for e in container["env"]}
        assert variable in secret_keys
        app_env = stack.one("Deployment", user, APPS)["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {"name": "REDIS_KEY_PREFIX", "value": redis_acl.key_prefix(user)} in app_env


@pytest.mark.parametrize("stack_name", ["dev", "prod", "serverless"])
def test_no_stack_has_a_shared_token_secret(stack_name):
    """Every server of every stack verifies tokens by the issuer's public keys: no HS secret is rendered anywhere
    (no environment, Secret, Lambda or Cloud Run variable, output or resource input), and the pinned algorithms
    are asymmetric only."""
    result = run_program(stack_name)
    assert result.returncode == 0, result.stderr[-2000:]
    rendered = result.stdout
    assert "MCP_JWT_SECRET" not in rendered and "jwtSecret" not in rendered and "jwt_secret" not in rendered
    data = json.loads(rendered)
    variables = [
        env
        for o in kubernetes_objects(data["resources"])
        for c in ((o.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers", [])
        for env in c.get("env", [])
    ]
    algorithms = {e["value"] for e in variables if e["name"] == "MCP_JWT_ALGORITHMS"}
    keys = {e["value"] for e in variables if e["name"] == "MCP_JWKS_URL"}
    if stack_name != "serverless":
        assert algorithms == {"RS256 ES256"} and len(keys) == 1
    lambdas = [r["inputs"] for r in data["resources"] if r["type"] == "aws:lambda/function:Function"]
    assert bool(lambdas) == (stack_name == "serverless")
    for function in lambdas:
        env = function["environment"]["value"]["variables"]
        assert env["MCP_JWKS_URL"].startswith("https://") and env["MCP_JWT_ALGORITHMS"] == "RS256 ES256"


def test_the_one_machine_stack_has_no_shared_token_secret_either():
    from onebox.compose import render

    rendered = render("dev")
    assert not any("MCP_JWT_SECRET" in text for text in rendered.values())
    services = yaml.safe_load(rendered["compose.yaml"])["services"]
    apps = [s for s in services.values() if "MCP_RESOURCE_URL" in (s.get("environment") or {})]
    assert apps and all(s["environment"]["MCP_JWKS_URL"] == "http://authz.mcp-auth.svc:9400/jwks" for s in apps)
    assert "authz" in services
