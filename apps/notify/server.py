"""The focused notification MCP server: it lets an assistant tell people things, and nothing more.

A message goes to a named target from configuration (never a URL, channel or address from the caller),
in two steps: `preview_notification` renders it under the outbound policy and stores the exact bytes to
send; `send_notification(preview_id)` sends that preview once. Previews, dedupe windows, send rates and
back-offs live in Redis, so any replica can send a preview another made, and limits hold across them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints
from redis.asyncio import Redis

from apps.kit import CallerError, Check, FocusedServer, Needs, On, Telemetry, ToolArgs, current_principal, log_event
from apps.notify.config import NotifySettings, Target, TargetName
from apps.notify.delivery import Courier, Delivered, DeliveryUncertain, Throttled, subject_problem
from apps.notify.ledger import Ledger
from apps.notify.network import DeliveryFailed, DeliveryRefused
from apps.notify.policy import refuse_secrets, slack_escape, strip_mass_mentions
from apps.notify.telemetry import ALERTS, DASHBOARD, NotifyMetrics

# No control characters, C1 controls (U+0085 NEL among them) or Unicode line and paragraph separators: a
# subject is one line wherever it goes (an email header, a chat title).
Subject = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]+$")
]
Body = Annotated[str, StringConstraints(min_length=1, max_length=4000, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]+$")]
DedupeKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:/-]{1,128}$")]
PreviewId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


@dataclass
class Notify:
    settings: NotifySettings
    ledger: Ledger
    courier: Courier
    metrics: NotifyMetrics
    redis: Redis
    secrets: dict[str, dict[str, str]]

    def readiness_checks(self) -> dict[str, Check]:
        return {"state": self.redis.ping}

    def target(self, name: str) -> Target:
        target = self.settings.notify_targets.get(name)
        if target is None:
            known = ", ".join(sorted(self.settings.notify_targets))
            raise CallerError(f"unknown target {name!r}; targets: {known}")
        return target

    def signing_key(self, name: str) -> bytes:
        own = self.secrets.get(name, {}).get("signing_key")
        return (own or self.settings.notify_signing_key.get_secret_value()).encode()


@asynccontextmanager
async def open_notify(settings: NotifySettings, telemetry: Telemetry) -> AsyncIterator[Notify]:
    secrets = settings.target_secrets()
    for name, target in settings.notify_targets.items():
        url = secrets.get(name, {}).get("url", "")
        if target.kind == "slack" and not url.startswith("https://"):
            raise ValueError(f"target {name!r}: give its Slack webhook URL (https) in NOTIFY_TARGET_SECRETS")
    async with AsyncExitStack() as stack:
        redis = Redis.from_url(settings.redis_url.get_secret_value(), socket_timeout=2.0, socket_connect_timeout=2.0)
        stack.push_async_callback(redis.aclose)
        courier = Courier(
            settings.notify_timeout_seconds,
            str(settings.notify_ca_file) if settings.notify_ca_file else None,
            settings.notify_smtp_password.get_secret_value() if settings.notify_smtp_password else None,
            settings.notify_max_retry_after_seconds,
            str(settings.mcp_egress_proxy) if settings.mcp_egress_proxy else None,
        )
        stack.push_async_callback(courier.aclose)
        kinds: dict[str, str] = {name: target.kind for name, target in settings.notify_targets.items()}
        ledger = Ledger(redis, settings.redis_key_prefix)
        yield Notify(settings, ledger, courier, NotifyMetrics(telemetry.registry, kinds), redis, secrets)


server: FocusedServer[Notify, NotifySettings] = FocusedServer(
    "mcpfleet-notify",
    NotifySettings,
    open_notify,
    instructions="Tell people things through named targets (list_targets). Preview first, check the rendered "
    "message, then send that preview. Never put secrets in a message; mass mentions are removed.",
    needs=Needs(
        redis=True,
        outside_hosts_from=NotifySettings.outside_hosts,  # its webhook and Slack targets, by name
        external_egress=True,  # an SMTP relay, by address
        secrets={"NOTIFY_SIGNING_KEY": "signingKey"},
        optional_secrets={"NOTIFY_TARGET_SECRETS": "targetSecrets", "NOTIFY_SMTP_PASSWORD": "smtpPassword"},
    ),
    dashboard=DASHBOARD,
    alerts=ALERTS,
)


class NoArgs(ToolArgs):
    pass


class PreviewArgs(ToolArgs):
    target: TargetName
    subject: Subject
    body: Body
    severity: Literal["info", "warning", "critical"] = "info"
    dedupe_key: DedupeKey | None = Field(
        default=None, description="a second message with this key to this target within the window is not sent"
    )


class SendArgs(ToolArgs):
    preview_id: PreviewId


def _caller() -> tuple[str, str]:
    """The principal's rate key (what a preview is bound to) and a readable name for messages."""
    principal = current_principal()
    return principal.rate_key, principal.subject or f"client {principal.client_id}"


