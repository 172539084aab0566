"""Real Prometheus and Alertmanager on the test network, loading the project's own rules and routing.

Prometheus evaluates `alerts/` rules rendered from the given `AlertParams` (short `for:` durations in
tests) and sends to Alertmanager, which routes with the project's config to a webhook receiver
container that records every notification. Scrape targets are static, or files under `targets/`
(file service discovery), which a test may write while the stack runs.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from alerts.params import AlertParams
from alerts.render import TEMPLATES_DIR
from alerts.routing import render_alertmanager
from alerts.rules import render_rules
from infra.images import image
from tests.support.stack import ReplicaSet, wait_until

ROOT = Path(__file__).resolve().parents[2]
FAST = AlertParams(
    error_for="2s",
    latency_for="2s",
    auth_for="2s",
    rate_limit_for="2s",
    saturation_for="2s",
    down_for="2s",
    not_ready_for="2s",
    slo_rules_interval="1s",
    webhook_url="http://webhook:8080/alerts",
    group_wait="1s",
    group_interval="1s",
)


def shared_dir() -> Path:
    """A directory the containers' unprivileged users can read."""
    path = Path(tempfile.mkdtemp(prefix="mcpfleet-mon-"))
    path.chmod(0o755)
    return path


@dataclass
class Monitoring:
    prometheus: DockerContainer
    alertmanager: DockerContainer
    webhook: DockerContainer
    config: Path
    replicas: ReplicaSet = field(default_factory=ReplicaSet)

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus.get_exposed_port(9090)}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager.get_exposed_port(9093)}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(self.prometheus_url + "/api/v1/query", params={"query": expr}, timeout=10).json()
        assert response["status"] == "success", (expr, response)
        return response["data"]["result"]  # type: ignore[no-any-return]

    def notifications(self) -> list[dict[str, Any]]:
        port = self.webhook.get_exposed_port(8080)
        return httpx.get(f"http://127.0.0.1:{port}/received", timeout=5).json()  # type: ignore[no-any-return]

    def notified(self, name: str, since: float, **labels: str) -> list[dict[str, Any]]:
        """Firing notifications of `name` (with these labels) received after `since`."""
        return [
            alert
            for entry in self.notifications()
            if entry["received_at"] >= since
            for alert in entry["notification"]["alerts"]
            if alert["labels"].get("alertname") == name
            and alert["status"] == "firing"
            and all(alert["labels"].get(k) == v for k, v in labels.items())
        ]

    def wait_for_alert(self, name: str, since: float, timeout: float = 90, **labels: str) -> tuple[dict, float]:
        """The first firing notification for `name` (and labels) received after `since`, and its delay."""

        def find() -> tuple[dict, float] | None:
            for entry in self.notifications():
                for alert in entry["notification"]["alerts"]:
                    if (
                        alert["labels"].get("alertname") == name
                        and alert["status"] == "firing"
                        and entry["received_at"] >= since
                        and all(alert["labels"].get(k) == v for k, v in labels.items())
                    ):
                        return alert, entry["received_at"] - since
            return None

        return wait_until(find, timeout, 0.5, f"{name} notification")  # type: ignore[no-any-return]

    def set_targets(self, name: str, targets: list[str], labels: dict[str, str]) -> None:
        """Add (or replace) file-discovered scrape targets of job mcp-apps; Prometheus picks them up itself."""
        path = self.config / "targets" / f"{name}.json"
        path.write_text(json.dumps([{"targets": targets, "labels": labels}]))
        path.chmod(0o644)

    def stop(self) -> None:
        for container in (self.prometheus, self.alertmanager, self.webhook):
            container.stop()


def start_monitoring(network: Network, static: list[dict[str, Any]], params: AlertParams = FAST) -> Monitoring:
    """Start the webhook receiver, Alertmanager and Prometheus; `static` are static_configs of job mcp-apps."""
    config = shared_dir()
    (config / "targets").mkdir()
    (config / "targets").chmod(0o755)
    job: dict[str, Any] = {
        "job_name": params.job,
        "static_configs": static,
        "file_sd_configs": [{"files": ["/etc/prometheus/targets/*.json"], "refresh_interval": "1s"}],
    }
    (config / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": ["/etc/prometheus/mcp-rules.yml"],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]},
                "scrape_configs": [job],
            }
        )
    )
    (config / "mcp-rules.yml").write_text(yaml.safe_dump(render_rules(params), sort_keys=False))
    am = shared_dir()
    (am / "alertmanager.yml").write_text(yaml.safe_dump(render_alertmanager(params, "/etc/alertmanager/templates")))
    receiver = shared_dir()
    (receiver / "sink.py").write_text((ROOT / "onebox/sink.py").read_text())
    for directory in (config, am, receiver):
        for file in directory.iterdir():
            if file.is_file():
                file.chmod(0o644)

    webhook = (
        DockerContainer(image("python"))
        .with_command(["python3", "/receiver/sink.py"])
        .with_volume_mapping(str(receiver), "/receiver")
        .with_network(network)
        .with_network_aliases("webhook")
        .with_exposed_ports(8080)
    )
    alertmanager = (
        DockerContainer(image("alertmanager"))
        .with_command(["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"])
        .with_volume_mapping(str(am / "alertmanager.yml"), "/etc/alertmanager/alertmanager.yml")
        .with_volume_mapping(str(TEMPLATES_DIR), "/etc/alertmanager/templates")
        .with_network(network)
        .with_network_aliases("alertmanager")
        .with_exposed_ports(9093)
    )
    prometheus = (
        DockerContainer(image("prometheus"))
        .with_command(["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"])
        .with_volume_mapping(str(config), "/etc/prometheus")
        .with_network(network)
        .with_network_aliases("prometheus")
        .with_exposed_ports(9090)
    )
    for container in (webhook, alertmanager, prometheus):
        container.start()
    monitoring = Monitoring(prometheus, alertmanager, webhook, config)
    wait_until(lambda: monitoring.notifications() == [], 30, 0.5, "webhook receiver answering")
    wait_until(
        lambda: httpx.get(monitoring.alertmanager_url + "/-/ready", timeout=2).status_code == 200,
        30,
        0.5,
        "alertmanager ready",
    )
    wait_until(lambda: monitoring.query("up") is not None, 30, 0.5, "prometheus answering")
    return monitoring
