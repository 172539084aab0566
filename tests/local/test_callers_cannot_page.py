"""A caller cannot page the on-call: every server's tools, driven with schema-valid random arguments
(Hypothesis), against healthy dependencies, never end in an outcome the error-rate alerts count.

The pass that found it fired McpHighErrorRate and McpErrorBudgetBurnFast (both critical) with 234
schema-valid calls in 60 s from a read-only token: a matrix result, a string result, a year-1 `end`, an
unknown silence id, a U+2028 subject. Dependencies here are real where they can run on this machine:
PostgreSQL, Redis, Prometheus, the file system, HTTPS and SMTP receivers; Alertmanager is a scripted
fake answering as a healthy one (its Debian binary runs only in containers, see tests/integration).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.kit.declare.server import FocusedServer
from apps.kit.observe.metrics import SERVER_FAULT_OUTCOMES
from tests.conftest import requirement_missing
from tests.support import local_monitoring
from tests.support.fake_upstreams import FakeUpstream
from tests.support.raw import post, tool_call
from tests.support.running import serve_app
from tests.support.schema_strategies import arguments

EXAMPLES = 60  # per tool
UNKNOWN_SILENCE = "2a1c3b4d-0000-4000-8000-00000000dead"
# Schema-valid arguments that once ended as server faults, drawn beside the random ones.
SEEDS: dict[str, list[dict[str, Any]]] = {
    "query_metrics": [{"query": "up[1m]"}, {"query": '"a string"'}, {"query": "scalar(up)"}],
    "query_range": [
        {"query": "up", "end": "0001-01-01T00:00:00Z"},
        {"query": "max_over_time(vector(1)[7d:1s])"},
        {"query": "up", "end": "9999-12-31T23:59:59-12:00", "range": "1h"},
    ],
    "expire_silence": [{"silence_id": UNKNOWN_SILENCE}],
    "create_silence": [{"alertname": "McpHighErrorRate", "duration_minutes": 5, "comment": " " * 10}],
}
FAULT_SERIES = re.compile(r'^mcp_server_operation_duration_seconds_count\{[^}]*outcome="([a-z_]+)"[^}]*\} (\S+)$', re.M)


def faults(base: str) -> dict[str, float]:
    """The server-fault outcomes counted so far, from the server's own /metrics."""
    counted: dict[str, float] = {}
    for outcome, value in FAULT_SERIES.findall(httpx.get(base + "/metrics", timeout=10).text):
        if outcome in SERVER_FAULT_OUTCOMES:
            counted[outcome] = counted.get(outcome, 0) + float(value)
    return counted


def drive(server: FocusedServer[Any, Any], mcp_url: str, token: str) -> dict[str, int]:
    """Call every tool with schema-valid random arguments; return the HTTP statuses seen."""
    statuses: dict[str, int] = {}
    with httpx.Client(timeout=30) as client:

        def calls_of(name: str, generated: st.SearchStrategy[Any]) -> Any:
            tool_arguments = st.one_of(st.sampled_from(SEEDS[name]), generated) if name in SEEDS else generated

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            )
            @given(st.data())
            def call(data: st.DataObject) -> None:
                args = data.draw(tool_arguments, label=name)
                response = post(mcp_url, tool_call(name, args), token, client=client)
                key = f"{name} {response.status_code}"
                statuses[key] = statuses.get(key, 0) + 1
                assert response.status_code < 500, (name, args, response.text[:300])

            return call

        for name, spec in server.specs.items():
            calls_of(name, arguments(spec.definition["inputSchema"]))()
    return statuses


def assert_no_faults(base: str, statuses: dict[str, int], server: str) -> None:
    counted = faults(base)
    print(f"\n{server}: {sum(statuses.values())} schema-valid calls, statuses {statuses}; server faults {counted}")
    assert all(value == 0 for value in counted.values()), counted


def test_the_file_server(start_server, tmp_path: Path):
    from apps.files.server import server
    from tests.support.files_corpus import build_tree

    build_tree(tmp_path)
    running = start_server(
        server, FILES_PATH=str(tmp_path), FILES_ROOTS='{"data": "rw"}', RATE_LIMIT_PER_MINUTE="1000000"
    )
    statuses = drive(server, running.mcp_url, running.token("files:read files:write"))
    assert_no_faults(running.base, statuses, "files")


@pytest.mark.redis
def test_the_notification_server(start_notify):
    from apps.notify.server import server

    running = start_notify()
    statuses = drive(server, running.mcp_url, running.token("notify:read notify:send"))
    assert_no_faults(running.base, statuses, "notify")


def test_the_on_call_server(start_server, tmp_path: Path):
    from apps.oncall.server import server

    if not local_monitoring.available():
        requirement_missing("the prometheus binary (scripts/test unpacks it into .tools/)")
    alertmanager = FakeUpstream()
    alertmanager.set("GET /api/v2/alerts", 200, [])
    alertmanager.set("GET /api/v2/silences", 200, [])
    alertmanager.set("POST /api/v2/silences", 200, {"silenceID": "2a1c3b4d-0000-4000-8000-000000000009"})
    # as Alertmanager 0.25 answers an id it does not know
    alertmanager.set(f"GET /api/v2/silence/{UNKNOWN_SILENCE}", 404, "silence not found")
    alertmanager.set(f"DELETE /api/v2/silence/{UNKNOWN_SILENCE}", 500, "silence not found")
    with local_monitoring.local_prometheus(tmp_path) as prometheus_url, serve_app(alertmanager.app()) as am_url:
        running = start_server(
            server, PROMETHEUS_URL=prometheus_url, ALERTMANAGER_URL=am_url, RATE_LIMIT_PER_MINUTE="1000000"
        )
        statuses = drive(server, running.mcp_url, running.token("oncall:read oncall:write"))
        assert_no_faults(running.base, statuses, "oncall")


@pytest.mark.postgres
def test_the_database_server(db_stack, token_for):
    from apps.db.server import server

    statuses = drive(server, db_stack.mcp_url, token_for("db:read db:write", db_stack.mcp_url))
    assert_no_faults(db_stack.base, statuses, "db")
