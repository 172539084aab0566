"""A new focused server is its folder plus one stack entry: no change to infra/, alerts/ or dashboards/.

The `notes` server (tests/support/notes_app) declares a volume and Redis and no database; the program,
run under mocks with one more entry in `mcpfleet:apps`, gives it exactly that.
"""

from __future__ import annotations

import json

import pytest
import yaml

from alerts.params import AlertParams
from alerts.render import RULES_FILE
from apps.kit import KitSettings
from infra.config import AppConfig, StackConfigError, parse
from infra.fleet import check, load_server
from infra.mocked import kubernetes_objects
from tests.infra.conftest import Declared, authz_config, run_program

APPS, DATA = "mcp-apps", "mcp-data"
DB_URL = "http://mcp-db.mcp-apps.svc/mcp"
NOTES = {
    "module": "tests.support.notes_app",
    "resourceUrl": "http://mcp-notes.mcp-apps.svc/mcp",
    "replicas": 1,
    "maxReplicas": 1,
    "volumes": {"notes": {"size": "3Gi", "storageClass": "standard"}},
}


@pytest.fixture(scope="module")
def with_notes(dev) -> Declared:
    apps = {"mcp-db": {"module": "apps.db", "resourceUrl": DB_URL, "maxReplicas": 3}, "mcp-notes": NOTES}
    result = run_program("dev", {"mcpfleet:apps": apps})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    return Declared("dev", data["resources"], kubernetes_objects(data["resources"]), data["outputs"])


def test_the_new_app_gets_its_workload_and_a_volume_claim(with_notes):
    deployment = with_notes.one("Deployment", "mcp-notes", APPS)
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["args"] == ["tests.support.notes_app"]
    assert {"name": "notes", "mountPath": "/notes", "readOnly": False} in container["volumeMounts"]
    assert {"name": "notes", "persistentVolumeClaim": {"claimName": "mcp-notes-notes", "readOnly": False}} in pod[
        "volumes"
    ]
    assert pod["securityContext"]["fsGroup"] == 10001  # the app's user can write its volume
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # ReadWriteOnce: one node at a time
    claim = with_notes.one("PersistentVolumeClaim", "mcp-notes-notes", APPS)["spec"]
    assert claim == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "3Gi"}},
        "storageClassName": "standard",
    }
    assert with_notes.one("Deployment", "mcp-db", APPS)["spec"]["template"]["spec"]["volumes"] == [
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": "policies", "configMap": {"name": "mcp-db-policies"}},  # the dev stack's policies for it
    ]  # the db app declares no volume and gets none


def test_the_new_app_holds_only_its_own_secrets(with_notes):
    secret = with_notes.one("Secret", "mcp-notes-secrets", APPS)["stringData"]
    assert set(secret) == {"REDIS_URL"}  # no DSN: it declared no database; no token secret: keys are public
    assert set(with_notes.one("Secret", "mcp-db-secrets", APPS)["stringData"]) == {
        "DB_READ_URL",
        "DB_WRITE_URL",
        "REDIS_URL",
    }


def egress_ports(declared: Declared, app: str) -> set[int]:
    rules = declared.one("NetworkPolicy", app, APPS)["spec"]["egress"]
    return {p["port"] for rule in rules for p in rule.get("ports", [])}


def test_the_new_app_reaches_redis_and_no_database(with_notes):
    assert egress_ports(with_notes, "mcp-notes") == {6379, 4317, 4318, 9400}  # 9400: the local issuer's keys
    assert 5432 in egress_ports(with_notes, "mcp-db")
    data_policies = {p["metadata"]["name"] for p in with_notes.of_kind("NetworkPolicy", DATA)}
    assert "redis-from-mcp-notes" in data_policies and "postgres-from-mcp-notes" not in data_policies


def test_the_new_app_is_scraped_and_alerted_like_every_app(with_notes):
    """The fleet's rules are per `app` label on job mcp-apps: the pod's annotations and namespace put it there."""
    template = with_notes.one("Deployment", "mcp-notes", APPS)["spec"]["template"]
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert template["metadata"]["labels"]["app.kubernetes.io/name"] == "mcp-notes"  # relabelled to `app`
    prometheus = yaml.safe_load(
        with_notes.one("ConfigMap", "prometheus", "mcp-observability")["data"]["prometheus.yml"]
    )
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == AlertParams().job)
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == [APPS]
    rules = with_notes.one("ConfigMap", "prometheus-rules", "mcp-observability")["data"]
    assert rules == {RULES_FILE.name: RULES_FILE.read_text()}  # the same rules: nothing per app to add
    assert "by (app)" in RULES_FILE.read_text()
    # the authorization server issues tokens for it, with exactly the scopes its tools declare
    notes = authz_config(with_notes)["resources"]["http://mcp-notes.mcp-apps.svc/mcp"]
    assert notes == {"name": "mcp-notes", "scopes": load_server("tests.support.notes_app").scopes}


