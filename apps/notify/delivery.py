"""Delivering a rendered message to its target: a signed webhook, a Slack-compatible webhook, or SMTP.

Webhooks go to the address `network.pin` checked, with the URL's host for Host, SNI and the certificate
check; redirects are not followed and proxy variables are ignored. Every delivery has one overall
deadline (`NOTIFY_TIMEOUT_SECONDS`, shorter than a send's claim), not only one per read: a receiver that
drips its answer a byte at a time cannot hold a send past it. A delivery that runs out of time after the
message was handed over may have arrived (`DeliveryUncertain`): it is not retried. The generic webhook's body is signed
(HMAC-SHA256 over `<timestamp>.<body>`, headers `X-MCPFleet-Timestamp` and `X-MCPFleet-Signature:
v1=<hex>`), so a receiver can check it came from us, recently. Email is built with the standard
library's strict policy, from the target's fixed sender to its fixed recipients. A subject goes into its
header only if the header carries exactly that text (`subject_problem`): an RFC 2047 encoded word
(`=?utf-8?q?...=0D=0A...?=`) would be decoded by the header parser into line breaks, new headers and a
different body, so it is refused at preview, where the caller sees why.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid, parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiosmtplib
import httpx

from apps.kit import AnswerTooLarge, read_capped
from apps.notify.config import Target
from apps.notify.network import DeliveryFailed, DeliveryRefused, Pinned, pin

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


class DeliveryUncertain(DeliveryFailed):
    """The deadline passed after the message was handed over: it may have arrived, so it is not sent again."""


def subject_problem(subject: str) -> str | None:
    """Why `subject` cannot be an email's Subject header verbatim, or None when it can."""
    try:
        header = SMTP_POLICY.header_factory("Subject", subject)
        SMTP_POLICY.fold("Subject", header)
    except Exception as error:  # noqa: BLE001 - newer CPython refuses some values outright; any refusal is the text's
        return f"it cannot be an email header ({type(error).__name__})"
    if str(header) != subject:
        return "it contains an RFC 2047 encoded word (=?charset?q?...?=), which mail would decode; send plain text"
    return None


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


ANSWER_CAP = 64 * 1024  # of a target's answer to a delivery


class Courier:
    def __init__(
        self,
        timeout: float,
        ca_file: str | None,
        smtp_password: str | None,
        max_retry_after: int,
        proxy: str | None = None,
    ):
        context = ssl.create_default_context()
        if ca_file:
            context.load_verify_locations(ca_file)
        self.tls = context
        self.timeout, self.smtp_password, self.max_retry_after = timeout, smtp_password, max_retry_after
        # Through the platform's egress proxy when there is one: it resolves the name and refuses private
        # addresses itself, so the request names the host; without one, it goes to the address checked here.
        self.proxy = proxy
        self.http = httpx.AsyncClient(
            verify=context, timeout=timeout, follow_redirects=False, trust_env=False, proxy=proxy
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def post(self, url: str, internal: bool, body: bytes, headers: dict[str, str]) -> int:
        handed_over = False

        async def trace(event: str, info: dict[str, Any]) -> None:
            nonlocal handed_over
            if event.endswith("send_request_headers.started"):
                handed_over = True

        try:
            async with asyncio.timeout(self.timeout):
                pinned: Pinned = await pin(url, internal, self.timeout)
                host = pinned.host
                if self.proxy:
                    request = self.http.build_request(
                        "POST", url, content=body, headers=headers, extensions={"trace": trace}
                    )
                else:
                    request = self.http.build_request(
                        "POST",
                        pinned.url,
                        content=body,
                        headers={"Host": host if pinned.port in (80, 443) else f"{host}:{pinned.port}", **headers},
                        extensions={"sni_hostname": host, "trace": trace},
                    )
                response = await self.http.send(request, stream=True)
                try:  # the answer is not used: read at most ANSWER_CAP of it, so a huge one costs nothing
                    with contextlib.suppress(AnswerTooLarge):
                        await read_capped(response, ANSWER_CAP)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            where = urlsplit(url).hostname
            if handed_over:
                raise DeliveryUncertain(
                    f"{where} did not answer within {self.timeout:g} s after the message was handed over; it may "
                    "have arrived, so it is not sent again (preview again to send a new copy)"
                ) from None
            raise DeliveryFailed(f"{where} did not take the message within {self.timeout:g} s") from None
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
        if problem := subject_problem(subject):  # checked at preview; a second line of defence
            raise DeliveryRefused(f"the subject was not sent: {problem}")
        message = EmailMessage(policy=SMTP_POLICY)
        message["From"] = target.sender
        message["To"] = ", ".join(target.recipients)
        message["Subject"] = subject
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = make_msgid(domain=target.sender.rsplit("@", 1)[1])
        message.set_content(text)
        reply = await self._smtp_send(target, message)
        return Delivered(reply, message["Message-ID"])

    async def _smtp_send(self, target: Target, message: EmailMessage) -> str:
        assert target.smtp_host is not None and target.sender is not None
        handed_over = False
        smtp = aiosmtplib.SMTP(
            hostname=target.smtp_host,
            port=target.smtp_port,
            timeout=self.timeout,
            start_tls=target.starttls,
            tls_context=self.tls,
        )
        try:
            async with asyncio.timeout(self.timeout):
                await smtp.connect()
                if target.smtp_username:
                    await smtp.login(target.smtp_username, self.smtp_password or "")
                await smtp.mail(target.sender)
                refused = 0
                for recipient in target.recipients:
                    try:
                        await smtp.rcpt(recipient)
                    except aiosmtplib.SMTPRecipientRefused:
                        refused += 1
                if refused == len(target.recipients):
                    raise DeliveryFailed(f"SMTP server refused all {refused} recipients")
                handed_over = True
                await smtp.data(message.as_bytes())
        except (TimeoutError, aiosmtplib.SMTPTimeoutError):
            if handed_over:
                raise DeliveryUncertain(
                    f"SMTP via {target.smtp_host} did not confirm within {self.timeout:g} s after the message was "
                    "handed over; it may have arrived, so it is not sent again"
                ) from None
            raise DeliveryFailed(
                f"SMTP via {target.smtp_host} did not take the message within {self.timeout:g} s"
            ) from None
        except (OSError, aiosmtplib.SMTPException) as error:
            raise DeliveryFailed(f"SMTP delivery via {target.smtp_host} failed ({type(error).__name__})") from None
        finally:
            smtp.close()
        if refused:
            raise DeliveryFailed(f"SMTP server refused {refused} of {len(target.recipients)} recipients")
        return "250"
