"""Serverless targets under Pulumi mocks (`Pulumi.serverless.yaml`): the same declaration becomes a Lambda
function behind an HTTP API or a Cloud Run service, with the serverless profile, push telemetry, pools sized
for one instance, secrets kept out of plain configuration, and nothing of it on the cluster; and what a
serverless target cannot give an app is refused before anything is created."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.components import serverless
from infra.config import StackConfigError, parse
from infra.fleet import load_server
from infra.mocked import MOCK_SECRETS, kubernetes_objects, stack_config
from tests.infra.conftest import Declared, run_program

APPS = "mcp-apps"
REPO = Path(__file__).resolve().parents[2]
SIGNING_KEY = MOCK_SECRETS["serverless"]["mcp-notify.signingKey"]


@pytest.fixture(scope="module")
def declared() -> Declared:
    result = run_program("serverless")
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout)
    return Declared("serverless", data["resources"], kubernetes_objects(data["resources"]), data["outputs"])


def inputs(stack: Declared, type_: str) -> list[dict[str, Any]]:
    return [r["inputs"] for r in stack.resources if r["type"] == type_]


def test_the_lambda_app_runs_the_same_image_behind_exactly_two_routes(declared):
    [function] = inputs(declared, "aws:lambda/function:Function")
    assert function["packageType"] == "Image"
    # Lambda runs ECR images of its own region only: the stack's image copied there, named by the copy's digest.
    assert re.fullmatch(r"\d{12}\.dkr\.ecr\.eu-west-1\.amazonaws\.com/mcpfleet/apps@sha256:[0-9a-f]{64}",
                        function["imageUri"]), function["imageUri"]  # fmt: skip
    [repository] = inputs(declared, "aws:ecr/repository:Repository")
    assert repository["region"] == function["region"] == "eu-west-1"
    assert repository["imageTagMutability"] == "IMMUTABLE" and repository["imageScanningConfiguration"]["scanOnPush"]
    [copy] = [c for c in inputs(declared, "command:local:Command") if "crane" in c["create"]]
    assert copy["create"].startswith("crane copy ghcr.io/mcpfleet/apps:0.1.0 123456789012.dkr.ecr.eu-west-1.")
    assert function["imageConfig"]["commands"] == ["awslambdaric", "apps.lambda_main.handler"]
    assert function["reservedConcurrentExecutions"] == 50  # maxReplicas: the most sandboxes
    env = function["environment"]["value"]["variables"]  # the whole map is a Pulumi secret
    assert env["MCP_SERVER"] == "apps.db" and env["MCP_SERVERLESS"] == "true"
    assert env["DB_POOL_MAX"] == "1"  # one request per sandbox: one connection per pool
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("https://otlp.internal.example.com:4318")
    assert "MCP_METRICS_PORT" not in env  # nothing scrapes a sandbox
    assert set(function["vpcConfig"]) == {"subnetIds", "securityGroupIds"}
    assert sorted(route["routeKey"] for route in inputs(declared, "aws:apigatewayv2/route:Route")) == [
        "GET /.well-known/oauth-protected-resource/mcp",
        "POST /mcp",
    ]
    [integration] = inputs(declared, "aws:apigatewayv2/integration:Integration")
    assert integration["payloadFormatVersion"] == "2.0" and integration["integrationType"] == "AWS_PROXY"
    [stage] = inputs(declared, "aws:apigatewayv2/stage:Stage")
    assert stage["name"] == "$default" and stage["autoDeploy"] is True
    [permission] = inputs(declared, "aws:lambda/permission:Permission")
    assert permission["principal"] == "apigateway.amazonaws.com"


def test_the_lambda_app_publishes_a_snapstart_version_and_the_api_calls_it_through_an_alias(declared):
    [function] = inputs(declared, "aws:lambda/function:Function")
    assert function["publish"] is True and function["snapStart"] == {"applyOn": "PublishedVersions"}
    [alias] = inputs(declared, "aws:lambda/alias:Alias")
    assert alias["functionVersion"] == "1" and alias["functionName"] == function["name"]
    [integration] = inputs(declared, "aws:apigatewayv2/integration:Integration")
    assert integration["integrationUri"].endswith(f":function:{function['name']}:live/invocations")
    [permission] = inputs(declared, "aws:lambda/permission:Permission")
    assert permission["qualifier"] == "live"  # the API may invoke the alias, not $LATEST


def test_the_cloud_run_app_scales_to_zero_reads_secrets_from_secret_manager_and_drains_within_notice(declared):
    [service] = inputs(declared, "gcp:cloudrunv2/service:Service")
    assert service["scaling"] == {"minInstanceCount": 0, "maxInstanceCount": 5}
    template = service["template"]
    assert template["maxInstanceRequestConcurrency"] == 20
    assert template["vpcAccess"]["egress"] == "ALL_TRAFFIC"
    [container] = template["containers"]
    assert container["args"] == ["apps.notify"] and container["image"].endswith("/mcpfleet/apps:0.1.0")
    assert container["resources"]["limits"]["cpu"] == "1"  # under one CPU, Cloud Run allows one request at once
    assert container["resources"]["cpuIdle"] is True
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    envs = {e["name"]: e for e in container["envs"]}
    assert envs["MCP_SERVERLESS"]["value"] == "true"
    assert int(envs["SHUTDOWN_GRACE_SECONDS"]["value"]) < 10  # Cloud Run kills 10 s after SIGTERM
    assert envs["MCP_MAX_CONCURRENT_REQUESTS"]["value"] == "20"
    for secret in ("NOTIFY_SIGNING_KEY", "REDIS_URL"):
        assert "valueSource" in envs[secret] and "value" not in envs[secret]
    assert SIGNING_KEY not in json.dumps(container)
    readers = inputs(declared, "gcp:secretmanager/secretIamMember:SecretIamMember")
    assert {r["role"] for r in readers} == {"roles/secretmanager.secretAccessor"} and len(readers) == 2
    [account] = inputs(declared, "gcp:serviceaccount/account:Account")
    assert account["accountId"] == "mcpfleet-mcp-notify" and 6 <= len(account["accountId"]) <= 30
    [invoker] = inputs(declared, "gcp:cloudrunv2/serviceIamMember:ServiceIamMember")
    assert (invoker["role"], invoker["member"]) == ("roles/run.invoker", "allUsers")  # the app checks tokens


def test_serverless_apps_have_nothing_on_the_cluster(declared):
    assert {d["metadata"]["name"] for d in declared.of_kind("Deployment", APPS)} == {"mcp-oncall"}
    assert {i["metadata"]["name"] for i in declared.of_kind("Ingress")} == {"mcp-oncall"}
    assert not [p for p in declared.of_kind("NetworkPolicy") if p["metadata"]["name"] in ("mcp-db", "mcp-notify")]
    assert declared.outputs["app_urls"]["mcp-db"] == "https://db.mcp.example.com/mcp"


def test_max_instances_times_pools_must_fit_the_database():
    postgres = {**stack_config("serverless")["mcpfleet:postgres"], "maxConnections": 100}
    result = run_program("serverless", {"mcpfleet:postgres": postgres})  # 50 sandboxes x 2 pools x 1, + reserved
    assert result.returncode != 0
    assert "mcpfleet:apps.mcp-db: 50 replicas x 2 pools x 1 = 100" in result.stderr


def stack_with(**app: Any) -> Any:
    values = {k.removeprefix("mcpfleet:"): v for k, v in stack_config("serverless").items()}
    values["apps"] = {"mcp-x": {"resourceUrl": "https://x.example.com/mcp", **app}}
    return parse(values)


@pytest.mark.parametrize(
    ("app", "needs_redis", "message"),
    [
        ({"module": "apps.oncall", "target": "cloudrun"}, True, "uses in-cluster services"),
        ({"module": "apps.notify", "target": "lambda"}, False, "set the secret mcpfleet:serverlessRedisUrl"),
        ({"module": "apps.db", "target": "lambda", "maxReplicas": 3}, False, "serverlessRedisUrl"),
    ],
)
def test_what_a_serverless_target_cannot_give_is_refused(app, needs_redis, message):
    stack = stack_with(**app)
    with pytest.raises(StackConfigError, match=message):
        serverless.check("mcp-x", stack.apps["mcp-x"], load_server(app["module"]), stack, has_redis=needs_redis)
    single = stack_with(**{**app, "maxReplicas": 1})
    if app["module"] == "apps.db":  # one sandbox: its limit is whole without Redis
        serverless.check("mcp-x", single.apps["mcp-x"], load_server("apps.db"), single, has_redis=False)


def test_the_stack_refuses_a_target_without_its_place_or_with_volumes():
    values = {k.removeprefix("mcpfleet:"): v for k, v in stack_config("serverless").items()}
    values["serverless"] = {"aws": values["serverless"]["aws"]}
    with pytest.raises(StackConfigError, match=r"targets cloudrun: set serverless\.gcp"):
        parse(values)
    with pytest.raises(StackConfigError, match="has no volumes"):
        stack_with(module="apps.files", target="cloudrun", volumes={"files": {"size": "1Gi"}})
    dev = run_program("dev", {"mcpfleet:apps": {"mcp-db": {"module": "apps.db", "target": "lambda",
                                                          "resourceUrl": "https://db.example.com/mcp"}},
                              "mcpfleet:serverless": stack_config("serverless")["mcpfleet:serverless"]})  # fmt: skip
    assert dev.returncode != 0 and "its database must be external" in dev.stderr


def test_the_dry_run_prints_every_resource_of_every_target_and_no_secret():
    result = subprocess.run(
        [sys.executable, "-m", "infra.dryrun", "--stack", "serverless"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert any(line.startswith("aws:lambda/function:Function") and "mcp-db" in line for line in lines)
    assert any(line.startswith("gcp:cloudrunv2/service:Service") and "location=europe-west1" in line for line in lines)
    assert any(line.startswith("kubernetes:apps/v1:Deployment") and "mcp-oncall" in line for line in lines)
    assert lines[-1].startswith(f"{len(lines) - 1} resources: ")
    for value in MOCK_SECRETS["serverless"].values():
        assert value not in result.stdout
    assert "None" not in result.stdout  # every value a cloud computes (an account's address) is there as it would be


def test_cloud_run_pulls_the_image_through_artifact_registry_in_its_region(declared):
    """Cloud Run pulls from Artifact Registry or Docker Hub, not ghcr.io: through a remote repository whose
    upstream is the image's registry, in the service's project and region."""
    [service] = inputs(declared, "gcp:cloudrunv2/service:Service")
    [container] = service["template"]["containers"]
    assert container["image"] == "europe-west1-docker.pkg.dev/mcpfleet-prod/mcpfleet-remote/mcpfleet/apps:0.1.0"
    [repository] = inputs(declared, "gcp:artifactregistry/repository:Repository")
    assert (repository["location"], repository["project"]) == (service["location"], "mcpfleet-prod")
    assert repository["mode"] == "REMOTE_REPOSITORY" and repository["format"] == "DOCKER"
    assert repository["remoteRepositoryConfig"]["dockerRepository"] == {"customRepository": {"uri": "https://ghcr.io"}}
    assert repository["repositoryId"] == "mcpfleet-remote"


def test_image_references_split_into_registry_and_path():
    from infra.components.registries import split_reference

    assert split_reference("ghcr.io/mcpfleet/apps:0.1.0") == ("ghcr.io", "mcpfleet/apps:0.1.0")
    assert split_reference("mcpfleet/apps:0.1.0") == ("docker.io", "mcpfleet/apps:0.1.0")
    assert split_reference("python:3.12") == ("docker.io", "library/python:3.12")
    assert split_reference("registry.local:5000/apps@sha256:" + "a" * 64)[0] == "registry.local:5000"


def test_each_serverless_app_alerts_from_what_its_platform_exports_with_a_runbook(declared):
    policies = {p["displayName"]: p for p in inputs(declared, "gcp:monitoring/alertPolicy:AlertPolicy")}
    assert set(policies) == {"McpServerlessServerErrors mcp-notify", "McpServerlessSaturated mcp-notify"}
    errors = policies["McpServerlessServerErrors mcp-notify"]["conditions"][0]["conditionThreshold"]
    assert 'response_code_class = "5xx"' in errors["filter"] and 'service_name = "mcp-notify"' in errors["filter"]
    saturated = policies["McpServerlessSaturated mcp-notify"]["conditions"][0]["conditionThreshold"]
    assert saturated["thresholdValue"] == 4.5  # maxReplicas 5: at the most instances
    alarms = {(a["namespace"], a["metricName"]): a for a in inputs(declared, "aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert set(alarms) == {("AWS/ApiGateway", "5xx"), ("AWS/Lambda", "Errors"), ("AWS/Lambda", "Throttles")}
    assert alarms[("AWS/Lambda", "Throttles")]["dimensions"] == {"FunctionName": "mcp-db"}
    assert all(a["treatMissingData"] == "notBreaching" for a in alarms.values())  # no traffic is no error
    for text in [p["documentation"]["content"] for p in policies.values()] + [
        a["alarmDescription"] for a in alarms.values()
    ]:
        page = text.rsplit("/runbooks/", 1)[1]
        assert (REPO / "runbooks" / page).is_file(), page


def test_the_program_refuses_a_lambda_environment_over_lambdas_limit():
    apps = stack_config("serverless")["mcpfleet:apps"]
    schema = "s" * 4200  # one setting too long for Lambda's 4 KB environment (and for a schema name)
    bloated = apps | {"mcp-db": apps["mcp-db"] | {"settings": {"DB_SCHEMA": schema}}}
    result = run_program("serverless", overrides={"mcpfleet:apps": bloated})
    assert result.returncode != 0
    assert "Lambda allows 4096 (largest: DB_SCHEMA" in result.stderr and schema not in result.stderr
