"""Postgres: a StatefulSet (official image) or an external managed instance; either way a Job
applies the same SQL files the tests apply, and scoped DSNs are handed to the apps."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from apps.db.apply_schema import ROLES, SQL_DIR
from infra.components.backing import BackingService
from infra.components.k8s import (
    child_opts,
    config_hash,
    container_security,
    labels,
    pod_security,
    resources,
    secret_env,
)
from infra.components.network import Reachable, tcp
from infra.config import DATA_NAMESPACE, PostgresConfig
from infra.images import image

SQL_FILES = {path.name: path.read_text() for path in sorted(SQL_DIR.glob("*.sql"))}
POSTGRES_UID = 70  # the official alpine image's postgres user


class Postgres(pulumi.ComponentResource):
    """The database, its least-privilege login roles, and how an app that declares a role reaches it."""

    host: str
    reachable: Reachable | None  # in-cluster; None for an external instance (reached by CIDR)

    def __init__(
        self,
        name: str,
        config: PostgresConfig,
        apps_image: pulumi.Input[str],
        provider: k8s.Provider,
        admin_password: pulumi.Input[str] | None = None,
        external_admin_url: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("mcpfleet:index:Postgres", name, None, opts)
        port, db = config.port, config.database
        self.config = config
        if config.mode == "external":
            self.host, self.reachable = config.host or "", None
        else:
            self.reachable = Reachable("postgres", DATA_NAMESPACE, port, "postgresql")
            self.host = self.reachable.host

        def password(purpose: str) -> pulumi.Output[str]:
            return random.RandomPassword(
                f"{name}-{purpose}", length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
            ).result

        self.passwords = {role: password(f"{role}-password") for role in ROLES}
        if config.mode == "statefulset":
            admin_password = admin_password or password("admin-password")
            admin_url = pulumi.Output.concat("postgresql://postgres:", admin_password, f"@{self.host}:{port}/{db}")
            self._statefulset(name, config, provider, admin_password)
        else:
            if external_admin_url is None:
                raise ValueError("postgres mode external needs the secret postgresAdminUrl")
            admin_url = pulumi.Output.secret(external_admin_url)

        roles_secret = k8s.core.v1.Secret(
            f"{name}-roles-secret",
            metadata={"name": "postgres-roles", "namespace": DATA_NAMESPACE},
            string_data={
                "DATABASE_ADMIN_URL": admin_url,
                **{env: self.passwords[role] for role, (_, env) in ROLES.items()},
            },
            opts=child_opts(self, provider),
        )
        sql = k8s.core.v1.ConfigMap(
            f"{name}-sql",
            metadata={"name": "postgres-sql", "namespace": DATA_NAMESPACE},
            data=SQL_FILES,
            opts=child_opts(self, provider),
        )
        job_labels = labels("postgres-roles", "database-roles")
        digest = config_hash(*SQL_FILES.values())[:8]
        k8s.batch.v1.Job(
            f"{name}-roles",
            metadata={"name": f"postgres-roles-{digest}", "namespace": DATA_NAMESPACE, "labels": job_labels},
            spec={
                "backoffLimit": 10,
                "template": {
                    "metadata": {"labels": job_labels},
                    "spec": {
                        "restartPolicy": "OnFailure",
                        "automountServiceAccountToken": False,
                        "securityContext": pod_security(10001),
                        "containers": [
                            {
                                "name": "apply",
                                "image": apps_image,
                                "args": ["apps.db.apply_schema"],
                                "env": [
                                    secret_env(k, "postgres-roles", k)
                                    for k in ("DATABASE_ADMIN_URL", *(env for _, env in ROLES.values()))
                                ]
                                + [{"name": "MCPFLEET_SQL_DIR", "value": "/sql"}],
                                "volumeMounts": [{"name": "sql", "mountPath": "/sql", "readOnly": True}],
                                "securityContext": container_security(),
                                "resources": resources("50m", "64Mi", "500m", "256Mi"),
                            }
                        ],
                        "volumes": [{"name": "sql", "configMap": {"name": "postgres-sql"}}],
                    },
                },
            },
            opts=child_opts(self, provider, depends_on=[roles_secret, sql], delete_before_replace=True),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-roles-egress",
            metadata={"name": "postgres-roles-egress", "namespace": DATA_NAMESPACE},
            spec={
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "postgres-roles"}},
                "policyTypes": ["Egress"],
                "egress": [self.egress()],  # the database alone: its pods, or the external instance's block
            },
            opts=child_opts(self, provider),
        )
        self.register_outputs({"host": self.host})

    def dsn(self, role: str) -> pulumi.Output[str]:
        """The connection string of one login role (secret)."""
        if role not in self.passwords:
            raise ValueError(f"unknown Postgres role {role!r}; the SQL defines {sorted(self.passwords)}")
        host, port, db = self.host, self.config.port, self.config.database
        return pulumi.Output.secret(
            pulumi.Output.concat(f"postgresql://{role}:", self.passwords[role], f"@{host}:{port}/{db}")
        )

    def egress(self) -> dict[str, Any]:
        """The egress rule that reaches this database, and nothing else."""
        if self.reachable is not None:
            return self.reachable.egress()
        return {"to": [{"ipBlock": {"cidr": str(self.config.cidr)}}], "ports": tcp(self.config.port)}

    def _statefulset(
        self,
        name: str,
        config: PostgresConfig,
        provider: k8s.Provider,
        admin_password: pulumi.Input[str],
    ) -> None:
        k8s.core.v1.Secret(
            f"{name}-admin",
            metadata={"name": "postgres-admin", "namespace": DATA_NAMESPACE},
            string_data={"POSTGRES_PASSWORD": admin_password},
            opts=child_opts(self, provider),
        )
        ready = {
            "exec": {"command": ["pg_isready", "-U", "postgres", "-d", config.database, "-h", "127.0.0.1"]},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        }
        BackingService(
            name="postgres",
            component="database",
            image=image("postgres"),
            uid=POSTGRES_UID,
            port=5432,
            args=["postgres", "-c", f"max_connections={config.max_connections}"],
            env=[
                secret_env("POSTGRES_PASSWORD", "postgres-admin", "POSTGRES_PASSWORD"),
                {"name": "POSTGRES_DB", "value": config.database},
                {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
            ],
            probe=ready,
            liveness={"initialDelaySeconds": 30, "periodSeconds": 10, "failureThreshold": 6},
            resources=resources("250m", "256Mi", "1", "1Gi"),
            data_path="/var/lib/postgresql/data",
            scratch={"run": "/var/run/postgresql", "tmp": "/tmp"},
            storage=config.storage,
        ).build(name, self, provider)
        # Only the roles Job from here; each app that declares a role is admitted by its own policy.
        k8s.networking.v1.NetworkPolicy(
            f"{name}-ingress",
            metadata={"name": "postgres-from-roles-job", "namespace": DATA_NAMESPACE},
            spec={
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "postgres"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "postgres-roles"}}}],
                        "ports": tcp(5432),
                    }
                ],
            },
            opts=child_opts(self, provider),
        )
