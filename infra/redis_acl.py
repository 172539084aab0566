"""The platform's Redis, as every target runs it: one source for its server arguments and each app's ACL user.

- **Durable state only, never evicted.** Rate-limit windows, notify's "sent once" ledger and claims, the GitHub
  server's budget and untrusted marks. No cache lives here (the GitHub server's is in its replicas), so nothing
  may be evicted: `maxmemory` below the container's limit with `noeviction`, so a full Redis refuses writes
  (the apps' callers see a refusal) instead of being killed by the kernel with every app's state in it.
- **Each app its own user and key prefix** (Redis 6+ ACLs), made from the app's declaration like the database
  roles: `<app>` may read and write `mcpfleet:<app>:*` and publish on the same channels, nothing else (no
  `KEYS`, `FLUSHALL`, `CONFIG` or any other `@admin`/`@dangerous` command). The default user keeps the admin
  password, for probes. The app is told its prefix (`REDIS_KEY_PREFIX`) and its URL names its user.
"""

from __future__ import annotations

REDIS_MEMORY_LIMIT_MIB = 256  # the container's limit
MAXMEMORY = "192mb"  # below the limit: Redis's own overhead and the kernel's buffers fit beside it
PORT = 6379
SERVER_ARGS = ["--save", "", "--appendonly", "no", "--maxmemory", MAXMEMORY, "--maxmemory-policy", "noeviction"]


def key_prefix(app: str) -> str:
    return f"mcpfleet:{app}:"


def password_variable(app: str) -> str:
    """Where an app's Redis password is kept (`mcp-github` -> REDIS_PASSWORD_MCP_GITHUB)."""
    return f"REDIS_PASSWORD_{app.upper().replace('-', '_')}"


def user_args(app: str, password: str) -> list[str]:
    """`--user ...` for one app: `password` as the target writes a reference to it (`$(VAR)`, `${VAR}`)."""
    prefix = key_prefix(app)
    return ["--user", app, "on", f">{password}", f"~{prefix}*", f"&{prefix}*", "+@all", "-@admin", "-@dangerous"]


def server_args(admin_password: str, apps: list[str], password: dict[str, str]) -> list[str]:
    """Everything after the image's `redis-server`: persistence off, memory bounded, the admin password, and a user
    per app (`password[app]` as the target refers to it)."""
    args = [*SERVER_ARGS, "--requirepass", admin_password]
    for app in sorted(apps):
        args += user_args(app, password[app])
    return args


def url(app: str, password: str, host: str, port: int = PORT) -> str:
    return f"redis://{app}:{password}@{host}:{port}/0"
