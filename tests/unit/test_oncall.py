"""The on-call server's guards, against a scripted Prometheus and Alertmanager (real HTTP both ways).

The real services are in the container suite (tests/integration/test_oncall_container.py).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from apps.kit import CallerError
from apps.kit.wire.encoding import dumps
from apps.oncall.guards import PROMETHEUS_MAX_POINTS, fit, plan_range, summarise
from apps.oncall.server import server as oncall_server
from tests.support.fake_upstreams import FakeUpstream, matrix, vector
from tests.support.mcp_client import mcp_client
from tests.support.raw import post, tool_call
from tests.support.running import serve_app, start_process

READ, WRITE = "oncall:read", "oncall:read oncall:write"
BUDGET = 24 * 1024
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
def upstreams():
    prometheus, alertmanager = FakeUpstream(), FakeUpstream()
    with serve_app(prometheus.app()) as prometheus_url, serve_app(alertmanager.app()) as alertmanager_url:
        yield prometheus, alertmanager, prometheus_url, alertmanager_url


@pytest.fixture
def oncall(start_server, upstreams):
    _, _, prometheus_url, alertmanager_url = upstreams
    return start_server(
        oncall_server,
        PROMETHEUS_URL=prometheus_url,
        ALERTMANAGER_URL=alertmanager_url,
        ONCALL_TENANT="team-a",
        PROMETHEUS_BEARER_TOKEN="prom-token-for-tests",
    )


def call(running, tool: str, arguments: dict, scopes: str = READ) -> dict:
    response = post(running.mcp_url, tool_call(tool, arguments), running.token(scopes, subject="oncall-alice"))
    assert response.status_code == 200, response.text
    return response.json()["result"]


# --- the guards as functions ----------------------------------------------------------------------------
def test_a_range_over_the_cap_is_refused_and_the_step_is_raised_to_the_point_caps():
    with pytest.raises(CallerError, match="range 2d is over the 24 h cap"):
        plan_range("2d", NOW, None, False, 24, 60)
    plan = plan_range("24h", NOW, 1, False, 24, 60)  # 1 s steps would be 86 401 points
    assert plan.step == 8 and plan.points == 10_801 <= PROMETHEUS_MAX_POINTS
    raw = plan_range("24h", NOW, 1, True, 24, 60)
    assert raw.points <= 60 and raw.step == 1465
    assert plan_range("1h", NOW, None, False, 24, 60).step == 15  # about 240 points by default


def test_a_series_summary_skips_non_finite_points():
    summary = summarise([[1.7e9, "1"], [1.7e9 + 60, "NaN"], [1.7e9 + 120, "3"]])
    assert summary | {"from": None, "to": None} == {
        "points": 3,
        "min": 1.0,
        "max": 3.0,
        "avg": 2.0,
        "last": 3.0,
        "non_finite_points": 1,
        "from": None,
        "to": None,
    }


def test_fit_keeps_what_fits_the_budget_and_says_so():
    answer = {"series": [{"labels": {"pod": f"p{i}", "pad": "x" * 100}} for i in range(500)], "total_series": 500}
    fitted = fit(answer, "series", 4096)
    assert len(dumps(fitted)) <= 4096 and fitted["truncated"] and 0 < len(fitted["series"]) < 500
    assert fitted["budget_note"].startswith(f"{500 - len(fitted['series'])} more left out")


# --- through the server ---------------------------------------------------------------------------------
def test_an_over_wide_query_is_cut_to_the_series_cap_and_the_byte_budget(oncall, upstreams):
    prometheus = upstreams[0]
    prometheus.set("/api/v1/query", 200, vector(5000, label_chars=150))
    result = call(oncall, "query_metrics", {"query": '{__name__=~".+"}'})["structuredContent"]
    assert result["total_series"] == 5000 and result["truncated"]
    assert len(result["series"]) <= 50 and len(dumps(result)) <= BUDGET
    [request] = prometheus.to("/api/v1/query")
    assert request.form["timeout"] == "10s" and request.form["query"] == '{__name__=~".+"}'
    assert request.headers["x-scope-orgid"] == "team-a"
    assert request.headers["authorization"] == "Bearer prom-token-for-tests"  # from settings, never the caller


def test_an_upstream_answer_over_the_read_cap_is_refused_not_buffered(start_server, upstreams):
    prometheus, _, prometheus_url, alertmanager_url = upstreams
    prometheus.set("/api/v1/query", 200, vector(2000, label_chars=100))  # about 0.4 MiB of JSON
    capped = start_server(
        oncall_server,
        PROMETHEUS_URL=prometheus_url,
        ALERTMANAGER_URL=alertmanager_url,
        ONCALL_MAX_UPSTREAM_BYTES=str(64 * 1024),
    )
    result = call(capped, "query_metrics", {"query": "m"})
    assert result["isError"]
    assert "Prometheus's answer is over 65536 bytes; narrow the request" in result["content"][0]["text"]
    assert len(prometheus.to("/api/v1/query")) == 1  # the caller's to narrow, not retried


def test_range_answers_are_summaries_unless_raw_and_stay_within_budget(oncall, upstreams):
    prometheus = upstreams[0]
    prometheus.set("/api/v1/query_range", 200, matrix(80, 240))
    summary = call(oncall, "query_range", {"query": "up", "range": "4h", "step_seconds": 1})["structuredContent"]
    assert summary["step_seconds"] == 2 and "step raised from 1 s" in summary["step_note"]
    assert summary["series"][0] | {"from": None, "to": None} == {
        "labels": {"__name__": "m", "pod": "pod-0"},
        "points": 240,
        "min": 0.0,
        "max": 239.0,
        "avg": 119.5,
        "last": 239.0,
        "from": None,
        "to": None,
    }
    assert summary["total_series"] == 80 and len(summary["series"]) == 50 and len(dumps(summary)) <= BUDGET
    raw = call(oncall, "query_range", {"query": "up", "range": "4h", "raw": True})["structuredContent"]
    assert raw["step_seconds"] == 245 and len(dumps(raw)) <= BUDGET and raw["truncated"]
    assert prometheus.to("/api/v1/query_range")[-1].form["step"] == "245"


def test_a_range_over_the_cap_never_reaches_prometheus(oncall, upstreams):
    result = call(oncall, "query_range", {"query": "up", "range": "3d"})
    assert result["isError"] and "range 3d is over the 24 h cap" in result["content"][0]["text"]
    assert upstreams[0].to("/api/v1/query_range") == []


def test_a_bad_query_is_the_callers_and_an_unreachable_prometheus_is_the_servers(oncall, upstreams):
    prometheus = upstreams[0]
    prometheus.set("/api/v1/query", 400, {"status": "error", "errorType": "bad_data", "error": "parse error at 3"})
    bad = call(oncall, "query_metrics", {"query": "rate(up[5m])"})  # the fake refuses what the parser passed
    assert bad["isError"] and "Prometheus refused the query (bad_data): parse error at 3" in bad["content"][0]["text"]
    assert len(prometheus.to("/api/v1/query")) == 1  # a refusal is not retried
    prometheus.set("/api/v1/query", 503, {"status": "error", "errorType": "timeout", "error": "query timed out"})
    slow = call(oncall, "query_metrics", {"query": "up"})
    assert "ran past the 10 s limit" in slow["content"][0]["text"]
    prometheus.set("/api/v1/query", 502, b"bad gateway")
    down = call(oncall, "query_metrics", {"query": "up"})
    assert down["isError"] and "Prometheus answered HTTP 502" in down["content"][0]["text"]
    assert len(prometheus.to("/api/v1/query")) == 2 + 3  # a read is retried twice on a 5xx
    text = httpx.get(oncall.base + "/metrics").text
    assert 'gen_ai_tool_name="query_metrics",mcp_method_name="tools/call",outcome="rejected"} 2.0' in text
    assert 'gen_ai_tool_name="query_metrics",mcp_method_name="tools/call",outcome="error"} 1.0' in text


def test_a_redirect_is_never_followed(oncall, upstreams):
    upstreams[0].set("/api/v1/query", 302, b"", {"location": "http://169.254.169.254/latest/meta-data"})
    result = call(oncall, "query_metrics", {"query": "up"})
    assert result["isError"] and "redirect (302); not followed" in result["content"][0]["text"]


ALERT = {
    "labels": {"alertname": "McpHighErrorRate", "app": "mcp-db", "severity": "critical"},
    "annotations": {"summary": "mcp-db: 5% of tool calls fail", "runbook_url": "http://evil.invalid/runbook"},
    "startsAt": "2026-11-28T11:55:00Z",
    "fingerprint": "abc123",
    "status": {"state": "active"},
}


async def test_firing_alerts_come_with_the_shipped_runbook_not_the_alerts_url(oncall, upstreams):
    alertmanager = upstreams[1]
    warning = {**ALERT, "labels": {"alertname": "McpNotReady", "app": "mcp-db", "severity": "warning"}}
    alertmanager.set("/api/v2/alerts", 200, [warning, ALERT])
    async with mcp_client(oncall.mcp_url, oncall.token(READ)) as client:
        result = (await client.call_tool("list_firing_alerts", {"app": "mcp-db"})).structured_content
    assert [a["alertname"] for a in result["alerts"]] == ["McpHighErrorRate", "McpNotReady"]  # most severe first
    page = Path("runbooks/McpHighErrorRate.md").read_text().replace("APP", "mcp-db")
    assert result["runbooks"]["McpHighErrorRate/mcp-db"] == page
    assert result["alerts"][0]["runbook"] == "McpHighErrorRate/mcp-db"
    assert len(dumps(result)) <= BUDGET
    [request] = alertmanager.to("/api/v2/alerts")
    assert ("filter", 'app="mcp-db"') in request.query and ("silenced", "false") in request.query


def test_get_runbook_returns_the_page_and_its_queries(oncall):
    result = call(oncall, "get_runbook", {"alert": "McpHighErrorRate", "app": "mcp-db"})["structuredContent"]
    assert result["text"].startswith("# McpHighErrorRate") and "APP" not in result["text"]
    assert any('app="mcp-db"' in q for q in result["queries"]) and len(dumps(result)) <= BUDGET
    unknown = call(oncall, "get_runbook", {"alert": "NoSuchAlert"})
    assert unknown["isError"] and "no runbook for 'NoSuchAlert'" in unknown["content"][0]["text"]
    traversal = call(oncall, "get_runbook", {"alert": "../../etc/passwd"})
    assert traversal["isError"] and "Invalid arguments" in traversal["content"][0]["text"]


def test_a_silence_is_built_by_the_server(oncall, upstreams):
    alertmanager = upstreams[1]
    alertmanager.set("POST /api/v2/silences", 200, {"silenceID": "2a1c3b4d-0000-4000-8000-000000000001"})
    alertmanager.set("GET /api/v2/silences", 200, [])
    created = call(
        oncall,
        "create_silence",
        {
            "alertname": "McpHighErrorRate",
            "matchers": {"app": "mcp-db"},
            "duration_minutes": 60,
            "comment": "rolling back the bad deploy, INC-42",
        },
        WRITE,
    )["structuredContent"]
    [request] = [r for r in alertmanager.to("/api/v2/silences") if r.method == "POST"]
    assert request.json["matchers"] == [
        {"name": "alertname", "value": "McpHighErrorRate", "isRegex": False, "isEqual": True},
        {"name": "app", "value": "mcp-db", "isRegex": False, "isEqual": True},
    ]
    assert request.json["createdBy"] == "oncall-alice via mcp-oncall" == created["created_by"]
    starts, ends = (datetime.fromisoformat(request.json[k]) for k in ("startsAt", "endsAt"))
    assert (ends - starts).total_seconds() == 3600


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"duration_minutes": 300}, "duration 300 min is over the 4 h cap"),
        ({"comment": "short"}, "comment: String should have at least 10 characters"),
        ({"matchers": {"app": ".*"}}, "matchers.app: String should match pattern"),  # no regex, no wildcard
        ({"matchers": {"app": ""}}, "matchers.app: String should match pattern"),  # empty matches an absent label
        ({"matchers": {"alertname": "Other"}}, "give the alert's name as `alertname`"),
        ({"created_by": "someone-else"}, "created_by: Extra inputs are not permitted"),
        ({"alertname": None}, "alertname"),
    ],
)
def test_silence_guards(oncall, upstreams, arguments, message):
    base = {"alertname": "McpHighErrorRate", "duration_minutes": 30, "comment": "investigating INC-42 now"}
    result = call(oncall, "create_silence", {**base, **arguments}, WRITE)
    assert result["isError"] and message in result["content"][0]["text"]
    assert [r for r in upstreams[1].to("/api/v2/silences") if r.method == "POST"] == []


def test_expiring_takes_only_a_uuid_and_is_idempotent(oncall, upstreams):
    alertmanager = upstreams[1]
    for hostile in ("../../api/v2/status", "http://evil.invalid/x", "2a1c3b4d-0000-4000-8000-00000000000g"):
        result = call(oncall, "expire_silence", {"silence_id": hostile}, WRITE)
        assert result["isError"] and "a silence id is a UUID" in result["content"][0]["text"]
    assert alertmanager.api_calls() == []
    silence = "2a1c3b4d-0000-4000-8000-000000000001"
    mine = {"id": silence, "createdBy": "oncall-alice via mcp-oncall", "status": {"state": "active"}}
    alertmanager.set(f"GET /api/v2/silence/{silence}", 200, mine)
    alertmanager.sequence(f"DELETE /api/v2/silence/{silence}", (200, {}), (500, "silence 2a1c... already expired"))
    assert call(oncall, "expire_silence", {"silence_id": silence}, WRITE)["structuredContent"] == {"expired": silence}
    assert call(oncall, "expire_silence", {"silence_id": silence}, WRITE)["structuredContent"] == {"expired": silence}


@pytest.mark.parametrize(
    "maker",
    ["bob-sre", "oncall-alice", "oncall-mallory via mcp-oncall", "oncall-alice via mcp-oncall (edited)"],
)
def test_a_silence_made_by_someone_else_is_never_expired(oncall, upstreams, maker):
    """An assistant steered by injected text cannot end a person's maintenance window, or another
    caller's silence: only silences this server made for this caller."""
    alertmanager = upstreams[1]
    silence = "2a1c3b4d-0000-4000-8000-000000000002"
    alertmanager.set(
        f"GET /api/v2/silence/{silence}", 200, {"id": silence, "createdBy": maker, "status": {"state": "active"}}
    )
    result = call(oncall, "expire_silence", {"silence_id": silence}, WRITE)
    assert result["isError"] and "not made by you through this server" in result["content"][0]["text"]
    assert [r for r in alertmanager.api_calls() if r.method == "DELETE"] == []


