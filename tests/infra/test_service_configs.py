"""Static checks of the configs of the services that cannot run here (Loki, the collector, Grafana)."""

from __future__ import annotations

from pathlib import Path

import yaml

CONFIG = Path("infra/observability")


def load(name: str) -> dict:
    return yaml.safe_load((CONFIG / name).read_text())


def test_loki_is_single_binary_tsdb_v13_with_otlp_ready_limits():
    loki = load("loki.yaml")
    [schema] = loki["schema_config"]["configs"]
    assert (schema["store"], schema["schema"], schema["object_store"]) == ("tsdb", "v13", "filesystem")
    assert loki["limits_config"]["allow_structured_metadata"] is True  # required for OTLP ingestion
    assert loki["common"]["replication_factor"] == 1 and loki["auth_enabled"] is False


def test_collector_pipelines_use_only_defined_components():
    config = load("otelcol.yaml")
    defined = {kind: set(config.get(kind) or {}) for kind in ("receivers", "processors", "exporters", "connectors")}
    for name, pipeline in config["service"]["pipelines"].items():
        for receiver in pipeline["receivers"]:
            assert receiver in defined["receivers"] | defined["connectors"], (name, receiver)
        for processor in pipeline.get("processors", []):
            assert processor in defined["processors"], (name, processor)
        for exporter in pipeline["exporters"]:
            assert exporter in defined["exporters"] | defined["connectors"], (name, exporter)
    assert config["exporters"]["otlphttp/loki"]["endpoint"].endswith(":3100/otlp")
    assert "filelog" in config["service"]["pipelines"]["logs"]["receivers"]  # container stdout too
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["spanmetrics"]


def test_collector_ports_match_the_apps_endpoint_and_prometheus_scrape():
    config = load("otelcol.yaml")
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    prometheus = load("prometheus.yml")
    targets = [t for job in prometheus["scrape_configs"] for c in job.get("static_configs", []) for t in c["targets"]]
    assert (
        f"otel-collector.mcp-node-agents.svc:{config['exporters']['prometheus']['endpoint'].rsplit(':', 1)[1]}"
        in targets
    )


def test_prometheus_labels_mcp_targets_the_way_the_alerts_expect():
    from alerts.params import AlertParams

    prometheus = load("prometheus.yml")
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == AlertParams().job)
    targets = {r.get("target_label") for r in job["relabel_configs"]}
    assert {"app", "namespace", "pod"} <= targets
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == [AlertParams().apps_namespace]


def test_grafana_datasource_uids_are_stable():
    datasources = load("grafana-datasources.yaml")["datasources"]
    assert {(d["uid"], d["type"]) for d in datasources} == {("prometheus", "prometheus"), ("loki", "loki")}


def test_the_dockerfile_default_base_is_the_pinned_python_image(monkeypatch):
    """One pin: the Dockerfile's default, the kind build and the tests all build on infra/images.py's python."""
    import re

    from infra.images import APPS, PINNED

    [default] = re.findall(r"^ARG BASE_IMAGE=(\S+)$", Path("Dockerfile").read_text(), flags=re.M)
    assert default == PINNED["python"]
    monkeypatch.delenv("MCPFLEET_IMAGE_PYTHON", raising=False)
    assert f"BASE_IMAGE={PINNED['python']}" in APPS.build_command("t")
    monkeypatch.setenv("MCPFLEET_IMAGE_PYTHON", "mirror.example.com/python:3.11")
    assert "BASE_IMAGE=mirror.example.com/python:3.11" in APPS.build_command("t")


def test_the_image_tag_follows_every_input_the_dockerfile_copies():
    import re

    from infra.images import APPS

    copied = set(re.findall(r"^COPY (?:--from=\S+ )?(\S+)", Path("Dockerfile").read_text(), flags=re.M))
    copied = {c.rstrip("/") for c in copied if not c.startswith("/")}
    assert copied <= set(APPS.inputs), copied - set(APPS.inputs)
