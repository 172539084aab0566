"""The notification server under the attacks an outside pass found (issue 17): header injection through
RFC 2047 encoded words, line separators in a subject, credentials in library logs, receivers that hold a
send past its claim, mass mentions and address classes the guards missed, and another caller's result."""

from __future__ import annotations

import email.policy
import ipaddress
import json
import signal
import time

import pytest

from apps.notify.config import NotifySettings
from apps.notify.ledger import CLAIM_SECONDS
from apps.notify.network import forbidden
from apps.notify.policy import strip_mass_mentions
from tests.local.conftest import targets
from tests.local.test_notify_server import SEND, SIGNING_KEY, call, error, preview
from tests.support.raw import post, tool_call
from tests.support.receivers import DrippingReceiver, SmtpReceiver, make_certificates
from tests.support.running import start_process

pytestmark = pytest.mark.redis

INJECTION = (
    "=?utf-8?q?Quarterly_numbers=0D=0AReply-To:_payroll@attacker.example=0D=0AContent-Type:_text/html"
    "=0D=0A=0D=0A<h1>Urgent</h1>?="
)


@pytest.mark.parametrize(
    "subject",
    [
        INJECTION,
        "=?utf-8?q?hello=0D=0ABcc:_everyone@attacker.example?=",
        "=?utf-8?b?QUtJQUlPU0ZPRE5ON0VYQU1QTEU=?=",  # a b-encoded AWS key: the filter saw only base64
    ],
)
def test_an_encoded_word_subject_is_refused_at_preview_and_nothing_is_sent(notify, receivers, subject):
    result = call(notify, "preview_notification", {"target": "release-email", "subject": subject, "body": "x"})
    assert "RFC 2047 encoded word" in error(result)
    assert receivers.smtp.messages == []


def test_a_plain_subject_with_non_ascii_arrives_as_one_header_exactly(notify, receivers):
    subject = "Déploiement fini =? (presque) ?="
    made = call(notify, "preview_notification", {"target": "release-email", "subject": subject, "body": "b"})
    preview_id = made["structuredContent"]["preview_id"]
    assert not call(notify, "send_notification", {"preview_id": preview_id}).get("isError")
    [(_, _, message, _)] = receivers.smtp.messages
    decoded = email.policy.default.header_factory("Subject", message["Subject"])  # what a mail reader shows
    assert str(decoded) == "[info] Déploiement fini =? (presque) ?="
    assert message.get_all("Reply-To") is None and message.get_all("Bcc") is None


@pytest.mark.parametrize("separator", ["\u0085", "\u2028", "\u2029", "\x9b"])
@pytest.mark.parametrize("target", ["release-email", "sre-oncall"])
def test_line_separators_in_a_subject_are_refused_at_preview(notify, separator, target):
    subject = f"first line{separator}Bcc: everyone@attacker.example"
    result = call(notify, "preview_notification", {"target": target, "subject": subject, "body": "x"})
    assert "Invalid arguments" in error(result) and "subject" in error(result)