def test_a_stack_entry_configures_only_what_the_app_declared():
    notes = load_server("tests.support.notes_app")
    base = {"issuer": "https://issuer.test", "jwksUrl": "https://issuer.test/jwks"}
    undeclared = parse({**base, "apps": {"n": {**NOTES, "volumes": {"notes": {}, "cache": {}}}}}).apps["n"]
    with pytest.raises(
        StackConfigError, match=r"mcpfleet:apps.n.volumes.cache: mcpfleet-notes declares no such volume"
    ):
        check("n", undeclared, notes)
    unsized = parse({**base, "apps": {"n": {**NOTES, "volumes": {}}}}).apps["n"]
    with pytest.raises(StackConfigError, match=r"mcpfleet:apps.n.volumes.notes: .* give its size"):
        check("n", unsized, notes)
    egress = parse({**base, "apps": {"n": {**NOTES, "egress": [{"cidr": "10.0.0.0/8", "port": 443}]}}}).apps["n"]
    with pytest.raises(StackConfigError, match=r"mcpfleet:apps.n.egress: mcpfleet-notes declares no external egress"):
        check("n", egress, notes)


def test_a_public_address_block_is_refused_as_egress_naming_the_proxy():
    """notify's Slack target was allowed as 54.0.0.0/12 (a million cloud addresses); outside hosts go by name."""
    slack = {**NOTES, "egress": [{"cidr": "54.0.0.0/12", "port": 443}]}
    with pytest.raises(StackConfigError, match=r"54.0.0.0/12 is not an in-network block: .* through the egress proxy"):
        parse({"issuer": "https://issuer.test", "jwksUrl": "https://issuer.test/jwks", "apps": {"n": slack}})


def test_a_single_node_volume_with_many_replicas_is_refused():
    with pytest.raises(StackConfigError, match="ReadWriteOnce"):
        parse(
            {
                "issuer": "https://issuer.test",
                "jwksUrl": "https://issuer.test/jwks",
                "apps": {"n": {**NOTES, "replicas": 3, "maxReplicas": 3}},
            }
        )


def test_a_value_the_app_would_refuse_at_start_stops_pulumi_up_naming_it():
    """A stack rate limit over the kit's bound (1,000,000) passed `pulumi up`, then every pod exited at start.
    The stack entry now takes the kit's own bound (one definition, `KitSettings`), and the environment the
    platform derives is checked with the app's own settings class as well."""
    apps = {"mcp-db": {"module": "apps.db", "resourceUrl": DB_URL, "maxReplicas": 3, "rateLimitPerMinute": 2_000_000}}
    result = run_program("dev", {"mcpfleet:apps": apps})
    assert result.returncode != 0
    assert "mcpfleet:apps.mcp-db.rateLimitPerMinute: Input should be less than or equal to 1000000" in result.stderr
    limit = KitSettings.model_fields["rate_limit_per_minute"]
    assert AppConfig.model_fields["rate_limit_per_minute"].metadata == limit.metadata
    assert AppConfig.model_fields["rate_limit_per_minute"].default == limit.default


def test_the_rate_limit_gets_redis_whenever_an_app_may_run_more_than_one_replica():
    """No server declares Redis for the kit's rate limiter: one replica keeps its own window in memory; an
    app that may scale out gets REDIS_URL, egress to Redis and Redis's admission, or its limit would not hold."""
    single = run_program("dev", {"mcpfleet:apps": {"mcp-notes": NOTES | {"module": "apps.files"} | _files()}})
    scaled = run_program("dev", {"mcpfleet:apps": {"mcp-oncall": {"module": "apps.oncall", "resourceUrl": ONCALL}}})
    for result in (single, scaled):
        assert result.returncode == 0, result.stderr
    one = Declared("dev", [], kubernetes_objects(json.loads(single.stdout)["resources"]), {})
    many = Declared("dev", [], kubernetes_objects(json.loads(scaled.stdout)["resources"]), {})
    assert "REDIS_URL" not in one.one("Secret", "mcp-notes-secrets", APPS)["stringData"]
    assert one.of_kind("NetworkPolicy", DATA) and not [
        p for p in one.of_kind("NetworkPolicy", DATA) if p["metadata"]["name"] == "redis-from-mcp-notes"
    ]
    assert "REDIS_URL" in many.one("Secret", "mcp-oncall-secrets", APPS)["stringData"]
    many.one("NetworkPolicy", "redis-from-mcp-oncall", DATA)


ONCALL = "http://mcp-oncall.mcp-apps.svc/mcp"


def _files() -> dict[str, object]:
    return {"volumes": {"files": {"size": "1Gi"}}, "resourceUrl": "http://mcp-notes.mcp-apps.svc/mcp"}


def test_more_connections_than_the_database_allows_stops_pulumi_up_with_each_apps_share():
    """replicas x pools x pool size, at maxReplicas, against postgres.maxConnections: the prod stack asked for
    805 of a default 100 before it said what its managed database allows."""
    apps = {"mcp-db": {"module": "apps.db", "resourceUrl": DB_URL, "maxReplicas": 10}}
    result = run_program("dev", {"mcpfleet:apps": apps})
    assert result.returncode != 0
    assert "the apps may open 405 Postgres connections" in result.stderr
    assert "mcpfleet:apps.mcp-db: 10 replicas x 2 pools x 20 = 400" in result.stderr
    apps["mcp-db"]["settings"] = {"DB_POOL_MAX": "9"}  # 10 x 2 x 9 + 5 = 185, within the dev stack's 200
    assert run_program("dev", {"mcpfleet:apps": apps}).returncode == 0


def test_the_statefulset_runs_with_the_max_connections_the_budget_is_checked_against(dev):
    [postgres] = [o for o in dev.of_kind("StatefulSet", DATA) if o["metadata"]["name"] == "postgres"]
    container = postgres["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["postgres", "-c", "max_connections=200"]
