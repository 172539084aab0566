"""Delivering a rendered message to its target: a signed webhook, a Slack-compatible webhook, or SMTP.

Webhooks go to the address `network.pin` checked, with the URL's host for Host, SNI and the certificate
check; redirects are not followed and proxy variables are ignored. The generic webhook's body is signed
(HMAC-SHA256 over `<timestamp>.<body>`, headers `X-MCPFleet-Timestamp` and `X-MCPFleet-Signature:
v1=<hex>`), so a receiver can check it came from us, recently. Email is built with the standard
library's strict policy (a header value with a line break is an error, not a new header), from the
target's fixed sender to its fixed recipients.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import smtplib
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid, parsedate_to_datetime

import httpx

from apps.notify.config import Target
from apps.notify.network import DeliveryFailed, Pinned, pin

SIGNATURE_HEADER = "X-MCPFleet-Signature"
TIMESTAMP_HEADER = "X-MCPFleet-Timestamp"
MESSAGE_ID_HEADER = "X-MCPFleet-Message-Id"


@dataclass(frozen=True)
class Throttled(Exception):
    """The target answered 429: wait `retry_after` seconds before sending to it again."""

    retry_after: int


@dataclass(frozen=True)
class Delivered:
    status: int | str  # the upstream's HTTP status, or the SMTP reply
    message_id: str


def sign(key: bytes, timestamp: int, body: bytes) -> str:
    return "v1=" + hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def retry_after_seconds(value: str | None, cap: int) -> int:
    """Retry-After as seconds or an HTTP date; at least 1, at most `cap`; 60 when absent or unreadable."""
    if not value:
        return 60
    value = value.strip()
    if value.isdigit():
        return max(1, min(int(value), cap))
    try:
        delta = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
    except (TypeError, ValueError):
        return 60
    return max(1, min(int(delta) + 1, cap))


class Courier:
    def __init__(self, timeout: float, ca_file: str | None, smtp_password: str | None, max_retry_after: int):
        context = ssl.create_default_context()
        if ca_file:
            context.load_verify_locations(ca_file)
        self.tls = context
        self.timeout, self.smtp_password, self.max_retry_after = timeout, smtp_password, max_retry_after
        self.http = httpx.AsyncClient(verify=context, timeout=timeout, follow_redirects=False, trust_env=False)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def post(self, url: str, internal: bool, body: bytes, headers: dict[str, str]) -> int:
        pinned: Pinned = await pin(url, internal, self.timeout)
        try:
            response = await self.http.post(
                pinned.url,
                content=body,
                headers={
                    "Host": pinned.host if pinned.port in (80, 443) else f"{pinned.host}:{pinned.port}",
                    **headers,
                },
                extensions={"sni_hostname": pinned.host},
            )
        except httpx.TimeoutException:
            raise DeliveryFailed(f"{pinned.host} did not answer in time") from None
        except httpx.HTTPError as error:
            raise DeliveryFailed(f"{pinned.host} is unreachable ({type(error).__name__})") from None
        if response.status_code == 429:
            raise Throttled(retry_after_seconds(response.headers.get("retry-after"), self.max_retry_after))
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(f"{pinned.host} answered HTTP {response.status_code}")
        return response.status_code

    async def webhook(self, target: Target, key: bytes, body: bytes, message_id: str) -> Delivered:
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(key, timestamp, body),
            MESSAGE_ID_HEADER: message_id,
        }
        assert target.url is not None
        return Delivered(await self.post(target.url, target.internal, body, headers), message_id)

    async def slack(self, target: Target, url: str, body: bytes, message_id: str) -> Delivered:
        headers = {"Content-Type": "application/json"}
        return Delivered(await self.post(url, target.internal, body, headers), message_id)

    async def email(self, target: Target, subject: str, text: str) -> Delivered:
        assert target.sender is not None and target.smtp_host is not None
        message = EmailMessage(policy=SMTP_POLICY)
        message["From"] = target.sender
        message["To"] = ", ".join(target.recipients)
        message["Subject"] = subject
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = make_msgid(domain=target.sender.rsplit("@", 1)[1])
        message.set_content(text)
        reply = await asyncio.to_thread(self._smtp_send, target, message)
        return Delivered(reply, message["Message-ID"])

    def _smtp_send(self, target: Target, message: EmailMessage) -> str:
        assert target.smtp_host is not None
        try:
            with smtplib.SMTP(target.smtp_host, target.smtp_port, timeout=self.timeout) as smtp:
                if target.starttls:
                    smtp.starttls(context=self.tls)
                if target.smtp_username:
                    smtp.login(target.smtp_username, self.smtp_password or "")
                refused = smtp.send_message(message, from_addr=target.sender, to_addrs=target.recipients)
        except (OSError, smtplib.SMTPException) as error:
            raise DeliveryFailed(f"SMTP delivery via {target.smtp_host} failed ({type(error).__name__})") from None
        if refused:
            raise DeliveryFailed(f"SMTP server refused {len(refused)} of {len(target.recipients)} recipients")
        return "250"
