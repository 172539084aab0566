"""Alerts on unusual callers from the audit stream (`alerts/audit.py`), checked statically: Loki's ruler cannot run
here (no Loki package for this machine), so what is shown is that every rule reads only fields a real audit event
has (as LogQL's json stage names them), selects the audit stream the collector labels, has a runbook, and is the
file Loki is given."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from alerts.audit import FIELDS, STREAM, audit_rules
from alerts.render import AUDIT_RULES_FILE, rendered
from apps.kit.observe.audit import SINKS, AuditTrail, Who

REPO = Path(__file__).resolve().parents[2]


def flattened(event: dict, prefix: str = "") -> dict[str, object]:
    """An event's fields as LogQL's json stage names them (nested keys joined with `_`)."""
    out: dict[str, object] = {}
    for key, value in event.items():
        name = f"{prefix}_{key}" if prefix else key
        out |= flattened(value, name) if isinstance(value, dict) else {name: value}
    return out


def a_real_event() -> dict:
    lines: list[str] = []
    SINKS.append(lines.append)
    try:
        AuditTrail("mcpfleet-db", "1", "https://issuer").record(
            who=Who("ada", "client-1"), allowed=False, decided_by="policy", outcome="forbidden", tool="query",
            resource={"type": "Table", "id": "customers"}, activity="read", arguments_sha256="0" * 64,
        )  # fmt: skip
    finally:
        SINKS.remove(lines.append)
    return json.loads(lines[0])


def test_every_rule_reads_fields_a_real_audit_event_has_from_the_audit_stream():
    fields = flattened(a_real_event())
    for name, path in FIELDS.items():
        assert name in fields, name  # the name LogQL gives the field is one the event has
        event = a_real_event()
        for step in path:
            event = event[step]
    for rule in audit_rules():
        assert rule["expr"].count(STREAM) == 1, rule["alert"]
        used = set(re.findall(r"\b([a-z]+(?:_[a-z]+)+)\b", rule["expr"].replace(STREAM, "")))
        used -= {"count_over_time", "label_format"}
        assert used <= set(FIELDS), (rule["alert"], used - set(FIELDS))


def test_every_audit_alert_has_a_runbook_and_the_file_is_the_rendering():
    for rule in audit_rules():
        assert (REPO / "runbooks" / f"{rule['alert']}.md").is_file(), rule["alert"]
        assert rule["annotations"]["runbook_url"].endswith(f"runbooks/{rule['alert']}.md")
    assert AUDIT_RULES_FILE.read_text() == rendered()[AUDIT_RULES_FILE]
    assert [r["alert"] for r in yaml.safe_load(AUDIT_RULES_FILE.read_text())["groups"][0]["rules"]] == [
        r["alert"] for r in audit_rules()
    ]


def test_the_collector_labels_audit_lines_and_loki_indexes_the_label():
    collector = yaml.safe_load((REPO / "infra/observability/otelcol.yaml").read_text())
    operators = collector["receivers"]["filelog"]["operators"]
    [audit] = [op for op in operators if op.get("field") == 'resource["mcpfleet.stream"]']
    assert audit["value"] == "audit" and "class_uid" in audit["if"]
    line = json.dumps(a_real_event(), separators=(",", ":"), sort_keys=True)
    assert re.search(audit["if"].split('"', 1)[1].rsplit('"', 1)[0].replace('\\\\"', '"'), line)
    loki = yaml.safe_load((REPO / "infra/observability/loki.yaml").read_text())
    [indexed] = loki["limits_config"]["otlp_config"]["resource_attributes"]["attributes_config"]
    assert indexed == {"action": "index_label", "attributes": ["mcpfleet.stream"]}
    assert loki["ruler"]["storage"]["local"]["directory"] == "/etc/loki-rules"