def render(
    target: Target, name: str, args: PreviewArgs, subject: str, body: str, sender: str, pid: str
) -> dict[str, Any]:
    """What will be sent, exactly: the webhook or Slack JSON, or the email's subject and text."""
    if target.kind == "webhook":
        payload = {
            "id": pid,
            "target": name,
            "severity": args.severity,
            "subject": subject,
            "body": body,
            "sent_by": sender,
        }
        return {"json": payload}
    if target.kind == "slack":
        text = (
            f"[{args.severity.upper()}] *{slack_escape(subject)}*\n{slack_escape(body)}\n"
            f"_sent by {slack_escape(sender)}_"
        )
        return {"json": {"text": text, "unfurl_links": False, "unfurl_media": False}}
    email_subject = f"[{args.severity}] {subject}"
    return {"subject": email_subject, "text": f"{body}\n\n-- \nSent through mcp-notify by {sender}.\n"}


@server.tool(scopes={"notify:read"}, read_only=True)
async def list_targets(args: NoArgs, notify: Notify) -> dict[str, Any]:
    """The targets a message can go to: names and kinds only (never addresses or secrets)."""
    return {"targets": [{"name": n, "kind": t.kind} for n, t in sorted(notify.settings.notify_targets.items())]}


@server.tool(
    scopes={"notify:send"}, read_only=False, idempotent=False, open_world=False, acts_on=On("Target", "{target}")
)
async def preview_notification(args: PreviewArgs, notify: Notify) -> dict[str, Any]:
    """Render a message for a target under the outbound policy and keep it for sending: returns the
    rendered message, what the policy changed, and a preview id that send_notification sends once."""
    target = notify.target(args.target)
    # ~30 detectors over up to 4,000 characters: milliseconds of CPU, kept off the event loop
    await asyncio.to_thread(refuse_secrets, args.subject, args.body, args.dedupe_key or "")
    subject, body, changes = args.subject, args.body, []
    if not target.allow_mass_mentions:
        subject, in_subject = strip_mass_mentions(subject)
        body, in_body = strip_mass_mentions(body)
        if in_subject + in_body:
            changes.append(f"removed {in_subject + in_body} mass mention(s) (@channel, @here, @everyone)")
    caller, sender = _caller()
    preview_id = uuid.uuid4().hex
    rendered = render(target, args.target, args, subject, body, sender, preview_id)
    if target.kind == "email" and (problem := subject_problem(rendered["subject"])):
        raise CallerError(f"the subject cannot be sent by email: {problem}")
    content = json.dumps(rendered, sort_keys=True, ensure_ascii=False)
    dedupe = hashlib.sha256(args.dedupe_key.encode()).hexdigest()[:32] if args.dedupe_key else None
    expires = datetime.now(UTC) + timedelta(seconds=notify.settings.notify_preview_seconds)
    await notify.ledger.save_preview(
        preview_id,
        {
            "target": args.target,
            "caller": caller,
            "rendered": rendered,
            "dedupe": dedupe,
            "sha256": hashlib.sha256(content.encode()).hexdigest(),
        },
        notify.settings.notify_preview_seconds,
    )
    answer: dict[str, Any] = {
        "preview_id": preview_id,
        "target": args.target,
        "kind": target.kind,
        "rendered": rendered,
        "expires_at": expires.isoformat(timespec="seconds"),
        "changes": changes,
    }
    if target.kind == "email":
        answer["recipients"] = len(target.recipients)  # how many, never who: addresses are configuration
    return answer


