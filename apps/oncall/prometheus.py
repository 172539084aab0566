"""Instant and range PromQL queries against the platform's Prometheus, within the guards.

Prometheus stops a query at the server-side `timeout` we send. Its errors are typed: `bad_data` and
`execution` (and a query it had to stop) are the caller's to fix; no answer or a 5xx is the server's.
Every result type Prometheus answers is handled (an instant query of `up[5m]` is a matrix, `"text"` a
string). Error texts from upstream are redacted before a caller sees them. Series are cut to the cap
first; the per-series summaries of what is kept are computed on a worker thread.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from apps.kit import CallerError, Upstream, UpstreamUnavailable, bounded, redact
from apps.oncall.guards import RangePlan, bounded_labels, iso, number, summarise


class Prometheus:
    def __init__(self, upstream: Upstream, timeout_seconds: float, max_series: int):
        self.upstream, self.timeout, self.max_series = upstream, timeout_seconds, max_series

    async def _query(self, path: str, form: dict[str, str]) -> dict[str, Any]:
        form = {**form, "timeout": f"{self.timeout:g}s"}
        answer = await self.upstream.request("POST", path, idempotent=True, data=form)
        body = answer.body if isinstance(answer.body, dict) else {}
        if answer.status == 200 and body.get("status") == "success":
            return body["data"]  # type: ignore[no-any-return]
        error_type, message = body.get("errorType", "unknown"), bounded(redact(str(body.get("error", ""))), 500)
        if error_type in ("bad_data", "execution"):
            raise CallerError(f"Prometheus refused the query ({error_type}): {message}")
        if error_type in ("timeout", "canceled"):
            raise CallerError(f"the query ran past the {self.timeout:g} s limit and was stopped; narrow it")
        if answer.status in (400, 422):
            raise CallerError(f"Prometheus refused the query: {message}")
        raise UpstreamUnavailable(f"Prometheus answered HTTP {answer.status}: {message}")

    async def instant(self, query: str, at: datetime) -> dict[str, Any]:
        data = await self._query("/api/v1/query", {"query": query, "time": f"{at.timestamp():.3f}"})
        kind, result = data.get("resultType"), data.get("result") or []
        if kind == "scalar":
            return {"result_type": kind, "time": iso(result[0]), "value": number(result[1])}
        if kind == "string":
            return {"result_type": kind, "time": iso(result[0]), "value": bounded(str(result[1]), 1000)}
        if kind == "matrix":  # a range selector asked for at one time: each series' points, summarised
            capped = self._capped(result)
            capped["series"] = await asyncio.to_thread(_summaries, capped["series"], False)
            return {"result_type": kind, "time": iso(at.timestamp()), **capped}
        capped = self._capped(result)
        capped["series"] = [
            {"labels": bounded_labels(item.get("metric", {})), "value": number(item["value"][1])}
            for item in capped["series"]
        ]
        return {"result_type": kind, "time": iso(at.timestamp()), **capped}

    async def range(self, query: str, plan: RangePlan, raw: bool) -> dict[str, Any]:
        form = {
            "query": query,
            "start": f"{plan.start.timestamp():.3f}",
            "end": f"{plan.end.timestamp():.3f}",
            "step": f"{plan.step}",
        }
        data = await self._query("/api/v1/query_range", form)
        capped = self._capped(data.get("result") or [])
        capped["series"] = await asyncio.to_thread(_summaries, capped["series"], raw)
        answer: dict[str, Any] = {
            "result_type": "matrix",
            "start": iso(plan.start.timestamp()),
            "end": iso(plan.end.timestamp()),
            "step_seconds": plan.step,
            "shape": "points" if raw else "summary (min, max, avg, last per series)",
        }
        if plan.requested_step is not None and plan.step > plan.requested_step:
            answer["step_note"] = f"step raised from {plan.requested_step} s to keep points per series within the cap"
        return answer | capped

    def _capped(self, series: list[dict[str, Any]]) -> dict[str, Any]:
        total = len(series)
        kept = series[: self.max_series]
        return {"series": kept, "total_series": total, "truncated": total > len(kept)}


def _summaries(items: list[dict[str, Any]], raw: bool) -> list[dict[str, Any]]:
    """Each series' labels and its points (raw) or their summary."""
    series = []
    for item in items:
        values = item.get("values", [])
        entry: dict[str, Any] = {"labels": bounded_labels(item.get("metric", {}))}
        if raw:
            entry["points"] = [[iso(t), number(v)] for t, v in values]
        elif values:
            entry |= summarise(values)
        series.append(entry)
    return series