def test_expiring_an_unknown_silence_is_the_callers_mistake(oncall, upstreams):
    silence = "2a1c3b4d-0000-4000-8000-000000000003"
    upstreams[1].set(f"GET /api/v2/silence/{silence}", 404, "silence not found")
    result = call(oncall, "expire_silence", {"silence_id": silence}, WRITE)
    assert result["isError"] and f"there is no silence {silence}" in result["content"][0]["text"]
    assert 'outcome="rejected"} 1.0' in httpx.get(oncall.base + "/metrics").text


def test_silences_per_caller_are_bounded(oncall, upstreams):
    alertmanager = upstreams[1]
    running = [
        {"id": f"s{i}", "createdBy": "oncall-alice via mcp-oncall", "status": {"state": "active"}} for i in range(5)
    ]
    others = [{"id": "p1", "createdBy": "bob-sre", "status": {"state": "active"}}]
    alertmanager.set("GET /api/v2/silences", 200, running + others)
    arguments = {"alertname": "McpHighErrorRate", "duration_minutes": 30, "comment": "investigating INC-42 now"}
    result = call(oncall, "create_silence", arguments, WRITE)
    assert result["isError"] and "you have 5 silences running (at most 5)" in result["content"][0]["text"]
    assert [r for r in alertmanager.api_calls() if r.method == "POST"] == []


