"""Adding a server with an alert of its own is adding its folder: `tests/support/example_folder/weather` is
dropped into a copy of the fleet (`apps/`, every other server as it is) and, with no other file touched, its
alert is rendered with the fleet's rules and linked to the runbook in its folder, promtool runs its cases, the
on-call server's runbook directories include its page, and the dashboard gets its row."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import apps
from alerts.params import AlertParams
from alerts.rules import alert_names, alerting_rules, render_rules
from apps import fleet
from tests.monitoring import promtool_cases

EXAMPLE = Path(__file__).resolve().parents[1] / "support" / "example_folder" / "weather"
ALERT = "McpWeatherReadingStale"


@pytest.fixture
def fleet_with_weather(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fleet whose `apps/` holds every server of this repository and the example's folder, and nothing else."""
    apps_dir = tmp_path / "apps"
    apps_dir.mkdir()
    for module in fleet.modules():
        (apps_dir / module.removeprefix("apps.")).symlink_to(fleet.folder(module))
    shutil.copytree(EXAMPLE, apps_dir / "weather")
    monkeypatch.setattr(fleet, "APPS_DIR", apps_dir)
    monkeypatch.setattr(apps, "__path__", [*apps.__path__, str(apps_dir)])
    yield apps_dir
    for name in [m for m in sys.modules if m == "apps.weather" or m.startswith("apps.weather.")]:
        del sys.modules[name]


def test_without_the_folder_the_fleet_knows_no_weather_server():
    assert "apps.weather" not in fleet.modules() and ALERT not in alert_names()


def test_its_alert_is_rendered_and_linked_to_the_runbook_in_its_folder(fleet_with_weather: Path):
    assert "apps.weather" in fleet.modules()
    [rule] = [r for r in alerting_rules(AlertParams()) if r["alert"] == ALERT]
    assert rule["expr"] == 'max by (app) (mcp_weather_reading_age_seconds{job="mcp-apps"}) > 900'
    url = rule["annotations"]["runbook_url"]
    assert url == f"{AlertParams().source_url}/apps/weather/runbooks/{ALERT}.md"
    assert (fleet_with_weather.parent / url.removeprefix(AlertParams().source_url + "/")).is_file()
    assert fleet_with_weather / "weather" / "runbooks" in fleet.runbook_dirs()  # shipped by the on-call server


def test_promtool_runs_its_cases_with_the_fleets(fleet_with_weather: Path, promtool: str, tmp_path: Path):
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(render_rules(), sort_keys=False))
    files = []
    for n, document in enumerate(promtool_cases.documents(str(rules))):
        files.append(tmp_path / f"cases-{n}.test.yml")
        files[-1].write_text(yaml.safe_dump(document, sort_keys=False))
    cases = [t for d in promtool_cases.documents(str(rules)) for t in d["tests"] for a in t["alert_rule_test"]
             if a["alertname"] == ALERT]  # fmt: skip
    assert len(cases) == 2  # the firing case and the near miss, from its folder
    result = subprocess.run([promtool, "test", "rules", *map(str, files)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_gets_its_row(fleet_with_weather: Path):
    from dashboards.build import overview, to_json

    rows = [p["title"] for p in json.loads(to_json(overview()))["panels"] if p["type"] == "row"]
    assert "Weather server: readings (mcpfleet-weather)" in rows
