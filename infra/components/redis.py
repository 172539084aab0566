"""Redis for rate limits shared across replicas: one instance, no persistence (a window is a minute)."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra.components.backing import BackingService
from infra.components.k8s import child_opts, resources, secret_env
from infra.components.network import Reachable
from infra.config import DATA_NAMESPACE
from infra.images import image

REDIS_UID = 999  # the official image's redis user


class Redis(pulumi.ComponentResource):
    """Shared state for the apps that declare Redis: each is admitted by a policy of its own."""

    url: pulumi.Output[str]
    reachable: Reachable

    def __init__(self, name: str, provider: k8s.Provider, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcpfleet:index:Redis", name, None, opts)
        password = random.RandomPassword(
            f"{name}-password", length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
        ).result
        k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"name": "redis", "namespace": DATA_NAMESPACE},
            string_data={"REDIS_PASSWORD": password},
            opts=child_opts(self, provider),
        )
        probe = {
            "exec": {"command": ["sh", "-c", 'redis-cli -a "$REDIS_PASSWORD" --no-auth-warning ping']},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
        }
        self.service = BackingService(
            name="redis",
            component="rate-limit-store",
            image=image("redis"),
            uid=REDIS_UID,
            port=6379,
            args=["--requirepass", "$(REDIS_PASSWORD)", "--save", "", "--appendonly", "no"],
            env=[secret_env("REDIS_PASSWORD", "redis", "REDIS_PASSWORD")],
            probe=probe,
            liveness={"initialDelaySeconds": 10},
            resources=resources("50m", "64Mi", "500m", "256Mi"),
            data_path="/data",
        ).build(name, self, provider)
        self.reachable = Reachable("redis", DATA_NAMESPACE, 6379, "redis")
        self.url = pulumi.Output.secret(
            pulumi.Output.concat("redis://:", password, f"@redis.{DATA_NAMESPACE}.svc:6379/0")
        )
        self.register_outputs({})