@pytest.mark.parametrize(
    "comment", [" " * 12, "\u200b" * 12, "aaaaaaaaaaaa", "ok ok ok ok ok", "INC-42 INC-43", "fixing\u200bit now please"]
)
def test_a_silence_comment_must_say_why_in_words(oncall, upstreams, comment):
    arguments = {"alertname": "McpHighErrorRate", "duration_minutes": 30, "comment": comment}
    result = call(oncall, "create_silence", arguments, WRITE)
    assert result["isError"] and "comment" in result["content"][0]["text"]
    assert upstreams[1].api_calls() == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("max_over_time(vector(1)[7d:1s])", "subquery [1w:...]"),
        ("sum(rate(http_requests_total[25h]))", "range selector [1d1h]"),
        ("max_over_time(up[1h:100ms])", "subquery of 36000 points"),
        ("max_over_time(max_over_time(up[1h:1s])[20h:1m])", "subquery of 4320000 points"),
        ("up{", "not a PromQL expression"),
    ],
)
def test_costly_promql_is_refused_before_prometheus_is_asked(oncall, upstreams, query, message):
    for tool, extra in (("query_metrics", {}), ("query_range", {"range": "1h"})):
        result = call(oncall, tool, {"query": query, **extra})
        assert result["isError"] and message in result["content"][0]["text"]
    assert upstreams[0].api_calls() == []


