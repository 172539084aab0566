"""Alerts and silences through the Alertmanager API v2.

Silences are built here, never passed through: equality matchers only, `createdBy` from the caller's
token (marked as made through this server), a bounded duration starting now. Silence ids are UUIDs,
checked before they become a path.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from apps.kit import CallerError, Upstream, UpstreamUnavailable, bounded, redact

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def matcher(name: str, value: str) -> str:
    """An equality matcher in Alertmanager's filter syntax; the value is quoted and escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{name}="{escaped}"'


class Alertmanager:
    def __init__(self, upstream: Upstream):
        self.upstream = upstream

    async def _json(self, method: str, path: str, *, idempotent: bool, **kwargs: Any) -> Any:
        answer = await self.upstream.request(method, path, idempotent=idempotent, **kwargs)
        if 200 <= answer.status < 300:
            return answer.body
        message = bounded(redact(str(answer.body)), 300)
        if answer.status == 404:
            raise CallerError(f"Alertmanager has no such object: {message}")
        if 400 <= answer.status < 500:
            raise CallerError(f"Alertmanager refused the request (HTTP {answer.status}): {message}")
        raise UpstreamUnavailable(f"Alertmanager answered HTTP {answer.status}")

    async def firing(self, filters: dict[str, str]) -> list[dict[str, Any]]:
        params = [("active", "true"), ("silenced", "false"), ("inhibited", "false"), ("unprocessed", "false")]
        params += [("filter", matcher(k, v)) for k, v in filters.items()]
        alerts = await self._json("GET", "/api/v2/alerts", idempotent=True, params=params)
        return sorted(
            alerts or [],
            key=lambda a: (SEVERITY_ORDER.get(a.get("labels", {}).get("severity", ""), 9), a.get("startsAt", "")),
        )

    async def silences(self) -> list[dict[str, Any]]:
        silences: list[dict[str, Any]] = await self._json("GET", "/api/v2/silences", idempotent=True) or []
        return silences

    async def create_silence(
        self, matchers: dict[str, str], now: datetime, duration: timedelta, created_by: str, comment: str
    ) -> str:
        payload = {
            "matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in matchers.items()],
            "startsAt": now.isoformat(),
            "endsAt": (now + duration).isoformat(),
            "createdBy": created_by,
            "comment": comment,
        }
        body = await self._json("POST", "/api/v2/silences", idempotent=False, json_body=payload)
        return str(body["silenceID"])

    async def silence(self, silence_id: str) -> dict[str, Any] | None:
        """One silence, or None when Alertmanager has none with this id."""
        if not UUID.fullmatch(silence_id):
            raise CallerError("a silence id is a UUID")
        try:
            found: dict[str, Any] = await self._json("GET", f"/api/v2/silence/{silence_id}", idempotent=True)
        except CallerError:
            return None  # 404 (and other 4xx for an id it does not know)
        return found

    async def expire_silence(self, silence_id: str) -> None:
        """Idempotent: a silence already expired stays expired (Alertmanager answers that with a 500)."""
        try:
            await self._json("DELETE", f"/api/v2/silence/{silence_id}", idempotent=False)
        except UpstreamUnavailable as error:
            if error.status == 500 and "already expired" in str(error.body):
                return
            raise
