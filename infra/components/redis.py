"""Redis for the apps' shared state: one instance, no persistence, bounded memory that is never evicted, and a user
per app that may touch only its own keys (`infra/redis_acl.py`, the one source every target renders)."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra import redis_acl
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

    def __init__(self, name: str, provider: k8s.Provider, users: list[str], opts: pulumi.ResourceOptions | None = None):
        """`users`: the apps that use Redis, each given its own user, password and key prefix."""
        super().__init__("mcpfleet:index:Redis", name, None, opts)

        def new_password(suffix: str) -> pulumi.Output[str]:
            return random.RandomPassword(
                f"{name}-{suffix}", length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
            ).result

        password = new_password("password")  # the default user's: probes and operators
        self._passwords = {user: new_password(f"{user}-password") for user in users}
        k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"name": "redis", "namespace": DATA_NAMESPACE},
            string_data={
                "REDIS_PASSWORD": password,
                **{redis_acl.password_variable(user): value for user, value in self._passwords.items()},
            },
            opts=child_opts(self, provider),
        )
        env = [secret_env(variable, "redis", variable) for variable in ["REDIS_PASSWORD", *map(
            redis_acl.password_variable, sorted(users))]]  # fmt: skip
        refs = {user: f"$({redis_acl.password_variable(user)})" for user in users}
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
            port=redis_acl.PORT,
            args=redis_acl.server_args("$(REDIS_PASSWORD)", users, refs),
            env=env,
            probe=probe,
            liveness={"initialDelaySeconds": 10},
            resources=resources("50m", "64Mi", "500m", f"{redis_acl.REDIS_MEMORY_LIMIT_MIB}Mi"),
            data_path="/data",
        ).build(name, self, provider)
        self.reachable = Reachable("redis", DATA_NAMESPACE, redis_acl.PORT, "redis")
        self.register_outputs({})

    def url_for(self, user: str) -> pulumi.Output[str]:
        """The URL an app connects with: its own user and password."""
        return pulumi.Output.secret(
            self._passwords[user].apply(lambda password: redis_acl.url(user, password, f"redis.{DATA_NAMESPACE}.svc"))
        )