def test_every_result_type_prometheus_answers_is_served(oncall, upstreams):
    prometheus = upstreams[0]
    prometheus.set("/api/v1/query", 200, matrix(3, 5))  # an instant query of up[5m]
    answer = call(oncall, "query_metrics", {"query": "up[5m]"})["structuredContent"]
    assert answer["result_type"] == "matrix" and answer["series"][0]["points"] == 5
    prometheus.set(
        "/api/v1/query", 200, {"status": "success", "data": {"resultType": "string", "result": [1.7e9, "hi"]}}
    )
    assert call(oncall, "query_metrics", {"query": '"hi"'})["structuredContent"]["value"] == "hi"
    prometheus.set(
        "/api/v1/query", 200, {"status": "success", "data": {"resultType": "scalar", "result": [1.7e9, "NaN"]}}
    )
    assert call(oncall, "query_metrics", {"query": "0/0"})["structuredContent"]["value"] == "NaN"


@pytest.mark.parametrize("end", ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00"])
def test_an_out_of_range_time_is_the_callers_mistake(oncall, upstreams, end):
    for tool, extra in (("query_range", {"end": end}), ("query_metrics", {"time": end})):
        result = call(oncall, tool, {"query": "up", **extra})
        assert result["isError"] and "time" in result["content"][0]["text"]
    assert upstreams[0].api_calls() == []
    assert 'outcome="internal_error"} 0.0' in httpx.get(oncall.base + "/metrics").text


def test_upstream_error_texts_are_redacted(oncall, upstreams):
    leak = "auth failed for Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl at http://u:hunter2@prom"
    upstreams[0].set("/api/v1/query", 422, {"status": "error", "errorType": "execution", "error": leak})
    text = call(oncall, "query_metrics", {"query": "up"})["content"][0]["text"]
    assert "hunter2" not in text and "eyJzdWIi" not in text and "[REDACTED" in text


def test_writes_need_the_write_scope(oncall):
    response = post(oncall.mcp_url, tool_call("create_silence", {}), oncall.token(READ))
    assert response.status_code == 403 and 'scope="oncall:write"' in response.headers["www-authenticate"]


def with_dripping_prometheus(start_server, upstreams, deadline: str):
    """The on-call server in front of a Prometheus that answers queries a byte every 0.2 s, forever."""
    prometheus, _, prometheus_url, alertmanager_url = upstreams
    prometheus.drip["/api/v1/query"] = 0.2
    return start_server(
        oncall_server,
        PROMETHEUS_URL=prometheus_url,
        ALERTMANAGER_URL=alertmanager_url,
        ONCALL_UPSTREAM_TIMEOUT_SECONDS=deadline,
    )


def test_an_upstream_that_drips_its_answer_cannot_hold_a_call(start_server, upstreams):
    """One on-call call hung 91 s on an upstream answering a byte at a time: the per-read timeout never
    fired. A request, retries included, now has one deadline."""
    oncall = with_dripping_prometheus(start_server, upstreams, "2")
    started = time.monotonic()
    result = call(oncall, "query_metrics", {"query": "up"})
    assert result["isError"] and "did not answer within 2 s" in result["content"][0]["text"]
    assert time.monotonic() - started < 3.5


def test_a_callers_queries_in_flight_are_bounded(start_server, upstreams):
    prometheus = upstreams[0]
    oncall = with_dripping_prometheus(start_server, upstreams, "3")
    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(call, oncall, "query_metrics", {"query": "up"}) for _ in range(2)]
        deadline = time.monotonic() + 2
        while len(prometheus.to("/api/v1/query")) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        third = call(oncall, "query_metrics", {"query": "up"})
        assert third["isError"] and "you already have 2 queries running" in third["content"][0]["text"]
        other = post(oncall.mcp_url, tool_call("list_silences", {}), oncall.token(READ, subject="bob"))
        assert other.status_code == 200  # another caller is not held up
        [f.result() for f in held]
    assert len(prometheus.to("/api/v1/query")) == 2


