"""Notification server settings: the named targets, their secrets, and the limits on every send.

A tool names a target; everything about where it goes is here:
    NOTIFY_TARGETS='{"sre-oncall": {"kind": "webhook", "url": "https://hooks.example.com/mcp"},
                     "team-chat": {"kind": "slack"},
                     "release-email": {"kind": "email", "smtp_host": "smtp.example.com",
                                       "sender": "mcp@example.com", "recipients": ["release@example.com"]}}'
Secrets come separately: `NOTIFY_SIGNING_KEY` signs every webhook body; `NOTIFY_TARGET_SECRETS` (a JSON
object by target name) holds a Slack target's webhook URL (its path is the credential) or a webhook
target's own signing key; `NOTIFY_SMTP_PASSWORD` logs in to SMTP.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator, model_validator

from apps.kit import KitSettings, OutsideHost

SLACK_HOST = "hooks.slack.com"

TargetName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
Email = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")]


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["webhook", "slack", "email"]
    url: str | None = None  # webhook: where to POST (https); slack: from NOTIFY_TARGET_SECRETS instead
    # A target on a private network (an internal webhook relay): private addresses are then allowed.
    internal: bool = False
    allow_mass_mentions: bool = False  # keep @channel / @here / @everyone
    per_minute: int = Field(default=10, ge=1, le=10_000)  # sends to this target, across replicas
    # email
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    smtp_username: str | None = None
    sender: Email | None = None
    recipients: Annotated[list[Email], Field(max_length=50)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete(self) -> Target:
        if self.kind == "webhook" and not (self.url and self.url.startswith(("https://", "http://"))):
            raise ValueError("a webhook target needs a url")
        if self.kind == "webhook" and self.url and self.url.startswith("http://") and not self.internal:
            raise ValueError("a webhook target's url must be https (plain http only for an internal target)")
        if self.kind == "slack" and self.url is not None:
            raise ValueError("a slack target's webhook url is a secret: give it in NOTIFY_TARGET_SECRETS")
        if self.kind == "email" and not (self.smtp_host and self.sender and self.recipients):
            raise ValueError("an email target needs smtp_host, sender and recipients")
        return self


class NotifySettings(KitSettings):
    redis_url: SecretStr  # previews, dedupe windows and send rates are shared by every replica
    notify_targets: dict[TargetName, Target] = Field(default_factory=dict)
    notify_signing_key: SecretStr = Field(min_length=32)
    notify_target_secrets: SecretStr | None = None  # JSON: {"team-chat": {"url": "https://hooks.slack..."}}
    notify_smtp_password: SecretStr | None = None
    notify_ca_file: Path | None = None  # extra CA certificates for internal targets (a private CA)

    notify_preview_seconds: int = Field(default=600, ge=10, le=86_400)
    notify_dedupe_seconds: int = Field(default=600, ge=1, le=7 * 86_400)
    notify_global_per_minute: int = Field(default=60, ge=1, le=100_000)
    notify_timeout_seconds: float = Field(default=10, gt=0, le=60)
    notify_max_retry_after_seconds: int = Field(default=3600, ge=1, le=86_400)  # an upstream's wait, capped

    @field_validator("notify_targets")
    @classmethod
    def _some_target(cls, value: dict[str, Target]) -> dict[str, Target]:
        if not value:
            raise ValueError("configure at least one target")
        return value

    def outside_hosts(self) -> list[OutsideHost]:
        """Where its HTTP targets are, for the egress proxy's allowlist (email goes to an in-network relay)."""
        hosts = set()
        for target in self.notify_targets.values():
            if target.kind == "webhook" and target.url:
                hosts.add(OutsideHost.of_url(target.url, target.internal))
            elif target.kind == "slack":
                hosts.add(OutsideHost(SLACK_HOST))  # its URL is a secret; its host is always this one
        return sorted(hosts)

    def target_secrets(self) -> dict[str, dict[str, str]]:
        """Per-target secrets by target name; checked at start against the targets that need them."""
        if self.notify_target_secrets is None:
            return {}
        try:
            parsed: Any = json.loads(self.notify_target_secrets.get_secret_value())
        except ValueError:
            raise ValueError("NOTIFY_TARGET_SECRETS is not JSON") from None
        if not isinstance(parsed, dict) or not all(isinstance(v, dict) for v in parsed.values()):
            raise ValueError("NOTIFY_TARGET_SECRETS must map target names to objects")
        return {str(k): {str(a): str(b) for a, b in v.items()} for k, v in parsed.items()}
