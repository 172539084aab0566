"""Static checks of the monitoring code: promtool and amtool on the real files, cross-references."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from alerts.params import AlertParams
from alerts.render import ALERTMANAGER_FILE, RULES_FILE, TEMPLATES_DIR, main, rendered
from alerts.routing import render_alertmanager
from alerts.rules import alert_names, alerting_rules
from tests.monitoring import promtool_cases


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_checked_in_files_match_their_source():
    assert main(["--check"]) == 0, "run: python -m alerts.render"
    assert RULES_FILE.read_text() == rendered()[RULES_FILE]


def test_rules_pass_promtool_check_with_lint_fatal(promtool):
    result = run(promtool, "check", "rules", "--lint=all", "--lint-fatal", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_promtool_cases_that_fire_and_stay_silent(promtool, tmp_path):
    documents = promtool_cases.documents(str(RULES_FILE))
    covered: dict[str, set[str]] = {"fires": set(), "silent": set()}
    files = []
    for n, document in enumerate(documents):
        for test in document["tests"]:
            for expectation in test["alert_rule_test"]:
                covered["fires" if expectation["exp_alerts"] else "silent"].add(expectation["alertname"])
        files.append(tmp_path / f"mcp-rules-{n}.test.yml")
        files[-1].write_text(yaml.safe_dump(document, sort_keys=False))
    assert covered["fires"] == set(alert_names()) == covered["silent"]
    result = run(promtool, "test", "rules", *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files)


def test_a_broken_expectation_makes_promtool_fail(promtool, tmp_path):
    """The harness can fail: flip one expectation and promtool must report it."""
    document = promtool_cases.documents(str(RULES_FILE))[0]
    document["tests"] = document["tests"][:1]
    document["tests"][0]["alert_rule_test"][0]["exp_alerts"] = []
    test_file = tmp_path / "broken.test.yml"
    test_file.write_text(yaml.safe_dump(document, sort_keys=False))
    assert run(promtool, "test", "rules", str(test_file)).returncode != 0


def test_every_alert_has_labels_annotations_and_a_runbook_url_that_resolves():
    params = AlertParams()
    for rule in alerting_rules(params):
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(params.source_url + "/")
        page = Path(url.removeprefix(params.source_url + "/"))  # runbooks/X.md, or apps/<name>/runbooks/X.md
        assert page.is_file() and page.stem == rule["alert"], url


def test_alertmanager_config_is_valid_with_its_templates(amtool, tmp_path):
    assert run(amtool, "check-config", str(ALERTMANAGER_FILE)).returncode == 0
    local = tmp_path / "alertmanager.yml"
    local.write_text(yaml.safe_dump(render_alertmanager(AlertParams(), str(TEMPLATES_DIR.resolve()))))
    result = run(amtool, "check-config", str(local))
    assert result.returncode == 0 and "1 templates" in result.stdout, result.stdout + result.stderr


def test_an_outside_webhook_through_the_egress_proxy_is_a_valid_alertmanager_config(amtool, tmp_path):
    """Prod's shape: the receiver outside the cluster, reached through Alertmanager's port on the egress proxy."""
    outside = AlertParams(
        webhook_url="https://alerts.example.com/hooks/x", webhook_proxy_url="http://proxy.ns.svc:3130"
    )
    config = render_alertmanager(outside, str(TEMPLATES_DIR.resolve()))
    assert {r["webhook_configs"][0]["http_config"]["proxy_url"] for r in config["receivers"]} == {
        outside.webhook_proxy_url
    }
    (tmp_path / "ok.yml").write_text(yaml.safe_dump(config))
    result = run(amtool, "check-config", str(tmp_path / "ok.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    broken = AlertParams(webhook_url=outside.webhook_url, webhook_proxy_url="://no-scheme")  # the check can fail
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(render_alertmanager(broken, str(TEMPLATES_DIR.resolve()))))
    assert run(amtool, "check-config", str(tmp_path / "broken.yml")).returncode != 0


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "app=mcp-db", "alertname=McpHighErrorRate"], "page"),
        (["severity=warning", "app=mcp-db", "alertname=McpHighCpu"], "ticket"),
        (["severity=info", "app=mcp-db", "alertname=Anything"], "default"),
        (["app=mcp-db", "alertname=NoSeverity"], "default"),
    ],
)
def test_routes_by_severity(amtool, labels, receiver):
    result = run(amtool, "config", "routes", "test", "--config.file", str(ALERTMANAGER_FILE), *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_notification_template_carries_summary_and_runbook(amtool):
    text = '{{ template "mcpfleet.text" . }}'
    result = run(
        amtool, "template", "render", "--template.glob", str(TEMPLATES_DIR / "*.tmpl"), "--template.text", text
    )
    assert result.returncode == 0, result.stderr
    assert "Runbook:" in result.stdout
    template = (TEMPLATES_DIR / "mcpfleet.tmpl").read_text()
    assert ".Annotations.summary" in template and ".Annotations.runbook_url" in template


def test_webhook_url_is_a_parameter():
    config = render_alertmanager(AlertParams(webhook_url="http://receiver.test/hook"))
    urls = {c["url"] for r in config["receivers"] for c in r["webhook_configs"]}
    assert urls == {"http://receiver.test/hook"}


def test_security_pages_are_labelled_and_the_inhibition_spares_them():
    """A page about who is calling is never inhibited by a reliability page of the same app (the real Alertmanager
    shows it in tests/integration/test_monitoring_e2e.py)."""
    from alerts.audit import render_audit_rules
    from alerts.routing import render_alertmanager
    from alerts.rules import SECURITY_ALERTS, render_rules

    labelled = {r["alert"] for g in render_rules()["groups"] for r in g["rules"] if r.get("labels", {}).get("category")}
    assert labelled == SECURITY_ALERTS == {"McpAuthFailureBurst", "McpPolicyDenials", "McpEgressDenied"}
    assert all(r["labels"]["category"] == "security" for g in render_audit_rules()["groups"] for r in g["rules"])
    [inhibit] = render_alertmanager()["inhibit_rules"]
    assert inhibit["target_matchers"] == ['severity="warning"', 'category!="security"']
