"""Alerts on unusual callers, from the audit stream: Loki ruler rules over the OCSF events every server writes
(`apps/kit/observe/audit.py`), per principal, where a metric label could not be (one series per person would have
no bound). Each has a runbook. Rendered to `audit-rules.yml` by `python -m alerts.render`, mounted for Loki's ruler.

The events arrive as JSON lines in the stream `{mcpfleet_stream="audit"}` (the collector labels them); LogQL's
`json` stage names a nested field by joining its path with `_` (`actor.user.uid` is `actor_user_uid`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alerts.params import AlertParams

STREAM = '{mcpfleet_stream="audit"}'
WHO = "actor_user_uid"  # the subject: a person, or `client:<id>` for a client with none
FIELDS = {  # every event field a rule reads, as LogQL's json stage names it, and where it is in the event
    "actor_user_uid": ("actor", "user", "uid"),
    "actor_app_uid": ("actor", "app_uid"),
    "unmapped_mcp_decision": ("unmapped", "mcp", "decision"),
    "unmapped_mcp_tool": ("unmapped", "mcp", "tool"),
    "api_service_name": ("api", "service", "name"),
    "activity_id": ("activity_id",),
    "time": ("time",),
}


@dataclass(frozen=True)
class AuditParams:
    denials_per_principal: int = 20  # refusals of one principal in `denial_window` (a probe, a stolen token)
    denial_window: str = "5m"
    tools_per_principal: int = 8  # distinct tools one principal called in `spread_window` (enumeration)
    spread_window: str = "15m"
    working_hours_utc: tuple[int, int] = (7, 19)  # writes outside [start, end) are unusual
    clients_per_subject: int = 3  # distinct MCP clients one subject used in `clients_window` (a token passed on)
    clients_window: str = "1h"


def _rule(p: AlertParams, name: str, expr: str, for_: str, summary: str, description: str) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": "warning", "source": "audit", "category": "security"},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"{p.runbook_base_url}/{name}.md",
        },
    }


def audit_rules(p: AlertParams | None = None, a: AuditParams | None = None) -> list[dict[str, Any]]:
    p, a = p or AlertParams(), a or AuditParams()
    start, end = a.working_hours_utc
    return [
        _rule(
            p,
            "McpPrincipalDenialBurst",
            f'sum by ({WHO}, api_service_name) (count_over_time({STREAM} | json | unmapped_mcp_decision="deny"'
            f" [{a.denial_window}])) > {a.denials_per_principal}",
            "1m",
            "{{ $labels.actor_user_uid }}: {{ $value }} refusals in " + a.denial_window,
            f"More than {a.denials_per_principal} of this principal's requests to {{{{ $labels.api_service_name }}}} "
            f"were refused in {a.denial_window} (policies, scopes, the rate limit): a probe, or a token used "
            "for what it was not given for.",
        ),
        _rule(
            p,
            "McpPrincipalManyTools",
            f"count by ({WHO}) (sum by ({WHO}, api_service_name, unmapped_mcp_tool) "
            f'(count_over_time({STREAM} | json | unmapped_mcp_tool!="" [{a.spread_window}]))) '
            f"> {a.tools_per_principal}",
            "5m",
            "{{ $labels.actor_user_uid }} called {{ $value }} different tools in " + a.spread_window,
            f"One principal called more than {a.tools_per_principal} different tools in {a.spread_window}: an "
            "assistant enumerating what it can reach.",
        ),
        _rule(
            p,
            "McpWriteOutsideWorkingHours",
            f"sum by ({WHO}, api_service_name, unmapped_mcp_tool) (count_over_time({STREAM} | json"
            f' | unmapped_mcp_decision="allow" | activity_id!="2" | unmapped_mcp_tool!=""'
            f' | label_format hour=`{{{{ date "15" (unixToTime .time) }}}}` | hour < {start} or hour >= {end}'
            " [10m])) > 0",
            "0m",
            "{{ $labels.actor_user_uid }} wrote with {{ $labels.unmapped_mcp_tool }} outside working hours",
            f"A write tool was allowed outside {start:02d}:00-{end:02d}:00 UTC: check it was the person.",
        ),
        _rule(
            p,
            "McpSubjectFromManyClients",
            f"count by ({WHO}) (sum by ({WHO}, actor_app_uid) (count_over_time({STREAM} | json"
            f' | actor_app_uid!="" [{a.clients_window}]))) > {a.clients_per_subject}',
            "5m",
            "{{ $labels.actor_user_uid }} used {{ $value }} MCP clients in " + a.clients_window,
            f"One subject's tokens came from more than {a.clients_per_subject} MCP clients in {a.clients_window}: "
            "a token shared or stolen, or a person on many machines.",
        ),
    ]


def render_audit_rules(p: AlertParams | None = None) -> dict[str, Any]:
    return {"groups": [{"name": "mcp-audit", "interval": "1m", "rules": audit_rules(p)}]}


def audit_alert_names() -> list[str]:
    return [rule["alert"] for rule in audit_rules()]
