"""The kit's harness serves any focused server: a new server's HTTP-surface tests are a few lines."""

from __future__ import annotations

from tests.support.mcp_client import mcp_client
from tests.support.notes_app.server import server as notes
from tests.support.raw import post, tool_call


async def test_a_second_server_gets_the_whole_production_layer(start_server, tmp_path):
    (tmp_path / "groceries").write_text("milk")
    running = start_server(notes, NOTES_PATH=str(tmp_path))
    async with mcp_client(running.mcp_url, running.token("notes:read")) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["read_note"]
        assert (await client.call_tool("read_note", {"title": "groceries"})).structured_content == {"text": "milk"}
        missing = await client.call_tool("read_note", {"title": "nothing"})
    assert missing.is_error and "no note 'nothing'" in missing.content[0].text
    assert post(running.mcp_url, tool_call("read_note", {"title": "groceries"})).status_code == 401
    refused = post(running.mcp_url, tool_call("read_note", {"title": "groceries"}), running.token("other:scope"))
    assert refused.status_code == 403 and 'scope="notes:read"' in refused.headers["www-authenticate"]