def test_a_servers_own_runbooks_ship_with_the_fleets():
    """McpNotifyDeliveryFailing's page lives in apps/notify/runbooks/, beside the alert the notify server
    declares; the on-call server finds it with the fleet's pages (apps.fleet)."""
    from apps import fleet
    from apps.oncall.config import DEFAULT_RUNBOOKS
    from apps.oncall.runbooks import Runbooks

    pages = Runbooks.load([DEFAULT_RUNBOOKS, *fleet.runbook_dirs()[1:]]).pages
    assert pages["McpNotifyDeliveryFailing"].startswith("# McpNotifyDeliveryFailing")
    assert "McpHighErrorRate" in pages


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("(" * 1999 + "1" + ")" * 1999, "nests 1999 levels deep"),  # the fourth attack pass's query
        ("+".join(["1"] * 1999), "1998 operators"),  # parsed alone in ~2 s before
        ("abs(" * 33 + "up" + ")" * 33, "nests 33 levels deep"),
    ],
)
def test_a_query_too_deep_or_too_long_to_parse_cheaply_is_refused_from_its_text(oncall, upstreams, query, message):
    result = call(oncall, "query_metrics", {"query": query})
    assert result["isError"] and message in result["content"][0]["text"]
    assert upstreams[0].api_calls() == []


