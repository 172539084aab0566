"""`scripts/up` and `scripts/down`: the dev stack on this machine, from `compose.yaml` (see `onebox.compose`).

    python -m onebox.machine up [--json] [--no-observability]
    python -m onebox.machine token mcp-db [--scopes "db:read"] [--as reader]
    python -m onebox.machine down [--volumes]

`up` writes the dev secrets to `.env` once (git-ignored, mode 600; never printed), builds the apps and
authorization-server images, starts everything, waits for every app's `/ready`, and prints the issuer and the
dev logins, then per app its URL, the configuration to paste into an MCP client (the URL only: the client does
the OAuth flow), a token signed in as a dev person and an MCP Inspector command, then the Prometheus,
Alertmanager, sink and Grafana URLs; `--json` prints the same as one object. Progress goes to stderr. `token`
signs a dev person in at the local authorization server as a client would (`onebox.login`).

Each checkout is its own Compose project (`mcpfleet-<stack>-<digest of the checkout's path>`), and publishes on
the default ports when they are free at its first `up`, else on free ones (kept in `.env`): two checkouts run
side by side without sharing a volume or a port. Secrets made afresh (a deleted `.env`) never meet a database
volume made with the old ones: that volume is removed first, saying so. `compose up` has a deadline; past it,
the services that are not up are named, with their state and last log lines.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from apps.kit import role_password_variable
from infra import authz, redis_acl
from infra.config import AUTHZ_PORT, StackConfig, load_stack
from infra.images import APPS, AUTHZ
from onebox.compose import (
    COMPOSE_FILE,
    OBSERVABILITY_PROFILE,
    LocalApp,
    default_ports,
    local_apps,
    policies_digest,
    policies_variable,
    port_variable,
    redis_users,
    secret_variable,
)
from onebox.login import SignInFailed, sign_in

REPO = Path(__file__).resolve().parents[1]
SECRETS_FILE = REPO / ".env"
READY_SECONDS = 180
UP_SECONDS = 300  # `compose up -d` waits for health and for the roles job: past this, say which service is stuck


def say(text: str) -> None:
    print(f"[up] {text}", file=sys.stderr, flush=True)


def compose_command() -> list[str]:
    """`docker compose` (v2) where the plugin exists, else Debian's `docker-compose` (1.29)."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise SystemExit(
        "neither `docker compose` nor `docker-compose` is installed (Debian: apt-get install docker-compose)"
    )


def compose(*args: str, env: dict[str, str] | None = None, quiet: bool = False, timeout: float | None = None) -> None:
    command = [*compose_command(), "--project-directory", str(REPO), "-f", str(REPO / COMPOSE_FILE), *args]
    try:
        result = subprocess.run(command, env=env, capture_output=quiet, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{' '.join(args)} did not finish in {timeout:g} s:\n{stuck_services(env)}") from None
    if result.returncode != 0:
        detail = (result.stdout or "")[-2000:] + (result.stderr or "")[-2000:] if quiet else ""
        raise SystemExit(f"{' '.join(command[:2])} {' '.join(args)} failed ({result.returncode}) {detail}")


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key] = value
    return values


def project_name(stack_name: str) -> str:
    """This checkout's Compose project: another checkout on the machine has another."""
    return f"mcpfleet-{stack_name}-{hashlib.sha256(str(REPO).encode()).hexdigest()[:8]}"


