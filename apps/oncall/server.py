"""The focused on-call MCP server: firing alerts with their runbooks, bounded PromQL, and silences.

It fronts the platform's own Prometheus and Alertmanager (their addresses and credentials are settings)
for the engineer on call and the assistant beside them. Reads need `oncall:read`; creating or expiring
a silence needs `oncall:write`, and a silence is built by the server: equality matchers that name the
alert, a required comment, a capped duration, `createdBy` from the token.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from apps import fleet
from apps.kit import (
    CallerError,
    FocusedServer,
    Needs,
    Telemetry,
    ToolArgs,
    Upstream,
    bounded,
    current_principal,
    dumps,
    log_event,
)
from apps.oncall.alertmanager import Alertmanager
from apps.oncall.config import OncallSettings
from apps.oncall.guards import check_comment, check_query_cost, fit, parse_time, plan_range
from apps.oncall.prometheus import Prometheus
from apps.oncall.runbooks import ALERT_NAME, Runbooks

AlertName = Annotated[str, StringConstraints(pattern=ALERT_NAME.pattern)]
LabelName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$")]
LabelValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/@-]{1,128}$")]
PromQL = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
Time = Annotated[str, StringConstraints(max_length=40)]
Duration = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,6}[smhd]$")]


CREATED_THROUGH = " via mcp-oncall"  # ends the createdBy of every silence this server makes


@dataclass
class Oncall:
    settings: OncallSettings
    prometheus: Prometheus
    alertmanager: Alertmanager
    runbooks: Runbooks
    queries_in_flight: Counter[str] = field(default_factory=Counter)

    def fit(self, answer: dict[str, Any], key: str) -> dict[str, Any]:
        return fit(answer, key, self.settings.oncall_max_answer_bytes)

    @asynccontextmanager
    async def query_slot(self, query: str) -> AsyncIterator[None]:
        """Check the query's cost, then hold one of the caller's PromQL slots while it runs."""
        check_query_cost(query, self.settings.oncall_max_range_hours)
        caller, most = current_principal().rate_key, self.settings.oncall_max_queries_per_caller
        if self.queries_in_flight[caller] >= most:
            raise CallerError(f"you already have {most} queries running; wait for them to finish")
        self.queries_in_flight[caller] += 1
        try:
            yield
        finally:
            self.queries_in_flight[caller] -= 1
            if not self.queries_in_flight[caller]:
                del self.queries_in_flight[caller]


def created_by() -> str:
    """Who a silence is made for, marked as made through this server: only such silences can be expired here."""
    principal = current_principal()
    return (principal.subject or f"client:{principal.client_id}") + CREATED_THROUGH


def _upstream(name: str, url: str, settings: OncallSettings, token: Any) -> Upstream:
    headers = {"Accept": "application/json"}
    if settings.oncall_tenant:
        headers[settings.oncall_tenant_header] = settings.oncall_tenant
    if token is not None:
        headers["Authorization"] = f"Bearer {token.get_secret_value()}"
    return Upstream(
        name,
        url,
        headers=headers,
        timeout=settings.oncall_upstream_timeout_seconds,
        max_bytes=settings.oncall_max_upstream_bytes,
        read_retries=settings.oncall_read_retries,
        too_large_hint="narrow the request (fewer series, a shorter range or a larger step)",
        tolerated=_is_prometheus_error,
    )


def _is_prometheus_error(status: int, body: Any) -> bool:
    """Prometheus answers a query that timed out or was cancelled with 503 and a typed error body."""
    return status == 503 and isinstance(body, dict) and body.get("status") == "error" and "errorType" in body


@asynccontextmanager
async def open_oncall(settings: OncallSettings, telemetry: Telemetry) -> AsyncIterator[Oncall]:
    runbooks = Runbooks.load([settings.oncall_runbooks_dir, *fleet.runbook_dirs()[1:]])
    async with AsyncExitStack() as stack:
        prometheus = _upstream("Prometheus", str(settings.prometheus_url), settings, settings.prometheus_bearer_token)
        stack.push_async_callback(prometheus.aclose)
        alertmanager = _upstream(
            "Alertmanager", str(settings.alertmanager_url), settings, settings.alertmanager_bearer_token
        )
        stack.push_async_callback(alertmanager.aclose)
        yield Oncall(
            settings,
            Prometheus(prometheus, settings.oncall_query_timeout_seconds, settings.oncall_max_series),
            Alertmanager(alertmanager),
            runbooks,
        )


server: FocusedServer[Oncall, OncallSettings] = FocusedServer(
    "mcpfleet-oncall",
    OncallSettings,
    open_oncall,
    instructions="For the engineer on call: firing alerts with their runbooks, bounded PromQL, and silences. "
    "Silence an alert with a comment; follow the runbook; silence only what you are handling.",
    needs=Needs(services={"PROMETHEUS_URL": "prometheus", "ALERTMANAGER_URL": "alertmanager"}),
)


class FiringArgs(ToolArgs):
    severity: Literal["critical", "warning", "info"] | None = None
    app: LabelValue | None = Field(default=None, description="only alerts with this `app` label")
    limit: Annotated[int, Field(ge=1, le=100)] = 20


class RunbookArgs(ToolArgs):
    alert: AlertName
    app: LabelValue | None = Field(default=None, description="fill in the page's APP with this app")


class InstantArgs(ToolArgs):
    query: PromQL
    time: Time | None = Field(default=None, description="RFC 3339; default now")


class RangeArgs(ToolArgs):
    query: PromQL
    range: Duration = Field(default="1h", description="how far back from `end`, e.g. 30m, 6h (capped)")
    end: Time | None = Field(default=None, description="RFC 3339; default now")
    step_seconds: Annotated[int | None, Field(ge=1, le=86400)] = None
    raw: bool = Field(default=False, description="points instead of a per-series summary (fewer, within caps)")


class SilencesArgs(ToolArgs):
    state: Literal["active", "pending", "expired", "all"] = "active"
    limit: Annotated[int, Field(ge=1, le=100)] = 20


class CreateSilenceArgs(ToolArgs):
    alertname: AlertName
    matchers: Annotated[dict[LabelName, LabelValue], Field(max_length=8)] = Field(
        default_factory=dict, description="more labels the alert must carry, matched exactly (e.g. app)"
    )
    duration_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)]
    comment: Annotated[str, StringConstraints(min_length=10, max_length=500)] = Field(
        description="why, and what is being done, in words (required)"
    )


class ExpireSilenceArgs(ToolArgs):
    silence_id: Annotated[str, StringConstraints(max_length=36)]


def _alert_entry(alert: dict[str, Any], runbooks: Runbooks) -> dict[str, Any]:
    labels, annotations = alert.get("labels", {}), alert.get("annotations", {})
    name = labels.get("alertname", "")
    entry: dict[str, Any] = {
        "alertname": name,
        "severity": labels.get("severity"),
        "app": labels.get("app"),
        "since": alert.get("startsAt"),
        "summary": bounded(str(annotations.get("summary", "")), 300),
        "labels": {k: bounded(str(v), 200) for k, v in sorted(labels.items())[:20]},
        "fingerprint": alert.get("fingerprint"),
    }
    entry["runbook"] = name if name in runbooks.pages else None
    return entry


@server.tool(scopes={"oncall:read"}, read_only=True)
async def list_firing_alerts(args: FiringArgs, oncall: Oncall) -> dict[str, Any]:
    """Alerts firing now (not silenced or inhibited), most severe first, each with its runbook. The
    runbook texts come with the server (the repository's runbooks/), with APP filled in."""
    filters = {k: v for k, v in (("severity", args.severity), ("app", args.app)) if v}
    alerts = await oncall.alertmanager.firing(filters)
    entries = [_alert_entry(alert, oncall.runbooks) for alert in alerts[: args.limit]]
    pages: dict[str, str] = {}
    for entry in entries:
        key = f"{entry['alertname']}/{entry['app']}" if entry["app"] else entry["alertname"]
        if entry["runbook"] and key not in pages:
            pages[key] = oncall.runbooks.page(entry["alertname"], entry["app"]) or ""
        entry["runbook"] = key if entry["runbook"] else None
    answer = {"alerts": entries, "total": len(alerts), "truncated": len(alerts) > len(entries)}
    answer = oncall.fit(answer, "alerts")
    room = oncall.settings.oncall_max_answer_bytes - len(dumps(answer)) - 256
    runbooks, omitted = {}, []
    for key, text in pages.items():
        if len(dumps(text)) + len(dumps(key)) + 2 <= room:
            runbooks[key] = text
            room -= len(dumps(text)) + len(dumps(key)) + 2
        else:
            omitted.append(key)
    answer["runbooks"] = runbooks
    if omitted:
        answer["runbooks_omitted"] = omitted
        answer["runbooks_note"] = "left out to keep the answer small; read them with get_runbook"
    return answer


@server.tool(scopes={"oncall:read"}, read_only=True)
async def get_runbook(args: RunbookArgs, oncall: Oncall) -> dict[str, Any]:
    """The runbook page of an alert (Meaning, Impact, Diagnosis, Mitigation, Resolution), and its PromQL
    queries ready for query_metrics (with APP filled in when `app` is given)."""
    text = oncall.runbooks.page(args.alert, args.app)
    if text is None:
        raise CallerError(
            f"no runbook for {args.alert!r}; runbooks exist for: {', '.join(sorted(oncall.runbooks.pages))}"
        )
    budget = oncall.settings.oncall_max_answer_bytes - 512
    clipped = text.encode()[:budget].decode("utf-8", "ignore")
    answer: dict[str, Any] = {"alert": args.alert, "text": clipped, "queries": oncall.runbooks.queries(text)}
    if len(clipped) < len(text):
        answer["truncated"] = True
    return answer


@server.tool(scopes={"oncall:read"}, read_only=True)
async def query_metrics(args: InstantArgs, oncall: Oncall) -> dict[str, Any]:
    """An instant PromQL query. At most the server's series cap is returned, with the total count."""
    at = parse_time(args.time, datetime.now(UTC))
    async with oncall.query_slot(args.query):
        result = await oncall.prometheus.instant(args.query, at)
    return oncall.fit(result, "series") if "series" in result else result


@server.tool(scopes={"oncall:read"}, read_only=True)
async def query_range(args: RangeArgs, oncall: Oncall) -> dict[str, Any]:
    """A PromQL range query over at most the server's range cap (default 24 h). Each series comes as a
    summary (min, max, avg, last) unless `raw`; the step is raised to keep points within the caps."""
    settings = oncall.settings
    end = parse_time(args.end, datetime.now(UTC))
    plan = plan_range(
        args.range, end, args.step_seconds, args.raw, settings.oncall_max_range_hours, settings.oncall_max_raw_points
    )
    async with oncall.query_slot(args.query):
        return oncall.fit(await oncall.prometheus.range(args.query, plan, args.raw), "series")


@server.tool(scopes={"oncall:read"}, read_only=True)
async def list_silences(args: SilencesArgs, oncall: Oncall) -> dict[str, Any]:
    """Silences in Alertmanager (default: active), newest first: matchers, who, why, until when."""
    silences = [
        s for s in await oncall.alertmanager.silences() if args.state == "all" or s["status"]["state"] == args.state
    ]
    silences.sort(key=lambda s: s.get("startsAt", ""), reverse=True)
    entries = [
        {
            "id": s["id"],
            "state": s["status"]["state"],
            "matchers": [
                f"{m['name']}{'=' if m.get('isEqual', True) else '!'}{'~' if m.get('isRegex') else ''}"
                f"{bounded(str(m['value']), 200)}"
                for m in s.get("matchers", [])
            ],
            "created_by": bounded(str(s.get("createdBy", "")), 200),
            "comment": bounded(str(s.get("comment", "")), 500),
            "starts_at": s.get("startsAt"),
            "ends_at": s.get("endsAt"),
        }
        for s in silences[: args.limit]
    ]
    return oncall.fit(
        {"silences": entries, "total": len(silences), "truncated": len(silences) > len(entries)}, "silences"
    )


@server.tool(scopes={"oncall:write"}, read_only=False, destructive=True)
async def create_silence(args: CreateSilenceArgs, oncall: Oncall) -> dict[str, Any]:
    """Silence one alert (by name, and exactly matching any other labels given) for a while, with a
    comment. Notifications for it stop until the silence ends or is expired. Duration is capped."""
    cap = oncall.settings.oncall_max_silence_hours
    if args.duration_minutes > cap * 60:
        raise CallerError(f"duration {args.duration_minutes} min is over the {cap:g} h cap")
    if "alertname" in args.matchers:
        raise CallerError("give the alert's name as `alertname`, not among `matchers`")
    comment = check_comment(args.comment)
    maker = created_by()
    most = oncall.settings.oncall_max_silences_per_caller
    mine = [
        s
        for s in await oncall.alertmanager.silences()
        if s.get("createdBy") == maker and s.get("status", {}).get("state") in ("active", "pending")
    ]
    if len(mine) >= most:
        raise CallerError(f"you have {len(mine)} silences running (at most {most}); expire one you no longer need")
    matchers = {"alertname": args.alertname, **args.matchers}
    now = datetime.now(UTC)
    duration = timedelta(minutes=args.duration_minutes)
    silence_id = await oncall.alertmanager.create_silence(matchers, now, duration, maker, comment)
    log_event(
        "oncall_audit",
        logging.WARNING,
        action="create_silence",
        silence_id=silence_id,
        matchers=matchers,
        created_by=maker,
        minutes=args.duration_minutes,
    )
    return {
        "silence_id": silence_id,
        "matchers": matchers,
        "created_by": maker,
        "ends_at": (now + duration).isoformat(timespec="seconds"),
    }


@server.tool(scopes={"oncall:write"}, read_only=False, destructive=True, idempotent=True)
async def expire_silence(args: ExpireSilenceArgs, oncall: Oncall) -> dict[str, Any]:
    """End a silence you made through this server: notifications for what it matched resume. Silences made
    by people in Alertmanager, or by another caller, are not touched."""
    silence = await oncall.alertmanager.silence(args.silence_id)
    if silence is None:
        raise CallerError(f"there is no silence {args.silence_id}")
    if silence.get("createdBy") != created_by():
        raise CallerError(
            "this silence was not made by you through this server; only its maker (or a person in "
            "Alertmanager) can end it"
        )
    if silence.get("status", {}).get("state") != "expired":
        await oncall.alertmanager.expire_silence(args.silence_id)
    principal = current_principal()
    log_event(
        "oncall_audit",
        logging.WARNING,
        action="expire_silence",
        silence_id=args.silence_id,
        subject=principal.subject,
        client_id=principal.client_id,
    )
    return {"expired": args.silence_id}
