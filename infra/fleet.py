"""The apps of a stack, read from their own declarations: `server` in `<module>.server`.

A stack entry names the module; the server module says which tools (hence scopes) it serves and
what it needs. This checks that the entry configures only what the app declared, naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr, ValidationError

from apps.kit import (
    FocusedServer,
    KitSettings,
    PolicyError,
    Volume,
    cedar_schema,
    check_policies,
    default_policies,
    describe_errors,
    schema_files,
    settings_from_env,
)
from apps.kit import load_server as kit_load_server
from infra.config import NAMESPACE, REPO, AppConfig, StackConfig, StackConfigError

PLACEHOLDER_SECRET = "placeholder-for-the-check-0123456789"  # noqa: S105 - never deployed; only for the check


def load_server(module: str) -> FocusedServer[Any, Any]:
    """The `FocusedServer` of an app module (`apps.db` -> `apps.db.server.server`)."""
    try:
        return kit_load_server(module)
    except (ImportError, AttributeError, TypeError) as error:
        raise StackConfigError(f"module {module!r}: no FocusedServer `server` in {module}.server ({error})") from None


@dataclass(frozen=True)
class Schema:
    """One app's declared SQL (`Needs.schema`) as the platform applies it: `folder` is where its files are mounted
    for `python -m apps.kit.cli.schema` (the module's last part), `files` their names and text in order."""

    module: str
    folder: str
    files: dict[str, str]
    roles: list[str]


def schemas(modules: Mapping[str, FocusedServer[Any, Any]]) -> list[Schema]:
    """The schema of every server (by module) that declares one, each module once, in module order."""
    return [
        Schema(module, module.rsplit(".", 1)[-1], {p.name: p.read_text() for p in schema_files(module, server)}, roles)
        for module, server in sorted(modules.items())
        if server.needs.schema is not None and (roles := server.needs.roles)
    ]


def uses_redis(app: AppConfig, server: FocusedServer[Any, Any]) -> bool:
    """Redis for its own shared state (`Needs.redis`), or for its rate limit whenever it may run as more than one
    replica: the kit's limiter holds across replicas only through Redis, so no server has to remember to ask."""
    return server.needs.redis or app.max_replicas > 1


def check(name: str, app: AppConfig, server: FocusedServer[Any, Any]) -> None:
    """The stack entry may size and address only what the app declares."""
    key = f"{NAMESPACE}:apps.{name}"
    declared = {volume.name for volume in server.needs.volumes}
    problems = [
        f"  {key}.volumes.{volume}: {server.name} declares no such volume (declared: {sorted(declared)})"
        for volume in app.volumes
        if volume not in declared
    ]
    problems += [
        f"  {key}.volumes.{volume}: {server.name} mounts this volume; give its size"
        for volume in sorted(declared - set(app.volumes))
    ]
    if app.egress and not server.needs.external_egress:
        problems.append(f"  {key}.egress: {server.name} declares no external egress")
    own = own_settings(server)
    problems += [
        f"  {key}.settings.{variable}: not a setting of {server.name} (its own settings: {sorted(own) or 'none'})"
        for variable in {**app.settings, **app.one_machine_settings}
        if variable.lower() not in own
    ]
    if problems:
        raise StackConfigError("invalid stack configuration:\n" + "\n".join(problems))
    app_settings(name, app, server)


def own_settings(server: FocusedServer[Any, Any]) -> set[str]:
    """The settings a stack may give an app: its own, not the platform's (kit) ones and not secrets."""
    fields = server.settings_cls.model_fields
    from_platform = {env.lower() for env in server.needs.platform_env}
    return {
        name
        for name, info in fields.items()
        if name not in KitSettings.model_fields
        and name not in from_platform
        and SecretStr not in _types(info.annotation)
    }


def _types(annotation: Any) -> set[Any]:
    return {annotation, *getattr(annotation, "__args__", ())}


def volume_env(server: FocusedServer[Any, Any], read_only: set[str]) -> dict[str, str]:
    """Where each volume is mounted, and whether read-only: `<NAME>_PATH`, `<NAME>_READ_ONLY`."""
    env = {}
    for volume in server.needs.volumes:
        env[f"{volume.env_prefix}_PATH"] = volume.mount_path
        if volume.name in read_only:
            env[f"{volume.env_prefix}_READ_ONLY"] = "true"
    return env


def app_settings(name: str, app: AppConfig, server: FocusedServer[Any, Any]) -> Any:
    """The app's settings as the stack would start it (secrets as placeholders): a bad value stops here."""
    required_secrets = {
        field.upper(): PLACEHOLDER_SECRET
        for field, info in server.settings_cls.model_fields.items()
        if info.is_required() and SecretStr in _types(info.annotation)
    }
    env = {
        "MCP_RESOURCE_URL": str(app.resource_url),
        "MCP_ISSUER": "https://issuer.invalid",
        "MCP_JWKS_URL": "https://issuer.invalid/jwks",
        "MCP_JWT_ALGORITHMS": "RS256",
        **required_secrets,
        # what the platform always gives what it declares: its secrets and a DSN per role
        **dict.fromkeys(server.needs.secrets, PLACEHOLDER_SECRET),
        **{env: f"postgresql://{role}@postgres.invalid/mcp" for env, role in server.needs.postgres.items()},
        **({"MCP_SIGNIN_CLIENT_ID": "pages"} if any(p.endswith("/signed-in") for p in server.pages) else {}),
        **{env: f"http://{service}.invalid" for env, service in server.needs.services.items()},
        **volume_env(server, {v.name for v in server.needs.volumes if v.read_only}),
        **app.settings,
    }
    try:
        return settings_from_env(server.settings_cls, env)
    except ValidationError as error:
        lines = [f"  {NAMESPACE}:apps.{name}.settings.{line.strip()}" for line in describe_errors(error).splitlines()]
        raise StackConfigError("invalid stack configuration:\n" + "\n".join(lines)) from None


def read_only_volumes(name: str, app: AppConfig, server: FocusedServer[Any, Any]) -> set[str]:
    """Volumes mounted read-only: declared so, set so by the stack, or not written under the app's settings."""
    settings = app_settings(name, app, server)

    def read_only(volume: Volume) -> bool:
        stack = app.volumes.get(volume.name)
        return (
            volume.read_only
            or (stack is not None and stack.read_only)
            or (volume.writable is not None and not volume.writable(settings))
        )

    return {volume.name for volume in server.needs.volumes if read_only(volume)}


def check_wiring(name: str, env: dict[str, str], secret_env: list[str], server: FocusedServer[Any, Any]) -> None:
    """The environment the platform starts the app with, checked by the app's own settings class (the kit's
    bounds included) before anything is deployed: a stack value the app would refuse at start stops here."""
    try:
        settings_from_env(server.settings_cls, {**env, **dict.fromkeys(secret_env, PLACEHOLDER_SECRET)})
    except ValidationError as error:
        lines = [f"  {NAMESPACE}:apps.{name}: {line.strip()}" for line in describe_errors(error).splitlines()]
        raise StackConfigError("invalid stack configuration (as the app would start):\n" + "\n".join(lines)) from None


RESERVED_CONNECTIONS = 5  # Postgres's superuser reserve (3), the roles job and an operator's session


def check_connections(stack: StackConfig, servers: dict[str, FocusedServer[Any, Any]]) -> None:
    """Every replica of every app opens a pool per Postgres role; at the stack's largest scale (maxReplicas) they
    must fit the database's max_connections, or scaling out turns into connection errors under load."""
    shares = {}
    for name, app in stack.apps.items():
        needs = servers[name].needs
        if not needs.postgres:
            continue
        settings = app_settings(name, app, servers[name])
        pool = getattr(settings, needs.postgres_pool_setting) if needs.postgres_pool_setting else 1
        if needs.postgres_when is not None and not needs.postgres_when(settings):
            pool = 0  # these settings open no pool
        shares[name] = (app.max_replicas, len(needs.postgres), int(pool))
    needed = sum(replicas * pools * size for replicas, pools, size in shares.values()) + RESERVED_CONNECTIONS
    if needed > stack.postgres.max_connections:
        lines = [
            f"  {NAMESPACE}:apps.{name}: {replicas} replicas x {pools} pools x {size} = {replicas * pools * size}"
            for name, (replicas, pools, size) in shares.items()
        ]
        raise StackConfigError(
            f"invalid stack configuration: the apps may open {needed} Postgres connections (with "
            f"{RESERVED_CONNECTIONS} reserved), over {NAMESPACE}:postgres.maxConnections "
            f"{stack.postgres.max_connections}; lower maxReplicas or the pool size, or raise maxConnections:\n"
            + "\n".join(lines)
        )


POLICY_DIR = "/etc/mcpfleet/policies"  # where an app's policies are mounted


def policy_files(stack: StackConfig, name: str) -> dict[str, str]:
    """An app's organisation policies, by file name: `<stack.policies>/<app>/*.cedar` (none without the folder)."""
    if stack.policies is None:
        return {}
    folder = (REPO / stack.policies).resolve()
    if not folder.is_dir() or REPO.resolve() not in folder.parents:
        raise StackConfigError(f"{NAMESPACE}:policies {stack.policies!r} is not a folder of this project")
    return {path.name: path.read_text() for path in sorted((folder / name).glob("*.cedar"))}


def check_app_policies(stack: StackConfig, name: str, server: FocusedServer[Any, Any]) -> None:
    """The app's policies fit its tools (the Cedar schema its declarations give), or the stack stops here."""
    try:
        check_policies(cedar_schema(server), list(policy_files(stack, name).items()), default_policies(server))
    except PolicyError as error:
        raise StackConfigError(f"{NAMESPACE}:policies {stack.policies}/{name}: {error}") from None
