"""Every alert has a runbook and every runbook an alert; every PromQL in runbooks and dashboards parses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from alerts.audit import audit_alert_names
from alerts.rules import alert_names as prometheus_alert_names
from alerts.serverless import SERVERLESS_ALERTS
from apps import fleet
from dashboards.build import DASHBOARDS
from dashboards.build import main as build_dashboards
from onebox import runbooks
from tests.monitoring.promql import fenced_blocks, grafana_to_promql, parse_errors

DASHBOARDS_DIR = Path("dashboards")
SECTIONS = ["Meaning", "Impact", "Diagnosis", "Mitigation", "Resolution and follow-up"]


SERVERLESS = {alert.name for alert in SERVERLESS_ALERTS}  # the clouds' alerts: diagnosed with their CLIs


AUDIT = set(audit_alert_names())  # Loki's ruler, over the audit stream: diagnosed with LogQL


def alert_names() -> list[str]:
    return prometheus_alert_names() + sorted(SERVERLESS) + sorted(AUDIT)


def runbook_pages() -> dict[str, str]:
    """The fleet's pages and each server's own (apps/<name>/runbooks/), as the on-call server ships them."""
    return {p.stem: p.read_text() for d in fleet.runbook_dirs() for p in d.glob("*.md") if p.name != "README.md"}


def test_alerts_and_runbooks_match_one_to_one():
    assert set(runbook_pages()) == set(alert_names())


@pytest.mark.parametrize("name", sorted(alert_names()))
def test_runbook_has_every_section_in_order(name):
    text = runbook_pages()[name]
    assert text.startswith(f"# {name}\n")
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings == SECTIONS
    diagnosis = text.split("## Diagnosis")[1].split("## Mitigation")[0]
    if name in SERVERLESS:  # nothing scrapes a serverless instance: the cloud's CLI instead of PromQL
        assert "gcloud" in diagnosis and "aws " in diagnosis
        return
    if name in AUDIT:  # per principal: the audit stream's own query
        assert fenced_blocks(diagnosis, "logql"), "Diagnosis needs the LogQL to run"
        return
    assert fenced_blocks(diagnosis, "promql"), "Diagnosis needs the PromQL to run"
    assert fenced_blocks(diagnosis, "sh") or "kubectl" in diagnosis


def test_every_kubectl_and_loki_step_has_its_one_machine_form():
    """Each diagnosis step that needs the cluster (`kubectl`) or Loki is followed by what to run on one machine;
    pages whose alert cannot fire there say why (tests/support/runbooks.py). The forms run in
    tests/integration/test_one_machine.py against the composed stack."""
    pages = runbooks.pages()
    assert set(runbooks.CLUSTER_ONLY) <= set(pages)
    missing = {
        name: gaps
        for name, page in pages.items()
        if name not in runbooks.CLUSTER_ONLY and (gaps := runbooks.missing_one_machine_forms(page))
    }
    assert missing == {}
    assert runbooks.missing_one_machine_forms("## Diagnosis\n```sh\nkubectl get pods\n```\n## Mitigation") == [
        "kubectl get pods"
    ]  # the check can fail
    assert "cannot fire" in pages["McpEgressDenied"]


def test_the_ingress_step_names_both_ingresses_a_stack_runs():
    """The auth-failure page looks at the ingress the stack runs: NGINX (prod's className) or the dev edge's Traefik."""
    page = runbooks.pages()["McpAuthFailureBurst"]
    assert "ingress-nginx-controller" in page and "-n mcp-ingress logs deploy/traefik" in page


def test_every_runbook_promql_parses(promtool, tmp_path):
    expressions = {
        f"{name} #{i}": expr
        for name, text in runbook_pages().items()
        for i, expr in enumerate(fenced_blocks(text, "promql"))
    }
    assert len(expressions) >= 20
    assert parse_errors(promtool, expressions, tmp_path) == ""


def test_a_broken_expression_is_caught(promtool, tmp_path):
    assert "broken" in parse_errors(promtool, {"broken": "sum by (app (rate(x[5m]))"}, tmp_path)


def test_dashboards_are_up_to_date_and_follow_conventions():
    assert build_dashboards(["--check"]) == 0, "run: python -m dashboards.build"
    for name in DASHBOARDS:
        board = json.loads((DASHBOARDS_DIR / name).read_text())
        assert board["uid"] and re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"])
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] == "${datasource}"
                assert "instance=" not in target["expr"], "no hard-coded instance"


def test_dashboard_covers_what_on_call_needs():
    board = json.loads((DASHBOARDS_DIR / "mcp-overview.json").read_text())
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p.get("targets", []))
    for needle in (
        "mcp_server_operation_duration_seconds_count",
        "histogram_quantile(0.5",
        "histogram_quantile(0.95",
        "histogram_quantile(0.99",
        "mcp_auth_failures_total",
        "mcp_authz_denials_total",
        "mcp_rate_limited_total",
        "mcp_inflight_calls",
        "mcp_db_pool_connections_in_use",
        "mcp:cpu_usage:ratio_limit",
        "mcp:memory_usage:ratio_limit",
        "mcp:slo_error_budget:remaining_ratio",
    ):
        assert needle in exprs, needle


def test_every_dashboard_promql_parses(promtool, tmp_path):
    expressions = {}
    for name in DASHBOARDS:
        board = json.loads((DASHBOARDS_DIR / name).read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expressions[f"{name}: {panel['title']} {target['refId']}"] = grafana_to_promql(target["expr"])
    assert parse_errors(promtool, expressions, tmp_path) == ""


def _board(params=None, servers=None) -> dict:
    from dashboards.build import overview, to_json

    return json.loads(to_json(overview(params, servers)))


def _threshold(board: dict, title: str) -> float:
    [panel] = [p for p in board["panels"] if p["title"] == title]
    return panel["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"]


def test_dashboard_thresholds_and_names_come_from_the_alert_params():
    from alerts.params import AlertParams

    default = _board()
    assert _threshold(default, "Error ratio (server faults)") == AlertParams().error_ratio
    assert _threshold(default, "p99 by tool") == AlertParams().latency_p99_seconds
    assert _threshold(default, "CPU against limit") == AlertParams().cpu_ratio
    custom = _board(AlertParams(error_ratio=0.05, latency_p99_seconds=2.5, slo_target=0.995, job="mcp-edge"))
    assert _threshold(custom, "Error ratio (server faults)") == 0.05
    assert _threshold(custom, "p99 by tool") == 2.5
    assert any(p["title"] == "SLO error budget remaining (30d, 99.5%)" for p in custom["panels"])
    exprs = [t["expr"] for p in custom["panels"] for t in p.get("targets", []) if "mcp_server_operation" in t["expr"]]
    assert exprs and all('job="mcp-edge"' in e for e in exprs)


def test_a_server_adds_a_row_only_for_series_it_exports():
    from apps.db.server import server as db
    from tests.support.notes_app.server import server as notes

    titles = [p["title"] for p in _board(servers=[db, notes])["panels"] if p["type"] == "row"]
    assert titles.count("Database server: connection pools (mcpfleet-db)") == 1
    assert not any("notes" in t for t in titles)  # notes exports no series of its own: no row
    assert not any("pool" in p["title"] for p in _board(servers=[notes])["panels"])
