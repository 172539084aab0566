"""The notification server against real local receivers (HTTPS webhook, SMTP with STARTTLS) and a real
Redis, through the MCP SDK client and raw HTTP; two replicas share that Redis."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import redis

from tests.local.conftest import NOTIFY_SIGNING_KEY
from tests.support.mcp_client import mcp_client
from tests.support.raw import post, tool_call

pytestmark = pytest.mark.redis
SIGNING_KEY = NOTIFY_SIGNING_KEY
SEND = "notify:read notify:send"


def call(running, tool: str, arguments: dict, subject: str = "alice") -> dict:
    response = post(running.mcp_url, tool_call(tool, arguments), running.token(SEND, subject=subject))
    assert response.status_code == 200, response.text
    return response.json()["result"]


def error(result: dict) -> str:
    assert result.get("isError"), result
    return result["content"][0]["text"]


def preview(running, target: str = "sre-oncall", subject: str = "alice", **fields: Any) -> dict:
    arguments = {"target": target, "subject": "Deploy finished", "body": "Release 1.4.2 is live.", **fields}
    result = call(running, "preview_notification", arguments, subject)
    assert not result.get("isError"), result
    return result["structuredContent"]


async def test_preview_then_send_arrives_once_signed_and_a_second_send_does_nothing(notify, receivers):
    async with mcp_client(notify.mcp_url, notify.token(SEND)) as client:
        listed = (await client.call_tool("list_targets", {})).structured_content
        made = (
            await client.call_tool(
                "preview_notification",
                {"target": "sre-oncall", "subject": "DB failover", "body": "Primary is back.", "severity": "warning"},
            )
        ).structured_content
        started = time.monotonic()
        sent = (await client.call_tool("send_notification", {"preview_id": made["preview_id"]})).structured_content
        again = (await client.call_tool("send_notification", {"preview_id": made["preview_id"]})).structured_content
    assert {"name": "sre-oncall", "kind": "webhook"} in listed["targets"]
    assert "localhost" not in json.dumps(listed) and "slacksecret" not in json.dumps(listed)  # names and kinds only
    [arrived] = receivers.webhook.received
    assert arrived.signature_ok is True  # the receiver recomputed the HMAC over timestamp.body
    assert arrived.json() == made["rendered"]["json"] and arrived.json()["sent_by"] == "alice"
    assert arrived.headers["x-mcpfleet-message-id"] == made["preview_id"] == sent["message_id"]
    assert sent["sent"] and sent["upstream_status"] == 200
    assert again["already_sent"] and again["message_id"] == sent["message_id"]
    assert len(receivers.webhook.received) == 1  # the second send did nothing
    print(f"webhook delivery latency (send call to arrival): {(arrived.at - started) * 1000:.1f} ms")


def test_email_goes_from_the_fixed_sender_to_the_targets_recipients_over_starttls(notify, receivers):
    made = preview(notify, "release-email", severity="critical")
    assert made["recipients"] == 2 and "release@" not in json.dumps(made)  # how many, never who
    started = time.monotonic()
    sent = call(notify, "send_notification", {"preview_id": made["preview_id"]})["structuredContent"]
    [(mail_from, recipients, message, at)] = receivers.smtp.messages
    assert mail_from == "mcp-notify@mcpfleet.test"
    assert recipients == ["release@mcpfleet.test", "qa@mcpfleet.test"]
    assert message["Subject"] == "[critical] Deploy finished" and message["Message-ID"] == sent["message_id"]
    assert "Release 1.4.2 is live." in message.get_payload() and "by alice" in message.get_payload()
    injected = call(
        notify, "preview_notification", {"target": "release-email", "subject": "hi\r\nBcc: x@evil.test", "body": "x"}
    )
    assert "subject: String should match pattern" in error(injected)
    print(f"email delivery latency (send call to arrival): {(at - started) * 1000:.1f} ms")


def test_an_expired_preview_is_refused(notify, redis_server, receivers):
    made = preview(notify)
    client = redis.Redis.from_url(redis_server.url)
    [key] = client.keys(f"mcpfleet:notify:preview:{made['preview_id']}")
    assert 590 <= client.ttl(key) <= 600  # NOTIFY_PREVIEW_SECONDS
    client.pexpire(key, 1)  # what ten minutes would do
    time.sleep(0.01)
    assert "unknown or expired preview" in error(call(notify, "send_notification", {"preview_id": made["preview_id"]}))
    assert receivers.webhook.received == []


def test_dedupe_holds_across_two_replicas_and_any_replica_sends_any_preview(start_notify, receivers):
    first, second = start_notify(), start_notify()
    made_on_first = preview(first, dedupe_key="deploy:1.4.2")
    assert call(second, "send_notification", {"preview_id": made_on_first["preview_id"]})["structuredContent"]["sent"]
    made_on_second = preview(second, dedupe_key="deploy:1.4.2")
    duplicate = call(first, "send_notification", {"preview_id": made_on_second["preview_id"]})
    assert "not sent again" in error(duplicate)
    other_key = preview(second, dedupe_key="deploy:1.4.3")
    assert call(first, "send_notification", {"preview_id": other_key["preview_id"]})["structuredContent"]["sent"]
    assert len(receivers.webhook.received) == 2


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=", "Private Key"),
        ("use AKIAIOSFODNN7EXAMPLE for the bucket", "AWS Access Key"),
        ("db at postgresql://app:s3cr3t-pw@db.internal:5432/sales", "Basic Auth Credentials"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl", "JSON Web Token"),
        ("ghp_0123456789abcdefghijklmnopqrstuvwxyzAB in the repo", "GitHub Token"),
        ("set password=hunter2-hunter2 on the box", "password or secret assignment"),
    ],
)
def test_a_secret_in_the_message_is_refused_and_nothing_is_kept(notify, redis_server, body, kind):
    result = call(notify, "preview_notification", {"target": "sre-oncall", "subject": "note", "body": body})
    assert f"looks like it carries a secret ({kind})" in error(result) and body not in error(result)
    assert redis.Redis.from_url(redis_server.url).keys("mcpfleet:notify:preview:*") == []


def test_a_target_that_resolves_to_a_private_address_is_refused(notify, receivers):
    made = preview(notify, "public-hook")
    refused = error(call(notify, "send_notification", {"preview_id": made["preview_id"]}))
    assert "resolves to a loopback address (127.0.0.1); refused" in refused
    assert receivers.webhook.received == []  # never connected
    metrics = httpx.get(notify.base + "/metrics").text
    assert 'mcp_notify_deliveries_total{kind="webhook",outcome="refused",target="public-hook"} 1.0' in metrics


def test_an_unknown_target_is_refused_by_name(notify):
    refused = error(call(notify, "preview_notification", {"target": "ceo-phone", "subject": "x", "body": "y"}))
    assert refused.startswith("unknown target 'ceo-phone'; targets: loud, public-hook, release-email")
    hostile = error(
        call(notify, "preview_notification", {"target": "https://evil.test/x", "subject": "x", "body": "y"})
    )
    assert "target: String should match pattern" in hostile


def test_an_upstream_429_with_retry_after_is_honoured(notify, receivers):
    receivers.webhook.replies.append((429, {"Retry-After": "2"}))
    first = preview(notify)
    throttled = error(call(notify, "send_notification", {"preview_id": first["preview_id"]}))
    assert "rate limiting us (HTTP 429); retry after 2 s" in throttled
    second = preview(notify, subject="alice")
    waiting = error(call(notify, "send_notification", {"preview_id": second["preview_id"]}))
    assert "asked us to wait (HTTP 429); retry after" in waiting
    assert len(receivers.webhook.received) == 1  # the wait was honoured: no second request went out
    time.sleep(2.1)
    assert call(notify, "send_notification", {"preview_id": first["preview_id"]})["structuredContent"]["sent"]
    assert len(receivers.webhook.received) == 2


def test_sends_per_target_are_limited_across_the_minute(notify, receivers):
    sent = [call(notify, "send_notification", {"preview_id": preview(notify)["preview_id"]}) for _ in range(4)]
    assert [bool(s.get("isError")) for s in sent] == [False, False, False, True]
    assert "at its limit of 3 messages a minute; retry after" in error(sent[3])
    assert len(receivers.webhook.received) == 3


def test_mass_mentions_are_removed_unless_the_target_allows_them(notify, receivers):
    body = "@channel deploy done <!here|here> thanks @everyone (mail me at ops@here.test)"
    quiet = preview(notify, body=body)
    loud = preview(notify, "loud", body=body)
    assert quiet["rendered"]["json"]["body"] == "channel deploy done here thanks everyone (mail me at ops@here.test)"
    assert quiet["changes"] == ["removed 3 mass mention(s) (@channel, @here, @everyone)"]
    assert loud["rendered"]["json"]["body"] == body and loud["changes"] == []


def test_slack_messages_are_escaped_and_never_unfurl(notify, receivers):
    made = preview(notify, "team-chat", body="see <https://evil.test|the dashboard> & <!subteam^S1>")
    call(notify, "send_notification", {"preview_id": made["preview_id"]})
    [arrived] = receivers.webhook.received
    assert arrived.path == "/services/T0/B0/slacksecret" and arrived.signature_ok is None
    payload = arrived.json()
    assert payload["unfurl_links"] is False and payload["unfurl_media"] is False
    # `<` and `>` escaped, so no link or mention is made; the user-group mention is removed first
    assert "&lt;https://evil.test|the dashboard&gt; &amp; subteam^S1" in payload["text"]


def test_a_preview_is_sent_only_by_whoever_made_it(notify, receivers):
    made = preview(notify, subject="alice")
    refused = error(call(notify, "send_notification", {"preview_id": made["preview_id"]}, subject="mallory"))
    assert "made by another caller" in refused and receivers.webhook.received == []


def test_every_send_writes_one_audit_event(notify, receivers, logs):
    made = preview(notify)
    call(notify, "send_notification", {"preview_id": made["preview_id"]})
    refused = preview(notify, "public-hook")
    call(notify, "send_notification", {"preview_id": refused["preview_id"]})
    events = logs.events("notify_audit")
    assert [(e["target"], e["outcome"]) for e in events] == [("sre-oncall", "delivered"), ("public-hook", "refused")]
    delivered = events[0]
    assert delivered["subject"] == "alice" and delivered["upstream_status"] == 200
    assert delivered["message_id"] == made["preview_id"] and len(delivered["content_sha256"]) == 64
    assert "Release 1.4.2" not in json.dumps(events)  # the content itself is never logged
