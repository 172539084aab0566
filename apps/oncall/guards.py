"""The guards on metric queries and silences, as pure functions: ranges, steps, series, answer size.

Answers are for a model's context: series are summarised (min, max, avg, last) unless raw points are
asked for, at most `max_series` are kept (with the total), label values are bounded, and every answer
is cut to a byte budget, saying so.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import promql_parser

from apps.kit import CallerError, bounded, dumps

PROMETHEUS_MAX_POINTS = 11_000  # Prometheus refuses a range query with more points per series
SUMMARY_POINTS = 240  # the default resolution of a summarised range
MAX_LABELS = 30
MAX_LABEL_CHARS = 200
# A subquery without a step runs at Prometheus's evaluation interval (the platform's is 15 s).
DEFAULT_SUBQUERY_STEP_SECONDS = 15
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)
_WORD = re.compile(r"[^\W\d_]{3,}")  # three letters or more, in any script
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
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        in_range = EARLIEST <= value <= LATEST
    except (ValueError, OverflowError):
        raise CallerError(f"not an RFC 3339 time: {text[:40]!r}") from None
    if not in_range:
        raise CallerError(f"time {text[:40]!r} is outside {EARLIEST.year}-{LATEST.year}")
    return value


MAX_QUERY_DEPTH = 32  # brackets, parentheses and braces inside each other
MAX_QUERY_OPERATORS = 64  # operators outside label matchers
# promql-parser's parse time grows with the operator count and its `walk` with the depth, both far faster than
# linearly (a chain of 400 `+` parsed in 19 ms and walked in 6.6 s; 300 nested parentheses walked in 1.9 s), and
# both hold the interpreter. So the text is measured first, by this lexer, in one pass, and the tree is walked here.
_OPERATOR_CHARS = frozenset("+-*/%^<>=!")
_OPERATOR_WORDS = re.compile(r"(?<![\w:])(and|or|unless|atan2)(?![\w:])")
_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`", re.DOTALL)
_OPENING, _CLOSING = "([{", ")]}"


def check_query_shape(query: str) -> None:
    """Refuse, from the text alone and before any parsing, a query nested deeper than MAX_QUERY_DEPTH or with
    more than MAX_QUERY_OPERATORS operators: what a person writes stays far inside both, and what lies past them
    costs the parser seconds of the event loop."""
    code = _STRING.sub('""', query)  # a string's content is data, whatever it holds
    depth = deepest = operators = braces = 0
    previous = ""
    for char in code:
        if char in _OPENING:
            depth += 1
            deepest = max(deepest, depth)
            braces += char == "{"
        elif char in _CLOSING:
            depth -= 1
            braces -= char == "}" and braces > 0
        elif char in _OPERATOR_CHARS and not braces and not (char == "=" and previous in _OPERATOR_CHARS):
            operators += 1  # `==`, `!=`, `<=` and `>=` count once
        previous = char
    operators += len(_OPERATOR_WORDS.findall(code))
    if deepest > MAX_QUERY_DEPTH:
        raise CallerError(f"the query nests {deepest} levels deep; at most {MAX_QUERY_DEPTH} are allowed")
    if operators > MAX_QUERY_OPERATORS:
        raise CallerError(f"the query has {operators} operators; at most {MAX_QUERY_OPERATORS} are allowed")


def check_query_cost(query: str, max_range_hours: float) -> None:
    """Refuse what would make this server or Prometheus work too much: a query too deep or too long to parse
    cheaply (`check_query_shape`), a range selector or a subquery longer than the range cap, or a subquery with
    more points per series than Prometheus allows a range query. The parser is promql-parser (Prometheus's
    grammar), not a pattern over the text."""
    check_query_shape(query)
    try:
        expression = promql_parser.parse(query)
    except ValueError as error:
        raise CallerError(f"not a PromQL expression: {bounded(str(error), 300)}") from None
    cap = max_range_hours * 3600
    problems: list[str] = []
    # Depth first, each node with the points per series of the subqueries around it (nesting multiplies them).
    stack: list[tuple[Any, float]] = [(expression, 1.0)]
    while stack:
        node, points = stack.pop()
        if isinstance(node, promql_parser.MatrixSelector) and node.range.total_seconds() > cap:
            problems.append(f"range selector [{promql_parser.display_duration(node.range)}]")
        elif isinstance(node, promql_parser.SubqueryExpr):
            window = node.range or timedelta(0)
            seconds = window.total_seconds()
            step = node.step.total_seconds() if node.step else DEFAULT_SUBQUERY_STEP_SECONDS
            points *= seconds / max(step, 0.001)
            if seconds > cap:
                problems.append(f"subquery [{promql_parser.display_duration(window)}:...]")
            elif points > PROMETHEUS_MAX_POINTS:
                problems.append(f"subquery of {int(points)} points per series")
        stack.extend((child, points) for child in _children(node))
    if problems:
        raise CallerError(
            f"the query reaches too far: {', '.join(problems[:5])}; ranges and subqueries are capped at "
            f"{max_range_hours:g} h and {PROMETHEUS_MAX_POINTS} points per series"
        )


def _children(node: Any) -> list[Any]:
    if isinstance(node, promql_parser.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, promql_parser.AggregateExpr):
        return [node.expr] + ([node.param] if node.param is not None else [])
    if isinstance(node, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr):
        return [node.expr]
    if isinstance(node, promql_parser.Call):
        return list(node.args)
    return []  # selectors and literals


def check_comment(comment: str) -> str:
    """A silence's comment says why in words: no control or invisible characters, and at least three words
    of three letters or more (ten spaces or zero-width characters once passed)."""
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in comment):
        raise CallerError("the comment may not contain control or invisible characters")
    if len(_WORD.findall(comment)) < 3:
        raise CallerError("the comment must say why in words (at least three words), e.g. the incident or ticket")
    return comment.strip()


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
