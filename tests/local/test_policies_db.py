"""An organisation's Cedar policy, on the real db server and PostgreSQL: a group is denied one table, the server
refuses it (and lists nothing it could not use) and hides nothing else."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from apps.db.server import server as db_server
from tests.local.conftest import READER_PASSWORD, WRITER_PASSWORD
from tests.support.raw import post, rpc, tool_call

EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"


@pytest.fixture
def db_with_policies(start_server, pg, tmp_path):
    folder = tmp_path / "policies"
    folder.mkdir()
    shutil.copy(EXAMPLES / "mcp-db" / "contractors.cedar", folder / "contractors.cedar")
    return start_server(
        db_server,
        DB_READ_URL=pg.url("mcp_db_reader", READER_PASSWORD),
        DB_WRITE_URL=pg.url("mcp_db_writer", WRITER_PASSWORD),
        MCP_POLICY_DIR=str(folder),
    )


def call(running, tool: str, arguments: dict, groups: list[str]) -> dict:
    token = running.token("db:read", subject="casey", extra={"groups": groups})
    answer = post(running.mcp_url, tool_call(tool, arguments), token)
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def test_a_contractor_reads_orders_but_not_customers_and_nothing_else_is_hidden(db_with_policies):
    contractor, employee = ["contractors"], ["staff"]
    for tool in ("describe_table", "query"):
        refused = call(db_with_policies, tool, {"table": "customers"}, contractor)
        assert refused["isError"] and refused["content"][0]["text"] == (
            f"Forbidden: no policy permits '{tool}' here for you"  # the policy is not named
        )
        assert not call(db_with_policies, tool, {"table": "orders"}, contractor)["isError"]
        assert not call(db_with_policies, tool, {"table": "customers"}, employee)["isError"]
    listed = post(
        db_with_policies.mcp_url, rpc("tools/list"), db_with_policies.token("db:read", extra={"groups": contractor})
    )
    assert sorted(t["name"] for t in listed.json()["result"]["tools"]) == ["describe_table", "list_tables", "query"]
    tables = call(db_with_policies, "list_tables", {}, contractor)["structuredContent"]
    assert "customers" in str(tables)  # listing tables is not reading one: the policy names reads of customers


def test_a_policy_that_names_an_unknown_table_attribute_or_tool_stops_the_server(make_settings, tmp_path, pg):
    from apps.kit import create_app
    from apps.kit.call.policy import PolicyError

    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "typo.cedar").write_text(
        '// a comment\npermit (principal, action == Action::"drop_table", resource);\n\n'
        'forbid (principal, action, resource) when { principal.team == "x" };\n'
    )
    settings = make_settings(
        db_server.settings_cls,
        DB_READ_URL=pg.url("mcp_db_reader", READER_PASSWORD),
        DB_WRITE_URL=pg.url("mcp_db_writer", WRITER_PASSWORD),
        MCP_POLICY_DIR=str(folder),
    )
    with pytest.raises(PolicyError) as refused:
        create_app(db_server, settings)
    message = str(refused.value)
    assert 'typo.cedar: line 2: unrecognized action `Action::"drop_table"`' in message
    assert "typo.cedar: line 4: attribute `team` on entity type `Person` not found" in message
