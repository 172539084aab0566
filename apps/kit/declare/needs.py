"""What a focused server uses outside its own process, declared once next to its tools.

The platform (`infra/`) derives an app's environment, Secret, volumes and NetworkPolicy from
this declaration and from nothing else, so an app gets no access it did not declare. Sizes,
address blocks and secret values are the stack's to give (`Pulumi.<stack>.yaml`), but only for
what is declared here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

PlatformService = Literal["prometheus", "alertmanager"]
_HOST = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")


@dataclass(frozen=True)
class Volume:
    """A persistent volume mounted at `mount_path`; its size and storage class come from the stack.

    The platform mounts it read-only when the app declares `read_only`, when the stack says so, or when
    `writable(settings)` says these settings write nothing to it; the app then sees `<NAME>_READ_ONLY=true`.
    """

    name: str
    mount_path: str
    read_only: bool = False
    writable: Callable[[Any], bool] | None = field(default=None, compare=False)

    @property
    def env_prefix(self) -> str:
        """`<NAME>` in the env the platform sets for this volume (`<NAME>_PATH`, `<NAME>_READ_ONLY`)."""
        return self.name.upper().replace("-", "_")


@dataclass(frozen=True, order=True)
class OutsideHost:
    """An HTTP(S) destination outside the cluster, by name: reached only through the platform's egress
    proxy, which allows each app exactly its own. `internal`: a host on a private network (an internal
    relay) whose private addresses the proxy then accepts; every other host must resolve to public ones."""

    host: str
    port: int = 443
    internal: bool = False

    def __post_init__(self) -> None:
        if not _HOST.fullmatch(self.host) or not 0 < self.port < 65536:
            raise ValueError(f"not a host name and port: {self.host!r}:{self.port}")

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def of_url(cls, url: str, internal: bool = False) -> OutsideHost:
        """The host and port a URL names (its scheme's default port when it gives none)."""
        return cls((urlsplit(url).hostname or "").lower(), url_port(url), internal)


def url_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


@dataclass(frozen=True)
class Needs:
    # env var -> Postgres login role; the app gets a DSN for each of its own roles, and 5432 to the database
    postgres: dict[str, str] = field(default_factory=dict)
    # a folder of SQL files that create this app's tables and its login roles (each role of `postgres`), applied
    # in name order through an admin connection before the app starts (`python -m apps.kit.cli.schema`); each
    # role's password reaches them as a SCRAM verifier in the session setting `role_password_setting(role)`
    schema: Path | None = None
    # the setting that sizes the pool it opens per role (e.g. "db_pool_max"): the platform checks that every
    # replica's pools fit the database's max_connections at the stack's largest scale
    postgres_pool_setting: str | None = None
    # settings -> whether they open those pools at all (a mode that uses no database): none are counted otherwise
    postgres_when: Callable[[Any], bool] | None = field(default=None, compare=False)
    # REDIS_URL: rate limits that hold across replicas, and any shared state
    redis: bool = False
    # env var -> platform service (its in-cluster URL), and egress to that service alone
    services: dict[str, PlatformService] = field(default_factory=dict)
    # env var -> key of the stack's secrets for this app (`mcpfleet:<app>.<key>`): required in production,
    # generated on a dev stack (signing keys)
    secrets: dict[str, str] = field(default_factory=dict)
    # keys of `secrets` issued by somebody else (an API token): never generated, on any stack; without one,
    # `pulumi up` stops naming `mcpfleet:<app>.<key>`
    issued_secrets: frozenset[str] = frozenset()
    # the same, but set only when the stack gives a value (credentials some configurations need)
    optional_secrets: dict[str, str] = field(default_factory=dict)
    # outside HTTP(S) hosts it always calls (an API's host), through the egress proxy
    outside_hosts: tuple[OutsideHost, ...] = ()
    # outside HTTP(S) hosts its settings name (a webhook target's host): settings -> hosts, through the proxy
    outside_hosts_from: Callable[[Any], list[OutsideHost]] | None = field(default=None, compare=False)
    # in-network addresses the stack lists for this app (CIDR and port) for what is not HTTP, e.g. an SMTP relay
    external_egress: bool = False
    volumes: tuple[Volume, ...] = ()

    def __post_init__(self) -> None:
        names = [v.name for v in self.volumes]
        if len(set(names)) != len(names):
            raise ValueError(f"volume names repeat: {names}")
        envs = self.platform_env
        if len(set(envs)) != len(envs):
            raise ValueError(f"environment variables repeat: {envs}")
        if self.schema is not None and not self.postgres:
            raise ValueError("a schema creates login roles: declare them in `postgres`")
        if stray := self.issued_secrets - set(self.secrets.values()):
            raise ValueError(f"issued secrets {sorted(stray)} are not keys of `secrets`")

    @property
    def platform_env(self) -> list[str]:
        """The environment variables the platform sets from this declaration (never a stack's setting): DSNs,
        service URLs, secrets, the Redis URL, each volume's path."""
        envs = [*self.postgres, *self.services, *self.secrets, *self.optional_secrets]
        envs += ["REDIS_URL"] if self.redis else []
        return envs + [f"{volume.env_prefix}_PATH" for volume in self.volumes]

    @property
    def roles(self) -> list[str]:
        """The Postgres login roles this app connects as: the platform gives each a password of its own."""
        return sorted(set(self.postgres.values()))


def role_password_variable(role: str) -> str:
    """The environment variable that carries a login role's password to the schema command."""
    return f"{role.upper()}_PASSWORD"


def role_password_setting(role: str) -> str:
    """The session setting a schema's SQL reads the role's SCRAM verifier from (`current_setting(...)`)."""
    return f"mcpfleet.{role}_password"