@server.tool(scopes={"notify:send"}, read_only=False, idempotent=True, open_world=True)
async def send_notification(args: SendArgs, notify: Notify) -> dict[str, Any]:
    """Send a preview, exactly as rendered, once. Sending it again returns the first result and sends nothing."""
    ledger, settings = notify.ledger, notify.settings
    caller, _ = _caller()
    preview = await ledger.preview(args.preview_id)
    if preview is None:
        if (done := await ledger.sent(args.preview_id)) is not None and done.pop("caller", None) == caller:
            return {**done, "already_sent": True}
        # Another caller's result is theirs: to anyone else a sent preview is as unknown as a made-up id.
        raise CallerError("unknown or expired preview; preview the message again")
    if preview["caller"] != caller:
        raise CallerError("this preview was made by another caller; preview the message yourself")
    name = preview["target"]
    target = notify.target(name)
    verdict = await ledger.begin(
        args.preview_id,
        name,
        preview["dedupe"],
        target.per_minute,
        settings.notify_global_per_minute,
        settings.notify_dedupe_seconds,
    )
    if verdict.status == "sent":
        done = json.loads(verdict.detail)
        done.pop("caller", None)  # the preview is this caller's (checked above)
        return {**done, "already_sent": True}
    refusals = {
        "missing": "the preview expired; preview the message again",
        "backoff": f"target {name!r} asked us to wait (HTTP 429); retry after {verdict.wait_seconds} s",
        "busy": "this preview is being sent right now by another request",
        "rate_target": f"target {name!r} is at its limit of {target.per_minute} messages a minute; "
        f"retry after {verdict.wait_seconds} s",
        "rate_global": f"the server is at its limit of {settings.notify_global_per_minute} messages a minute; "
        f"retry after {verdict.wait_seconds} s",
        "duplicate": f"a message with this dedupe key went to {name!r} in the last "
        f"{settings.notify_dedupe_seconds} s; not sent again (the window ends in {verdict.wait_seconds} s)",
    }
    if verdict.status != "ok":
        raise CallerError(refusals.get(verdict.status, verdict.status))
    return await _deliver(notify, args.preview_id, name, target, preview)


async def _deliver(
    notify: Notify, preview_id: str, name: str, target: Target, preview: dict[str, Any]
) -> dict[str, Any]:
    rendered = preview["rendered"]
    principal = current_principal()
    audit = {
        "target": name,
        "preview_id": preview_id,
        "content_sha256": preview["sha256"],
        "subject": principal.subject,
        "client_id": principal.client_id,
    }
    started = time.monotonic()
    try:
        delivered = await _hand_over(notify, name, target, rendered, preview_id)
    except Throttled as throttled:
        await notify.ledger.abandon(preview_id, name, preview["dedupe"], throttled.retry_after)
        notify.metrics.deliveries.labels(target=name, kind=target.kind, outcome="throttled").inc()
        log_event("notify_audit", logging.WARNING, outcome="throttled", upstream_status=429, **audit)
        raise CallerError(
            f"target {name!r} is rate limiting us (HTTP 429); retry after {throttled.retry_after} s "
            "(the preview stays valid until it expires)"
        ) from None
    except DeliveryUncertain as error:
        # It may have arrived: the preview counts as used, so sending it again sends nothing.
        uncertain = {"sent": "uncertain", "preview_id": preview_id, "target": name, "detail": str(error)}
        await notify.ledger.finish(preview_id, {**uncertain, "caller": preview["caller"]})
        notify.metrics.deliveries.labels(target=name, kind=target.kind, outcome="failed").inc()
        log_event("notify_audit", logging.WARNING, outcome="uncertain", reason=str(error), **audit)
        raise
    except (DeliveryFailed, DeliveryRefused) as error:
        await notify.ledger.abandon(preview_id, name, preview["dedupe"])
        outcome = "refused" if isinstance(error, DeliveryRefused) else "failed"
        notify.metrics.deliveries.labels(target=name, kind=target.kind, outcome=outcome).inc()
        log_event("notify_audit", logging.WARNING, outcome=outcome, reason=str(error), **audit)
        raise
    except BaseException:
        await notify.ledger.abandon(preview_id, name, preview["dedupe"])
        raise
    seconds = time.monotonic() - started
    notify.metrics.latency.labels(kind=target.kind).observe(seconds)
    notify.metrics.deliveries.labels(target=name, kind=target.kind, outcome="delivered").inc()
    result = {
        "sent": True,
        "preview_id": preview_id,
        "target": name,
        "upstream_status": delivered.status,
        "message_id": delivered.message_id,
        "sent_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    await notify.ledger.finish(preview_id, {**result, "caller": preview["caller"]})
    log_event(
        "notify_audit",
        outcome="delivered",
        upstream_status=delivered.status,
        message_id=delivered.message_id,
        latency_ms=round(seconds * 1000, 1),
        **audit,
    )
    return result


async def _hand_over(notify: Notify, name: str, target: Target, rendered: dict[str, Any], preview_id: str) -> Delivered:
    courier = notify.courier
    if target.kind == "webhook":
        body = json.dumps(rendered["json"], sort_keys=True).encode()
        return await courier.webhook(target, notify.signing_key(name), body, preview_id)
    if target.kind == "slack":
        body = json.dumps(rendered["json"]).encode()
        return await courier.slack(target, notify.secrets[name]["url"], body, preview_id)
    return await courier.email(target, rendered["subject"], rendered["text"])
