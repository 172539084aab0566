"""Alertmanager configuration: routes by severity, grouping by alert and app, inhibition, receivers.

Critical alerts page (short repeat), warnings open tickets (longer repeat); both reach the
webhook receiver, whose URL is a parameter. A critical alert for an app silences the
same app's warnings, so on-call sees the cause, not its echoes.
"""

from __future__ import annotations

from typing import Any

from alerts.params import AlertParams


def render_alertmanager(
    p: AlertParams | None = None, template_dir: str = "/etc/alertmanager/templates"
) -> dict[str, Any]:
    p = p or AlertParams()
    webhook: dict[str, Any] = {"url": p.webhook_url, "send_resolved": True, "max_alerts": 20}
    if p.webhook_proxy_url:  # an outside receiver is reached by name through the egress proxy, like the apps' hosts
        webhook["http_config"] = {"proxy_url": p.webhook_proxy_url}
    return {
        "global": {"resolve_timeout": "5m"},
        "templates": [f"{template_dir}/*.tmpl"],
        "route": {
            "receiver": "default",
            "group_by": ["alertname", "app"],
            "group_wait": p.group_wait,
            "group_interval": p.group_interval,
            "repeat_interval": p.repeat_interval_warning,
            "routes": [
                {
                    "receiver": "page",
                    "matchers": ['severity="critical"'],
                    "repeat_interval": p.repeat_interval_critical,
                },
                {"receiver": "ticket", "matchers": ['severity="warning"']},
                {"receiver": "default", "matchers": ['severity="info"']},
            ],
        },
        "inhibit_rules": [
            {  # a critical page on an app stands for its warnings, except the security ones (alerts/rules.py)
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"', 'category!="security"'],
                "equal": ["app"],
            },
        ],
        "receivers": [
            {"name": "page", "webhook_configs": [webhook]},
            {"name": "ticket", "webhook_configs": [webhook]},
            {"name": "default", "webhook_configs": [webhook]},
        ],
    }