def free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def any_free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ensure_secrets(apps: list[LocalApp], stack: StackConfig, stack_name: str) -> dict[str, str]:
    """The dev secrets, the project name and the published ports in `.env`: chosen once, kept across runs; a
    new app's are added. A database volume left from secrets that are gone is removed before new ones are used."""
    values = read_env_file(SECRETS_FILE)
    fresh = "POSTGRES_PASSWORD" not in values
    wanted = ["POSTGRES_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD", *authz.secret_variables(stack)]
    wanted += [redis_acl.password_variable(user) for user in redis_users(apps)]
    wanted += sorted({role_password_variable(role) for app in apps for role in app.server.needs.roles})
    wanted += [secret_variable(app.name, key) for app in apps for key in app.server.needs.secrets.values()]
    missing = [key for key in wanted if key not in values]
    # Ports: the defaults for a checkout that ran before ports could move (its stack may be up on them), else the
    # default when it is free, else any free one.
    legacy = not fresh and not any(key.startswith("MCPFLEET_PORT_") for key in values)
    ports = {
        port_variable(service): str(default if legacy or free(default) else any_free_port())
        for service, default in default_ports(apps).items()
        if port_variable(service) not in values
    }
    if missing or ports or "COMPOSE_PROJECT_NAME" not in values:
        values.setdefault("COMPOSE_PROJECT_NAME", project_name(stack_name))
        if fresh:
            forget_stale_database(values["COMPOSE_PROJECT_NAME"])
        values |= {key: secrets.token_urlsafe(32) for key in missing} | ports
        header = "# Dev secrets and ports for compose.yaml, written once by scripts/up. Never commit this file.\n"
        SECRETS_FILE.write_text(header + "".join(f"{k}={v}\n" for k, v in values.items()))
        SECRETS_FILE.chmod(0o600)
        say(f"wrote {len(missing)} dev secrets and {len(ports)} ports to .env")
    return values


def forget_stale_database(project: str) -> None:
    """New secrets with an old database volume: the roles job would fail its login forever. The volume holds
    dev data made with passwords nobody has any more, so it goes (with its containers), saying so."""
    volume = f"{project}_postgres-data"
    if subprocess.run(["docker", "volume", "inspect", volume], capture_output=True).returncode != 0:
        return
    say(f"the dev secrets are new but {volume} was made with older ones: removing it (dev data only)")
    containers = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"volume={volume}"], capture_output=True, text=True
    ).stdout.split()
    if containers:
        subprocess.run(["docker", "rm", "-f", *containers], capture_output=True)
    subprocess.run(["docker", "volume", "rm", volume], capture_output=True, check=True)


def stuck_services(env: dict[str, str] | None) -> str:
    """Each service that is not running (or not healthy), its state and its last log lines."""
    project = (env or {}).get("COMPOSE_PROJECT_NAME", "")
    listed = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={project}",
         "--format", "{{.Label \"com.docker.compose.service\"}}\t{{.Status}}\t{{.ID}}"],
        capture_output=True, text=True,
    ).stdout.splitlines()  # fmt: skip
    lines = []
    for row in listed:
        service, status, container = [*row.split("\t"), "", "", ""][:3]
        if status.startswith("Up") and "unhealthy" not in status and "starting" not in status:
            continue
        logs = subprocess.run(["docker", "logs", "--tail", "5", container], capture_output=True, text=True)
        tail = (logs.stdout + logs.stderr).strip().splitlines()[-5:]
        lines.append(f"  {service}: {status}" + "".join(f"\n    {line[:200]}" for line in tail))
    return "\n".join(lines) or "  (no container of this project is stuck; see docker compose ps)"


def with_ports(apps: list[LocalApp], values: dict[str, str]) -> list[LocalApp]:
    """The apps at the ports this checkout publishes them on."""
    return [replace(app, port=int(values.get(port_variable(app.name), app.port))) for app in apps]


def published_url(values: dict[str, str], service: str, default: int, path: str = "") -> str:
    return f"http://127.0.0.1:{values.get(port_variable(service), default)}{path}"


def registry_reachable() -> bool:
    try:
        return httpx.get("https://registry-1.docker.io/v2/", timeout=5).status_code == 401
    except httpx.HTTPError:
        return False


def wait_ready(apps: list[LocalApp]) -> None:
    deadline = time.monotonic() + READY_SECONDS
    pending = {app.name: f"http://127.0.0.1:{app.port}/ready" for app in apps}
    while pending:
        for name, url in list(pending.items()):
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    del pending[name]
                    say(f"{name} ready")
            except httpx.HTTPError:
                pass
        if pending and time.monotonic() > deadline:
            raise SystemExit(f"not ready after {READY_SECONDS} s: {', '.join(pending)} (see docker compose logs)")
        time.sleep(0.5)


def local_issuer(values: dict[str, str]) -> str:
    return published_url(values, "authz", AUTHZ_PORT)


def person_for(stack: StackConfig, scopes: list[str]) -> str:
    """The first dev login who may grant every one of `scopes`, else the one who may grant the most."""
    people = stack.identity.people
    return max(people, key=lambda login: (len(set(scopes) & set(people[login].scopes)), -list(people).index(login)))