def test_a_string_that_looks_deep_is_data_and_a_query_at_the_bounds_is_served(oncall, upstreams):
    upstreams[0].set("/api/v1/query", 200, vector(1))
    for query in (
        'up{job="' + "(" * 100 + '"}',
        "(" * 32 + "+".join(["up"] * 33) + ")" * 32,  # 32 deep, 32 operators
        'sum by (job) (rate(x{code!="500"}[5m])) >= 1 and on(job) up == 1',
    ):
        result = call(oncall, "query_metrics", {"query": query})
        assert not result["isError"], result


def test_ten_hostile_queries_at_once_are_refused_within_a_second_and_health_stays_fast(upstreams):
    """The attack as reported, on a real process: 10 queries of 1,999 nested parentheses at once. Before, the
    cost check walked the tree on the event loop for minutes: /health timed out and the server was paged down."""
    prometheus, _, prometheus_url, alertmanager_url = upstreams
    prometheus.set("/api/v1/query", 200, vector(1))
    process = start_process(
        "apps.oncall",
        PROMETHEUS_URL=prometheus_url,
        ALERTMANAGER_URL=alertmanager_url,
        ONCALL_TENANT="team-a",
        PROMETHEUS_BEARER_TOKEN="prom-token-for-tests",
    )
    try:
        token = process.token(READ)
        hostile = tool_call("query_metrics", {"query": "(" * 1999 + "1" + ")" * 1999})

        def attack() -> tuple[float, dict]:
            started = time.monotonic()
            response = post(process.url, hostile, token)
            return time.monotonic() - started, response.json()["result"]

        health_base = process.url.removesuffix("/mcp")
        probe = httpx.Client(timeout=10)
        assert post(process.url, tool_call("query_metrics", {"query": "up"}), token).status_code == 200  # warm
        assert probe.get(f"{health_base}/health").status_code == 200
        with ThreadPoolExecutor(10) as pool:
            answers = [pool.submit(attack) for _ in range(10)]
            probes = []
            for _ in range(10):
                started = time.monotonic()
                assert probe.get(f"{health_base}/health").status_code == 200
                probes.append(time.monotonic() - started)
            refused = [future.result() for future in answers]
        texts = [result["content"][0]["text"] for _, result in refused]
        assert all(result["isError"] for _, result in refused) and all("nests 1999 levels" in t for t in texts)
        slowest = max(seconds for seconds, _ in refused)
        print(f"\n10 hostile queries at once: slowest refusal {slowest:.3f} s, /health {max(probes):.3f} s")
        assert slowest < 1.0, refused
        assert max(probes) < 0.1, probes
        metrics = httpx.get(f"{health_base}/metrics", timeout=10).text
        assert _counted_outcome(metrics, "rejected") == 10  # the caller's mistake, never a server fault
        assert sum(_counted_outcome(metrics, fault) for fault in ("error", "internal_error", "overloaded")) == 0
    finally:
        process.process.kill()
        process.process.wait()


def _counted_outcome(metrics: str, outcome: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("mcp_server_operation_duration_seconds_count") and f'outcome="{outcome}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total
