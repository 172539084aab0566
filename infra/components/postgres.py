"""Postgres: a StatefulSet (official image) or an external managed instance; either way a Job
applies the SQL each app declares (`Needs.schema`, the files the tests apply), and scoped DSNs are handed to the
apps. The component knows no app: it is given the declared schemas and their login roles."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from apps.kit import role_password_variable
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
from infra.fleet import Schema
from infra.images import image

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
        schemas: list[Schema],
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

        self.passwords = {role: password(f"{role}-password") for schema in schemas for role in schema.roles}
        if config.mode == "statefulset":
            admin_password = admin_password or password("admin-password")
            admin_url = pulumi.Output.concat("postgresql://postgres:", admin_password, f"@{self.host}:{port}/{db}")
            self._statefulset(name, config, provider, admin_password)
        else:
            if external_admin_url is None:
                raise ValueError("postgres mode external needs the secret postgresAdminUrl")
            admin_url = pulumi.Output.secret(external_admin_url)

        if schemas:
            self._roles_job(name, schemas, admin_url, apps_image, provider)
        self.register_outputs({"host": self.host})

    def _roles_job(
        self,
        name: str,
        schemas: list[Schema],
        admin_url: pulumi.Input[str],
        apps_image: pulumi.Input[str],
        provider: k8s.Provider,
    ) -> None:
        """The Job that applies every declared schema, with its Secret, its SQL and its egress (the database alone)."""
        password_variables = [role_password_variable(role) for role in self.passwords]
        roles_secret = k8s.core.v1.Secret(
            f"{name}-roles-secret",
            metadata={"name": "postgres-roles", "namespace": DATA_NAMESPACE},
            string_data={
                "DATABASE_ADMIN_URL": admin_url,
                **{role_password_variable(role): password for role, password in self.passwords.items()},
            },
            opts=child_opts(self, provider),
        )
        sql = k8s.core.v1.ConfigMap(
            f"{name}-sql",
            metadata={"name": "postgres-sql", "namespace": DATA_NAMESPACE},
            data={f"{s.folder}.{file}": text for s in schemas for file, text in s.files.items()},
            opts=child_opts(self, provider),
        )
        job_labels = labels("postgres-roles", "database-roles")
        digest = config_hash(*(text for s in schemas for text in s.files.values()))[:8]
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
                                "args": ["apps.kit.cli.schema", *(s.module for s in schemas)],
                                "env": [
                                    secret_env(k, "postgres-roles", k)
                                    for k in ("DATABASE_ADMIN_URL", *password_variables)
                                ]
                                + [{"name": "MCPFLEET_SQL_DIR", "value": "/sql"}],
                                "volumeMounts": [{"name": "sql", "mountPath": "/sql", "readOnly": True}],
                                "securityContext": container_security(),
                                "resources": resources("50m", "64Mi", "500m", "256Mi"),
                            }
                        ],
                        "volumes": [
                            {
                                "name": "sql",
                                "configMap": {
                                    "name": "postgres-sql",
                                    "items": [
                                        {"key": f"{s.folder}.{file}", "path": f"{s.folder}/{file}"}
                                        for s in schemas
                                        for file in s.files
                                    ],
                                },
                            }
                        ],
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