@pytest.mark.parametrize(
    "text",
    [
        "<!group> standup",
        "<!subteam^S0123|@sre-team> look",
        "<!channel|" + "x" * 100 + "> now",
        "hi @group",
        "deploy done @room",  # Matrix
        "paging <@&123456789012345678>",  # a Discord role
    ],
)
def test_every_mass_mention_form_is_removed_for_a_webhook(text):
    cleaned, count = strip_mass_mentions(text)
    assert count == 1 and "<!" not in cleaned and "<@&" not in cleaned
    assert not any(f"@{word}" in cleaned for word in ("group", "room"))


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("2002:0a00:0001::1", "private"),  # 6to4 around 10.0.0.1
        ("2002:7f00:0001::1", "loopback"),  # 6to4 around 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 around the metadata address 169.254.169.254
        ("fec0::1", "site-local"),
        ("192.0.0.9", "IETF protocol assignment"),
        ("192.88.99.1", "6to4 relay anycast"),
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "Teredo tunnel"),
    ],
)
def test_the_ssrf_guard_classifies_tunnels_and_special_blocks(address, reason):
    assert forbidden(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["2002:0808:0808::1", "64:ff9b::808:808", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_stay_reachable(address):
    assert forbidden(ipaddress.ip_address(address)) is None


def test_a_sent_previews_result_is_not_shown_to_another_caller(notify, receivers):
    made = preview(notify, subject="alice")
    sent = call(notify, "send_notification", {"preview_id": made["preview_id"]})["structuredContent"]
    assert sent["sent"] is True and "caller" not in sent
    again = call(notify, "send_notification", {"preview_id": made["preview_id"]})["structuredContent"]
    assert again["already_sent"] is True and "caller" not in again
    refused = error(call(notify, "send_notification", {"preview_id": made["preview_id"]}, subject="mallory"))
    assert "unknown or expired preview" in refused and made["preview_id"] not in refused


def test_the_delivery_deadline_is_shorter_than_any_claim():
    assert NotifySettings.model_fields["notify_timeout_seconds"].metadata[-1].le <= CLAIM_SECONDS / 2


@pytest.fixture
def dripping():
    receiver = DrippingReceiver(drip=0.5).start()
    yield receiver
    receiver.stop()


def test_a_dripping_receiver_cannot_hold_a_send_and_the_preview_is_delivered_once(start_notify, receivers, dripping):
    """The pass held a send 240 s with one byte every 4 s; after the 120 s claim ran out a second send
    delivered again. Now the whole delivery has one deadline, and a message handed over but not confirmed
    in time counts as used: sending the preview again sends nothing."""
    hook = {"kind": "webhook", "url": dripping.url("/hook"), "internal": True}
    notify = start_notify(
        NOTIFY_TARGETS=json.dumps({**targets(receivers), "slow-hook": hook}), NOTIFY_TIMEOUT_SECONDS="2"
    )
    made = preview(notify, "slow-hook")
    started = time.monotonic()
    first = error(call(notify, "send_notification", {"preview_id": made["preview_id"]}))
    held = time.monotonic() - started
    assert held < 4 and "may have arrived, so it is not sent again" in first
    second = call(notify, "send_notification", {"preview_id": made["preview_id"]})["structuredContent"]
    assert second["already_sent"] is True and second["sent"] == "uncertain"
    print(f"\nheld {held:.1f} s by a dripping receiver (deadline 2 s); deliveries: {len(dripping.received)}")
    assert len(dripping.received) == 1


def test_a_relay_that_confirms_late_is_not_sent_to_again(start_server, redis_server, receivers, tmp_path):
    from apps.notify.server import server as notify_server

    (tmp_path / "slow").mkdir()
    slow = SmtpReceiver(make_certificates(tmp_path / "slow"), reply_after=5).start()
    try:
        relay = {**targets(receivers)["release-email"], "smtp_port": slow.port}
        notify = start_server(
            notify_server,
            REDIS_URL=redis_server.url,
            NOTIFY_TARGETS=json.dumps({"slow-email": relay}),
            NOTIFY_SIGNING_KEY=SIGNING_KEY,
            NOTIFY_CA_FILE=str(slow.certificates.ca_file),
            NOTIFY_TIMEOUT_SECONDS="2",
        )
        made = preview(notify, "slow-email")
        started = time.monotonic()
        assert "may have arrived" in error(call(notify, "send_notification", {"preview_id": made["preview_id"]}))
        assert time.monotonic() - started < 4
        call(notify, "send_notification", {"preview_id": made["preview_id"]})
        assert len(slow.messages) == 1
    finally:
        slow.stop()


def test_no_log_line_carries_a_configured_secret_after_sends_to_every_kind(receivers, redis_server):
    """The notify server as a real process, its own stdout: httpx logged the Slack webhook URL (a
    credential) at INFO on every send."""
    slack_url = receivers.webhook.url("/services/T0/B0/slack-webhook-credential-0123")
    smtp_password = "smtp-password-for-the-log-test-0123"
    server = start_process(
        "apps.notify",
        REDIS_URL=redis_server.url,
        NOTIFY_TARGETS=json.dumps(targets(receivers)),
        NOTIFY_SIGNING_KEY=SIGNING_KEY,
        NOTIFY_TARGET_SECRETS=json.dumps({"team-chat": {"url": slack_url}}),
        NOTIFY_SMTP_PASSWORD=smtp_password,
        NOTIFY_CA_FILE=str(receivers.ca_file),
    )
    try:
        token = server.token(SEND)
        for target in ("sre-oncall", "team-chat", "release-email"):
            made = post(
                server.url, tool_call("preview_notification", {"target": target, "subject": "s", "body": "b"}), token
            )
            preview_id = made.json()["result"]["structuredContent"]["preview_id"]
            sent = post(server.url, tool_call("send_notification", {"preview_id": preview_id}), token)
            assert sent.json()["result"]["structuredContent"]["sent"] is True
    finally:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)
        output = server.output().decode()
    lines = output.splitlines()
    assert len(receivers.webhook.received) == 2 and len(receivers.smtp.messages) == 1
    assert any('"notify_audit"' in line for line in lines)  # the process did log its sends
    for secret in (slack_url, "/services/T0/B0/slack-webhook-credential-0123", SIGNING_KEY, smtp_password):
        assert not [line for line in lines if secret in line], secret
