"""The guards on metric queries and silences, as pure functions: ranges, steps, series, answer size.

Answers are for a model's context: series are summarised (min, max, avg, last) unless raw points are
asked for, at most `max_series` are kept (with the total), label values are bounded, and every answer
is cut to a byte budget, saying so.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apps.kit import CallerError
from apps.kit.encoding import dumps

PROMETHEUS_MAX_POINTS = 11_000  # Prometheus refuses a range query with more points per series
SUMMARY_POINTS = 240  # the default resolution of a summarised range
MAX_LABELS = 30
MAX_LABEL_CHARS = 200
_DURATION = re.compile(r"^([1-9][0-9]{0,6})([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int:
    match = _DURATION.fullmatch(text)
    if match is None:
        raise CallerError(f"not a duration: {text[:32]!r} (e.g. 30m, 6h, 1d)")
    return int(match[1]) * _UNIT[match[2]]


def parse_time(text: str | None, now: datetime) -> datetime:
    """RFC 3339 (`2026-11-28T10:00:00Z`), or now."""
    if text is None:
        return now
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CallerError(f"not an RFC 3339 time: {text[:40]!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RangePlan:
    start: datetime
    end: datetime
    step: int
    requested_step: int | None

    @property
    def points(self) -> int:
        return int((self.end - self.start).total_seconds() // self.step) + 1


def plan_range(
    range_text: str, end: datetime, step: int | None, raw: bool, max_range_hours: float, max_raw_points: int
) -> RangePlan:
    """Refuse a range over the cap; raise the step so no series has more points than Prometheus (and,
    for raw points, our own cap) allows."""
    seconds = duration_seconds(range_text)
    if seconds > max_range_hours * 3600:
        raise CallerError(f"range {range_text} is over the {max_range_hours:g} h cap; ask for a shorter range")
    floor = math.ceil(seconds / (PROMETHEUS_MAX_POINTS - 1))
    if raw:
        floor = max(floor, math.ceil(seconds / (max_raw_points - 1)))
    chosen = max(step or math.ceil(seconds / SUMMARY_POINTS), floor, 1)
    return RangePlan(end - timedelta(seconds=seconds), end, chosen, step)


def bounded_labels(labels: dict[str, str]) -> dict[str, str]:
    kept = dict(sorted(labels.items())[:MAX_LABELS])
    return {
        k[:MAX_LABEL_CHARS]: v if len(v) <= MAX_LABEL_CHARS else v[:MAX_LABEL_CHARS] + "..." for k, v in kept.items()
    }


def number(text: str) -> float | str:
    """A sample value: a number, or its text when not finite (JSON has no NaN or Inf)."""
    value = float(text)
    return value if math.isfinite(value) else text


def summarise(values: list[list[Any]]) -> dict[str, Any]:
    """min, max, avg and last of a series' finite points, and how many there were."""
    finite = [v for _, text in values if math.isfinite(v := float(text))]
    summary: dict[str, Any] = {"points": len(values), "from": iso(values[0][0]), "to": iso(values[-1][0])}
    if finite:
        summary |= {
            "min": min(finite),
            "max": max(finite),
            "avg": sum(finite) / len(finite),
            "last": number(values[-1][1]),
        }
    if len(finite) != len(values):
        summary["non_finite_points"] = len(values) - len(finite)
    return summary


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def fit(answer: dict[str, Any], key: str, budget: int) -> dict[str, Any]:
    """Keep as many items of `answer[key]` as fit in `budget` bytes of JSON; say how many were dropped."""
    items = answer[key]
    if len(dumps(answer)) <= budget:
        return answer
    envelope = len(dumps({**answer, key: []})) + 64
    kept, size = [], envelope
    for item in items:
        size += len(dumps(item)) + 1
        if size > budget:
            break
        kept.append(item)
    note = f"{len(items) - len(kept)} more left out to keep the answer under {budget} bytes"
    return {**answer, key: kept, "truncated": True, "budget_note": note}