def dev_token(
    app: LocalApp, stack: StackConfig, values: dict[str, str], scopes: str | None = None, login: str | None = None
) -> str:
    """A token for `app`, signed in at the local authorization server as a dev person: every scope the app's tools
    declare (or `scopes`), as far as that person may grant them."""
    wanted = " ".join(app.server.scopes) if scopes is None else scopes
    login = login or person_for(stack, wanted.split())
    if login not in stack.identity.people:
        raise SystemExit(f"no dev login {login!r}; logins: {', '.join(stack.identity.people)}")
    password = values[authz.password_variable(login)]
    return str(sign_in(local_issuer(values), app.url, login, password, wanted)["access_token"])


# The MCP Inspector's CLI, pinned: an unpinned `npx` on Node 20 resolves 0.15, which cannot send a bearer token.
# 2.12 needs Node >= 22.19. The interop tests install the same version (tests/interop/package.json; a test holds them).
INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"


def inspector_command(url: str, token: str) -> str:
    return (
        f"npx -y {INSPECTOR} --cli {url} --transport http --method tools/list "
        f'--header "Authorization: Bearer {token}"  # Node >= 22.19'
    )


def client_configs(name: str, url: str) -> dict[str, Any]:
    """What to paste into MCP clients for one app: the URL alone, as each client's documentation shows a remote
    HTTP server; the client discovers the authorization server and signs the person in itself."""
    return {
        "vscode": {"servers": {name: {"type": "http", "url": url}}},  # .vscode/mcp.json
        "claude_code": f"claude mcp add --transport http {name} {url}",
        "cursor": {"mcpServers": {name: {"url": url}}},  # ~/.cursor/mcp.json
    }


def summary(apps: list[LocalApp], stack: StackConfig, values: dict[str, str], observability: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"issuer": local_issuer(values), "apps": {}}
    result["logins"] = {
        login: {"scopes": person.scopes, "password": f"{authz.password_variable(login)} in .env"}
        for login, person in stack.identity.people.items()
    }
    for app in apps:
        login = person_for(stack, app.server.scopes)
        token = dev_token(app, stack, values, login=login)
        result["apps"][app.name] = {
            "url": app.url,
            "scopes": app.server.scopes,
            "token": token,
            "signed_in_as": login,
            "clients": client_configs(app.name, app.url),
        }
    defaults = default_ports(apps)
    result["prometheus"] = published_url(values, "prometheus", defaults["prometheus"])
    result["alertmanager"] = published_url(values, "alertmanager", defaults["alertmanager"])
    result["sink"] = published_url(values, "alert-receiver", defaults["alert-receiver"], "/received")
    result["grafana"] = published_url(values, "grafana", defaults["grafana"]) if observability else None
    return result


def print_summary(result: dict[str, Any]) -> None:
    print(f"Issuer: {result['issuer']}  (the local authorization server; clients sign in there)")
    for login, person in result["logins"].items():
        print(f"  login {login}: may grant {' '.join(person['scopes'])}; password: {person['password']}")
    for name, app in result["apps"].items():
        print(f"\n{name}: {app['url']}  (scopes: {' '.join(app['scopes'])})")
        print(f"  VS Code (.vscode/mcp.json): {json.dumps(app['clients']['vscode'])}")
        print(f"  Claude Code: {app['clients']['claude_code']}")
        print(f"  Cursor (~/.cursor/mcp.json): {json.dumps(app['clients']['cursor'])}")
        print(f"  token ({app['signed_in_as']}): {app['token']}")
        print(f"  inspect: {inspector_command(app['url'], app['token'])}")
    print(f"\nPrometheus:   {result['prometheus']}")
    print(f"Alertmanager: {result['alertmanager']}")
    print(f"Webhook sink: {result['sink']}  (Alertmanager's notifications and notify's local-sink target)")
    if result["grafana"]:
        print(f"Grafana:      {result['grafana']}  (admin; password: GRAFANA_ADMIN_PASSWORD in .env)")
    else:
        print("Grafana, Loki, collector: not started (no registry, or --no-observability)")


