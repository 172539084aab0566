"""A focused server on Cloud Run (v2): the same image and command as on the cluster.

Each secret value is a Secret Manager secret that only this app's service account may read. The service
scales from `minInstances` (0: to zero) to `maxReplicas`, `concurrency` requests per instance; a startup
probe on `/health` admits an instance, a liveness probe restarts a stuck one. All its traffic leaves through
the VPC (Direct VPC egress, `ALL_TRAFFIC`), so the database, Redis and any outside host are reached under the
VPC's firewall and NAT rules. Anyone may invoke it (`allUsers`): the app checks every token itself (OAuth 2.1
resource server), and a caller without a token gets the 401 that points to the authorization server, which
IAM's own check would hide.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_gcp as gcp

from alerts.names import PORT
from alerts.serverless import SATURATED, SERVER_ERROR_RATE, SERVER_ERRORS
from apps.kit import FocusedServer
from infra.components.serverless import ServerlessPlatform, app_secret_values, serverless_wiring
from infra.config import AppConfig


def _condition(title: str, filter_: str, threshold: float, seconds: int, aligner: str, reducer: str) -> dict[str, Any]:
    return {
        "display_name": title,
        "condition_threshold": {
            "filter": filter_,
            "comparison": "COMPARISON_GT",
            "threshold_value": threshold,
            "duration": f"{seconds}s",
            "aggregations": [
                {"alignment_period": "60s", "per_series_aligner": aligner, "cross_series_reducer": reducer}
            ],
        },
    }


def cloud_run_cpu(limit: str, concurrency: int) -> str:
    """Cloud Run's CPU: under one CPU only with one request at a time, so a concurrent instance gets at least 1."""
    cpus = float(limit[:-1]) / 1000 if limit.endswith("m") else float(limit)
    if concurrency > 1 and cpus < 1:
        return "1"
    return f"{cpus:g}"


class CloudRunApp(pulumi.ComponentResource):
    url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        app: AppConfig,
        server: FocusedServer[Any, Any],
        platform: ServerlessPlatform,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("mcpfleet:index:CloudRunApp", name, None, opts)
        gcp_config = platform.stack.serverless.gcp
        assert gcp_config is not None  # StackConfig refuses a cloudrun app without it
        child = pulumi.ResourceOptions(parent=self)
        wired = serverless_wiring(name, app, server, platform.stack)
        account = gcp.serviceaccount.Account(
            f"{name}-sa",
            account_id=f"mcpfleet-{name}"[:30],  # GCP asks for 6 to 30 characters
            display_name=f"mcpfleet {name}",
            opts=child,
            project=gcp_config.project,
        )
        member = account.email.apply(lambda email: f"serviceAccount:{email}")
        secret_env = []
        for variable, value in sorted(app_secret_values(name, app, server, platform).items()):
            secret_id = f"{name}-{variable.lower().replace('_', '-')}"
            secret = gcp.secretmanager.Secret(
                secret_id, secret_id=secret_id, replication={"auto": {}}, opts=child, project=gcp_config.project
            )
            version = gcp.secretmanager.SecretVersion(
                f"{secret_id}-version", secret=secret.id, secret_data=pulumi.Output.secret(value), opts=child
            )
            gcp.secretmanager.SecretIamMember(
                f"{secret_id}-reader",
                secret_id=secret.id,
                role="roles/secretmanager.secretAccessor",
                member=member,
                opts=child,
            )
            reference = {"secret": secret.secret_id, "version": version.version}
            secret_env.append({"name": variable, "value_source": {"secret_key_ref": reference}})
        limits = app.resources
        service = gcp.cloudrunv2.Service(
            f"{name}-service",
            name=name,
            location=gcp_config.region,
            ingress="INGRESS_TRAFFIC_ALL",
            deletion_protection=False,
            scaling={"min_instance_count": app.min_instances, "max_instance_count": app.max_replicas},
            template={
                "service_account": account.email,
                "max_instance_request_concurrency": app.concurrency,
                "timeout": "60s",
                "vpc_access": {
                    "egress": "ALL_TRAFFIC",
                    "network_interfaces": [{"network": gcp_config.network, "subnetwork": gcp_config.subnetwork}],
                },
                "containers": [
                    {
                        "image": platform.image,
                        "args": [app.module],
                        "ports": {"container_port": PORT, "name": "http1"},
                        "envs": [{"name": k, "value": v} for k, v in wired.env.items() if k != "PORT"] + secret_env,
                        "resources": {
                            "limits": {
                                "cpu": cloud_run_cpu(limits.cpu_limit, app.concurrency),
                                "memory": limits.memory_limit,
                            },
                            "cpu_idle": True,  # CPU only while requests are served: the kit needs none between
                            "startup_cpu_boost": True,
                        },
                        "startup_probe": {
                            "http_get": {"path": "/health", "port": PORT},
                            "period_seconds": 1,
                            "failure_threshold": 30,
                            "timeout_seconds": 1,
                        },
                        "liveness_probe": {
                            "http_get": {"path": "/health", "port": PORT},
                            "period_seconds": 10,
                            "failure_threshold": 3,
                            "timeout_seconds": 2,
                        },
                    }
                ],
            },
            opts=child,
            project=gcp_config.project,
        )
        gcp.cloudrunv2.ServiceIamMember(
            f"{name}-invoker",
            name=service.name,
            location=gcp_config.region,
            role="roles/run.invoker",
            member="allUsers",  # the app checks tokens itself (see the module's docstring)
            opts=child,
            project=gcp_config.project,
        )
        self._alerts(name, app, gcp_config.project, gcp_config.notification_channels)
        self.url = pulumi.Output.from_input(str(app.resource_url))
        self.register_outputs({"url": self.url, "service_uri": service.uri})

    def _alerts(self, name: str, app: AppConfig, project: str, channels: list[str]) -> None:
        """Cloud Monitoring's view of the service (`alerts/serverless.py`): 5xx answers, and instances at the most."""
        service = f'resource.type = "cloud_run_revision" AND resource.labels.service_name = "{name}"'
        conditions = {
            SERVER_ERRORS: _condition(
                "5xx answers per second",
                f'{service} AND metric.type = "run.googleapis.com/request_count" '
                'AND metric.labels.response_code_class = "5xx"',
                SERVER_ERROR_RATE,
                SERVER_ERRORS.for_seconds,
                "ALIGN_RATE",
                "REDUCE_SUM",
            ),
            SATURATED: _condition(
                "instances at maxReplicas",
                f'{service} AND metric.type = "run.googleapis.com/container/instance_count"',
                app.max_replicas - 0.5,  # at the most instances
                SATURATED.for_seconds,
                "ALIGN_MAX",
                "REDUCE_SUM",
            ),
        }
        for alert, condition in conditions.items():
            gcp.monitoring.AlertPolicy(
                f"{name}-{alert.name}",
                display_name=f"{alert.name} {name}",
                combiner="OR",
                conditions=[condition],
                documentation={"content": alert.description(name), "mime_type": "text/markdown"},
                notification_channels=channels,
                project=project,
                opts=pulumi.ResourceOptions(parent=self),
            )
