"""A focused server on AWS Lambda: the same container image, run by the Lambda runtime client
(`apps.lambda_main`: its lifespan entered once per sandbox), behind an API Gateway HTTP API.

The HTTP API routes exactly the two paths an Ingress would (`POST /mcp` and the RFC 9728 metadata), so
probes and metrics are not public. A function URL would change the URL tokens name as their audience; the
API's own URL (or a custom domain) is the resourceUrl. One sandbox serves one request at a time, so
`maxReplicas` is the function's reserved concurrency (its most sandboxes), and the pools hold one connection
each. The function runs in the VPC's subnets and security groups (the database, Redis and outside hosts
under the VPC's rules). Secret values are environment variables of the function, encrypted at rest by
Lambda's KMS key and kept secret in Pulumi's state; an environment over Lambda's 4 KB is refused by name.

Each deployment publishes a version and the API calls it through the `live` alias: SnapStart (on unless the
stack's `serverless.aws.snapStart` is false) applies to published versions only. The image's runtime client
(awslambdaric) already speaks SnapStart's `/restore/next`, and the kit opens the app after the restore
(`apps.kit.run.serverless`).
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from alerts.serverless import SATURATED, SERVER_ERROR_RATE, SERVER_ERRORS, ServerlessAlert
from apps.kit import LAMBDA_HANDLER, FocusedServer
from infra.components.route import routed_paths
from infra.components.serverless import ServerlessPlatform, app_secret_values, serverless_wiring
from infra.config import AppConfig

ASSUME_LAMBDA = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)
VPC_ACCESS_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
ENVIRONMENT_LIMIT_BYTES = 4096  # Lambda's limit on a function's environment: every name and value together


class LambdaApp(pulumi.ComponentResource):
    url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        app: AppConfig,
        server: FocusedServer[Any, Any],
        platform: ServerlessPlatform,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("mcpfleet:index:LambdaApp", name, None, opts)
        aws_config = platform.stack.serverless.aws
        assert aws_config is not None  # StackConfig refuses a lambda app without it
        child = pulumi.ResourceOptions(parent=self)
        wired = serverless_wiring(name, app, server, platform.stack)
        role = aws.iam.Role(f"{name}-role", assume_role_policy=ASSUME_LAMBDA, opts=child)
        aws.iam.RolePolicyAttachment(f"{name}-vpc", role=role.name, policy_arn=VPC_ACCESS_POLICY, opts=child)
        variables: dict[str, pulumi.Input[str]] = {k: v for k, v in wired.env.items() if k not in ("PORT", "HOST")}
        variables |= {"MCP_SERVER": app.module}
        variables |= app_secret_values(name, app, server, platform)
        function = aws.lambda_.Function(
            f"{name}-function",
            name=name,
            package_type="Image",
            image_uri=platform.image,
            image_config={"commands": list(LAMBDA_HANDLER)},
            role=role.arn,
            memory_size=max(128, app.resources.memory_limit_mib),  # Lambda's smallest size
            timeout=60,
            reserved_concurrent_executions=app.max_replicas,
            environment={"variables": pulumi.Output.secret(variables).apply(within_limit)},
            vpc_config={"subnet_ids": aws_config.subnet_ids, "security_group_ids": aws_config.security_group_ids},
            publish=True,
            snap_start={"apply_on": "PublishedVersions"} if aws_config.snap_start else None,
            region=aws_config.region,
            opts=child,
        )
        live = aws.lambda_.Alias(
            f"{name}-live",
            name="live",
            function_name=function.name,
            function_version=function.version,
            region=aws_config.region,
            opts=child,
        )
        api = aws.apigatewayv2.Api(f"{name}-api", name=name, protocol_type="HTTP", region=aws_config.region, opts=child)
        integration = aws.apigatewayv2.Integration(
            f"{name}-integration",
            api_id=api.id,
            integration_type="AWS_PROXY",
            integration_uri=live.invoke_arn,
            payload_format_version="2.0",
            timeout_milliseconds=30_000,
            region=aws_config.region,
            opts=child,
        )
        for index, route in enumerate(routes(str(app.resource_url), server.pages)):
            aws.apigatewayv2.Route(
                f"{name}-route-{route.split()[0].lower()}" if index < 2 else f"{name}-route-page-{index - 1}",
                api_id=api.id,
                route_key=route,
                target=integration.id.apply(lambda integration_id: f"integrations/{integration_id}"),
                region=aws_config.region,
                opts=child,
            )
        aws.apigatewayv2.Stage(
            f"{name}-stage", api_id=api.id, name="$default", auto_deploy=True, region=aws_config.region, opts=child
        )
        aws.lambda_.Permission(
            f"{name}-invoke",
            action="lambda:InvokeFunction",
            function=function.name,
            qualifier=live.name,
            principal="apigateway.amazonaws.com",
            source_arn=api.execution_arn.apply(lambda arn: f"{arn}/*/*"),
            region=aws_config.region,
            opts=child,
        )
        self._alarms(name, app, api, aws_config.region, aws_config.alarm_topic_arn)
        self.url = pulumi.Output.from_input(str(app.resource_url))
        self.register_outputs({"url": self.url, "api_endpoint": api.api_endpoint})

    def _alarms(self, name: str, app: AppConfig, api: Any, region: str, topic: str | None) -> None:
        """CloudWatch's view (`alerts/serverless.py`): 5xx from the HTTP API and failed invocations; throttles,
        which mean every sandbox the reserved concurrency allows is busy."""
        per_minute = SERVER_ERROR_RATE * 60
        api_5xx = {"namespace": "AWS/ApiGateway", "metric_name": "5xx", "dimensions": {"ApiId": api.id}}
        errors = {"namespace": "AWS/Lambda", "metric_name": "Errors", "dimensions": {"FunctionName": name}}
        throttles = {"namespace": "AWS/Lambda", "metric_name": "Throttles", "dimensions": {"FunctionName": name}}
        _alarm(name, SERVER_ERRORS, api_5xx, per_minute, region, topic, self)
        _alarm(name, SERVER_ERRORS, errors, per_minute, region, topic, self)
        _alarm(name, SATURATED, throttles, 0, region, topic, self)


def _alarm(
    name: str,
    alert: ServerlessAlert,
    metric: dict[str, Any],
    threshold: float,
    region: str,
    topic: str | None,
    parent: pulumi.Resource,
) -> None:
    aws.cloudwatch.MetricAlarm(
        f"{name}-{alert.name}-{metric['metric_name'].lower()}",
        alarm_description=alert.description(name),
        comparison_operator="GreaterThanThreshold",
        threshold=threshold,
        period=60,
        evaluation_periods=alert.for_seconds // 60,
        datapoints_to_alarm=alert.for_seconds // 60,
        statistic="Sum",
        treat_missing_data="notBreaching",  # no traffic is not an error
        alarm_actions=[topic] if topic else [],
        ok_actions=[topic] if topic else [],
        region=region,
        opts=pulumi.ResourceOptions(parent=parent),
        **metric,
    )  # fmt: skip


def within_limit(variables: dict[str, Any]) -> dict[str, Any]:
    """The function's environment (its values resolved), refused here when Lambda would refuse it: this names
    the largest variables (AWS's error names none) before the function changes; values are never shown."""
    size = sum(len(name.encode()) + len(value.encode()) for name, value in variables.items())
    if size > ENVIRONMENT_LIMIT_BYTES:
        largest = sorted(variables, key=lambda name: -len(variables[name].encode()))[:3]
        raise ValueError(
            f"the function's environment is {size} bytes; Lambda allows {ENVIRONMENT_LIMIT_BYTES} "
            f"(largest: {', '.join(largest)})"
        )
    return variables


def routes(resource_url: str, pages: tuple[str, ...] = ()) -> list[str]:
    """The HTTP API's routes: the paths an Ingress routes (`routed_paths`), POST to the MCP endpoint, GET for its
    RFC 9728 metadata, and GET and POST for each page the server declares (a connect page), nothing else."""
    endpoint, metadata, *declared = routed_paths(resource_url, pages)
    return [
        f"POST {endpoint}",
        f"GET {metadata}",
        *(f"{method} {page}" for page in declared for method in ("GET", "POST")),
    ]