def up(stack_name: str, as_json: bool, observability: bool | None) -> int:
    started = time.monotonic()
    stack = load_stack(stack_name)
    apps = local_apps(stack)
    values = ensure_secrets(apps, stack, stack_name)
    apps = with_ports(apps, values)
    env = {**os.environ, "COMPOSE_PROJECT_NAME": values["COMPOSE_PROJECT_NAME"]}
    env |= {policies_variable(app.name): policies_digest(stack, app.name) for app in apps}
    if observability is None:
        observability = registry_reachable() and not any(k.startswith("MCPFLEET_IMAGE_") for k in env)
    say("building the apps image (once per change to apps/, the Dockerfile or the lock)")
    tag, seconds = APPS.build()
    say(f"apps image {tag} ({seconds:.0f} s)")
    subprocess.run(["docker", "tag", tag, "mcpfleet/apps:dev"], check=True)
    env["MCPFLEET_APPS_IMAGE"] = tag
    if stack.identity.provider == "local":
        say("building the authorization server's image (once per change to authz/)")
        authz_tag, seconds = AUTHZ.build()
        say(f"authorization server image {authz_tag} ({seconds:.0f} s)")
        subprocess.run(["docker", "tag", authz_tag, "mcpfleet/authz:dev"], check=True)
        env["MCPFLEET_AUTHZ_IMAGE"] = authz_tag
    profile: list[str] = ["--profile", OBSERVABILITY_PROFILE] if observability else []
    if not observability:
        env["MCPFLEET_OTLP_ENDPOINT"] = ""  # no collector: the apps export no traces
    say("starting the composition")
    compose(*profile, "up", "-d", "--remove-orphans", env=env, quiet=as_json, timeout=UP_SECONDS)
    wait_ready(apps)
    result = summary(apps, stack, values, observability)
    result["seconds"] = round(time.monotonic() - started, 1)
    if as_json:
        print(json.dumps(result))
    else:
        print_summary(result)
        print(f"\nUp in {result['seconds']} s. Stop: scripts/down (--volumes also deletes the data).")
    return 0


def down(volumes: bool) -> int:
    if not SECRETS_FILE.exists():  # never brought up here (compose.yaml cannot be read without it)
        say("nothing to stop: scripts/up has not run in this checkout")
        return 0
    env = {**os.environ, **{k: v for k, v in read_env_file(SECRETS_FILE).items() if k == "COMPOSE_PROJECT_NAME"}}
    compose(
        "--profile", OBSERVABILITY_PROFILE, "down", "--remove-orphans", *(["--volumes"] if volumes else []), env=env
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onebox.machine")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="bring the dev stack up on this machine")
    start.add_argument("--json", action="store_true", help="print one JSON object (apps, tokens, URLs)")
    start.add_argument("--stack", default="dev")
    start.add_argument(
        "--observability",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Grafana, Loki and the collector (default: when Docker Hub is reachable)",
    )
    token = commands.add_parser("token", help="print a dev token for one app of the running stack")
    token.add_argument("app", help="the app's name in the stack, e.g. mcp-db")
    token.add_argument("--scopes", default=None, help="space-separated (default: every scope its tools declare)")
    token.add_argument("--as", dest="login", default=None, help="the dev login (default: one who may grant them)")
    token.add_argument("--stack", default="dev")
    stop = commands.add_parser("down", help="stop it")
    stop.add_argument("--volumes", action="store_true", help="also delete its data")
    args = parser.parse_args(argv)
    if args.command == "up":
        return up(args.stack, args.json, args.observability)
    if args.command == "token":
        return token_command(args.stack, args.app, args.scopes, args.login)
    return down(args.volumes)


def token_command(stack_name: str, name: str, scopes: str | None, login: str | None) -> int:
    stack = load_stack(stack_name)
    values = read_env_file(SECRETS_FILE)
    apps = {app.name: app for app in with_ports(local_apps(stack), values)}
    if name not in apps:
        raise SystemExit(f"no app {name!r} in the {stack_name} stack; apps: {', '.join(apps)}")
    if authz.COOKIE_KEYS_VARIABLE not in values:
        raise SystemExit("no dev secrets yet: run scripts/up first")
    try:
        print(dev_token(apps[name], stack, values, scopes, login))
    except (SignInFailed, httpx.HTTPError) as error:
        raise SystemExit(f"signing in at {local_issuer(values)} failed: {error}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
