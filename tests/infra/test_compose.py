"""The one-machine composition (compose.yaml) is the dev stack's model, rendered: it fails here when it
drifts, and it says what `pulumi up` would give each app, except where the target must differ."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from apps.kit.declare.server import load_server
from infra import fleet
from infra.components.observability import SERVICES
from infra.config import load_stack, parse
from infra.images import PINNED, env_name
from infra.wiring import wiring
from onebox import compose

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return compose.render("dev")


@pytest.fixture(scope="module")
def services(rendered) -> dict[str, dict]:
    return yaml.safe_load(rendered[compose.COMPOSE_FILE])["services"]


def test_the_committed_composition_is_the_rendered_model(rendered):
    stale = compose.drifted(rendered)
    assert stale == [], f"{stale} drifted; run: uv run python -m onebox.compose"


def test_every_app_of_the_stack_runs_with_the_environment_pulumi_up_derives(services):
    stack = load_stack("dev")
    for app in compose.local_apps(stack):
        services_at = {name: reachable.url for name, reachable in SERVICES.items()}
        on_cluster = stack.apps[app.name]  # the entry as the cluster runs it, without its one-machine settings
        kubernetes = wiring(app.name, on_cluster, app.server, stack, services_at, provided_secrets=())
        local = services[app.name]["environment"]
        differs = {key for key in kubernetes.env if local.get(key) != kubernetes.env[key]}
        # The documented differences: the local URL and issuer, traces only with the collector, the entry's
        # one-machine settings.
        assert differs <= {
            "MCP_RESOURCE_URL",
            "MCP_ISSUER",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            *on_cluster.one_machine_settings,
        }, (
            app.name,
            differs,
        )
        # Its loopback URL, on the port the checkout publishes it (the default unless .env moves it).
        published = compose.published(app.name, app.port)
        assert local["MCP_RESOURCE_URL"] == f"http://127.0.0.1:{published}/mcp"
        assert published == f"${{{compose.port_variable(app.name)}:-{app.port}}}"
        assert services[app.name]["command"] == [app.config.module]
        assert services[app.name]["ports"] == [f"127.0.0.1:{published}:8080"]
        # The stack's CPU and memory limits, so the saturation alerts can fire here (from the cgroup's limits).
        assert services[app.name]["cpus"] == on_cluster.resources.cpu_limit_cores == 0.5
        assert services[app.name]["mem_limit"] == f"{on_cluster.resources.memory_limit_mib}m" == "512m"


def test_each_app_gets_only_its_own_secrets(services):
    stack = load_stack("dev")
    for app in compose.local_apps(stack):
        secrets = {key for key, value in services[app.name]["environment"].items() if "${" in str(value)}
        # a switch and published ports, no secret
        secrets -= {"OTEL_EXPORTER_OTLP_ENDPOINT", "MCP_RESOURCE_URL", "MCP_ISSUER"}
        needs = app.server.needs
        redis = {"REDIS_URL"} if fleet.uses_redis(app.config, app.server) else set()
        expected = {*needs.postgres, *needs.secrets} | redis
        assert secrets == expected, app.name


def test_images_are_the_pins_with_the_override_switch_and_never_latest(rendered, services):
    for name, service in services.items():
        reference = service["image"]
        assert "latest" not in reference, name
        match = re.fullmatch(r"\$\{(MCPFLEET_[A-Z_]+):-([^}]+)\}", reference)
        assert match, (name, reference)
        variable, default = match.groups()
        if variable not in ("MCPFLEET_APPS_IMAGE", "MCPFLEET_AUTHZ_IMAGE"):  # built from this repository
            assert default == PINNED[next(k for k in PINNED if env_name(k) == variable)]


def test_only_loopback_ports_are_published_and_backends_answer_to_their_cluster_names(services):
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    aliases = {
        alias for s in services.values() for alias in s.get("networks", {}).get("default", {}).get("aliases", [])
    }
    assert {f"{r.host}" for r in SERVICES.values()} <= aliases
    assert {"postgres.mcp-data.svc", "redis.mcp-data.svc", "alert-receiver.mcp-observability.svc"} <= aliases


def test_what_cannot_run_without_a_registry_is_in_a_profile_ci_leaves_out(services):
    """Grafana, Loki and the collector have no Debian package (no offline stand-in): CI starts the
    composition without the `observability` profile, so they are checked here statically only."""
    profiled = {name for name, service in services.items() if service.get("profiles")}
    assert profiled == {"grafana", "loki", "otel-collector"}
    for name in profiled:
        for volume in services[name].get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), (name, source)


def test_the_apps_scrape_job_lists_every_app(rendered):
    scrape = yaml.safe_load(rendered["compose/prometheus.yml"])
    [job] = [job for job in scrape["scrape_configs"] if job["job_name"] == "mcp-apps"]
    names = {entry["labels"]["app"] for entry in job["static_configs"]}
    assert names == {app.name for app in compose.local_apps(load_stack("dev"))}
    assert "mcp-github" in load_stack("dev").apps and "mcp-github" not in names  # no GitHub credential here


def test_a_stack_app_declared_in_a_module_is_composed_by_its_folder_and_stack_entry_alone():
    """The demo `notes` server (tests/support/notes_app): a stack entry and nothing else."""
    stack = load_stack("dev")
    notes = {"module": "tests.support.notes_app", "resourceUrl": "http://mcp-notes.mcp-apps.svc/mcp"}
    notes |= {"replicas": 1, "maxReplicas": 1, "volumes": {"notes": {"size": "1Gi"}}}
    extended = parse({**stack.model_dump(by_alias=True, mode="json"), "apps": {"mcp-notes": notes}})
    [app] = compose.local_apps(extended)
    service = compose.app_service(app, extended)
    assert service["volumes"] == ["mcp-notes-notes:/notes"] and "REDIS_URL" in service["environment"]
    assert load_server("tests.support.notes_app").name == app.server.name


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian's docker-compose is not installed")
def test_docker_compose_1_29_accepts_the_file(tmp_path):
    env = tmp_path / "secrets.env"
    names = set(re.findall(r"\$\{([A-Z_]+):\?", (REPO / compose.COMPOSE_FILE).read_text()))
    env.write_text("".join(f"{name}=x\n" for name in sorted(names)))
    result = subprocess.run(
        ["docker-compose", "--env-file", str(env), "-f", str(REPO / compose.COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
