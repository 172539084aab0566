"""The file server served for real (uvicorn, tokens), driven by the MCP SDK client and by raw HTTP."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from apps.files.server import server as files_server
from apps.kit.cli.pin import main as pin
from tests.support.files_corpus import ATTACKS, INSIDE, SECRET, Attack, build_tree, outside_state
from tests.support.mcp_client import mcp_client
from tests.support.raw import post, rpc, tool_call

RW = "files:read files:write"


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    build_tree(tmp_path)
    return tmp_path


@pytest.fixture
def files(start_server, volume):
    return start_server(files_server, FILES_PATH=str(volume), FILES_ROOTS='{"data": "rw"}')


def call(running, name: str, arguments: dict, scopes: str = RW) -> dict:
    response = post(running.mcp_url, tool_call(name, arguments), running.token(scopes))
    assert response.status_code == 200, response.text
    return response.json()["result"]


async def test_write_read_page_list_search_move_and_delete_through_the_sdk_client(files, volume):
    text = "ünïcode line\n" * 1000  # 15 000 bytes of two-byte characters and ASCII
    async with mcp_client(files.mcp_url, files.token(RW)) as client:
        made = await client.call_tool("create_directory", {"path": "notes/2026"})
        written = await client.call_tool("write_file", {"path": "notes/2026/a.md", "content": text})
        pages, offset = [], 0
        while True:
            page = await client.call_tool("read_file", {"path": "notes/2026/a.md", "offset": offset, "length": 4001})
            pages.append(page.structured_content["text"])
            if not page.structured_content["truncated"]:
                break
            offset = page.structured_content["next_offset"]
        listed = await client.call_tool("list_directory", {"path": "notes/2026"})
        found = await client.call_tool("search_files", {"pattern": "*.md"})
        moved = await client.call_tool("move_file", {"source": "notes/2026/a.md", "destination": "notes/b.md"})
        info = await client.call_tool("get_file_info", {"path": "notes/b.md"})
        deleted = await client.call_tool("delete_file", {"path": "notes/b.md"})
        again = await client.call_tool("read_file", {"path": "notes/b.md"})
    assert made.structured_content["created"] == ["notes", "notes/2026"]
    assert written.structured_content["bytes"] == len(text.encode()) and written.structured_content["created"]
    assert "".join(pages) == text and len(pages) == 4  # cut on character boundaries, nothing lost
    assert listed.structured_content["entries"] == [{"name": "a.md", "type": "file", "size": len(text.encode())}]
    assert found.structured_content["matches"] == ["notes/2026/a.md"]
    assert moved.structured_content == {
        "root": "data",
        "from": "notes/2026/a.md",
        "to": "notes/b.md",
        "replaced": False,
    }
    assert info.structured_content["type"] == "file" and info.structured_content["links"] == 1
    assert deleted.structured_content["deleted"] == "file"
    assert again.is_error and "notes/b.md: not found" in again.content[0].text
    assert not (volume / "data" / "notes" / "b.md").exists()


def test_every_attack_in_the_corpus_is_refused_and_nothing_outside_changes(files, volume):
    before = outside_state(volume)
    root = str(volume / "data")
    accepted = []
    for attack in ATTACKS:
        started = time.monotonic()
        result = call(files, attack.tool, attack.resolved(root))
        text = result["content"][0]["text"]
        if not result.get("isError") or SECRET in text:
            accepted.append(attack.name)
        assert time.monotonic() - started < 10, f"{attack.name} hung"  # FIFOs and devices must not block
    assert accepted == []
    assert outside_state(volume) == before
    assert (volume / "data" / "ok.txt").read_text() == INSIDE  # the refused moves left it in place


@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        (Attack("", "read_file", {"path": "{root}_evil/secret.txt"}), "outside every root"),
        (Attack("", "read_file", {"path": "../outside/secret.txt"}), "leaves its root"),
        (Attack("", "read_file", {"path": "link-out/secret.txt"}), "link-out: is a symbolic link"),
        (Attack("", "write_file", {"path": "secret-link", "content": "x"}), "secret-link: is a symbolic link"),
        (Attack("", "read_file", {"path": "hard-link.txt"}), "has 2 hard links"),
        (Attack("", "read_file", {"path": "fifo"}), "not a regular file (fifo)"),
        (Attack("", "read_file", {"path": "a/" * 2100}), "at most 4096 characters"),
        (Attack("", "read_file", {"path": "\u00e9\u00e9\u00e9\u00e9/" * 500}), "longer than PATH_MAX"),
        (Attack("", "read_file", {"path": "ok.txt\x00x"}), "NUL"),
        (Attack("", "read_file", {"path": ".ENV"}), "denied by the server's policy"),
        (Attack("", "read_file", {"path": "..\u2215outside\u2215secret.txt"}), "not found"),
    ],
)
def test_refusals_say_why(files, volume, attack, reason):
    result = call(files, attack.tool, attack.resolved(str(volume / "data")))
    assert result["isError"] and reason in result["content"][0]["text"]


def test_caps_answer_with_truncated_or_a_clear_error(start_server, volume):
    data = volume / "data"
    (data / "big.txt").write_text("x" * 5000)
    (data / "many").mkdir()
    for i in range(30):
        (data / "many" / f"f{i:02}.txt").write_text("")
    running = start_server(
        files_server,
        FILES_PATH=str(volume),
        FILES_ROOTS='{"data": "rw"}',
        FILES_MAX_READ_BYTES="1000",
        FILES_MAX_WRITE_BYTES="100",
        FILES_MAX_LIST_ENTRIES="10",
        FILES_MAX_DIRECTORY_ENTRIES="20",
        FILES_MAX_SEARCH_RESULTS="5",
    )
    read = call(running, "read_file", {"path": "big.txt", "length": 100_000})["structuredContent"]
    assert (read["bytes"], read["truncated"], read["next_offset"]) == (1000, True, 1000)
    write = call(running, "write_file", {"path": "w.txt", "content": "y" * 101})
    assert write["isError"] and "content is 101 bytes; the write cap is 100 bytes" in write["content"][0]["text"]
    assert not (data / "w.txt").exists()
    listed = call(running, "list_directory", {"path": "many", "limit": 50})["structuredContent"]
    assert len(listed["entries"]) == 10 and listed["truncated"] and listed["next_offset"] == 10
    assert "more than 20 entries" in listed["note"]
    found = call(running, "search_files", {"pattern": "*.txt"})["structuredContent"]
    assert len(found["matches"]) == 5 and found["truncated"] and "found 5 matches" in found["note"]


def test_binary_files_are_described_not_dumped(files, volume):
    (volume / "data" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (volume / "data" / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    png = call(files, "read_file", {"path": "logo.png"})["structuredContent"]
    latin1 = call(files, "read_file", {"path": "latin1.txt"})["structuredContent"]
    assert png == {"root": "data", "path": "logo.png", "size": 1032, "binary": True, "media_type": "image/png"}
    assert latin1["binary"] is True and "text" not in latin1


def test_a_write_replaces_atomically_and_never_follows_a_link(files, volume):
    data = volume / "data"
    first = call(files, "write_file", {"path": "doc.txt", "content": "one"})["structuredContent"]
    os.chmod(data / "doc.txt", 0o600)
    second = call(files, "write_file", {"path": "doc.txt", "content": "two"})["structuredContent"]
    refused = call(files, "write_file", {"path": "doc.txt", "content": "three", "if_exists": "fail"})
    assert first["created"] and not second["created"]
    assert (data / "doc.txt").read_text() == "two" and oct((data / "doc.txt").stat().st_mode & 0o777) == "0o600"
    assert refused["isError"] and "already exists" in refused["content"][0]["text"]
    assert [p.name for p in data.iterdir() if p.name.startswith(".mcpfleet-")] == []  # no temporary left


def test_read_only_roots_refuse_writes_and_read_only_mode_registers_no_write_tool(start_server, volume, capsys):
    (volume / "docs").mkdir()
    mixed = start_server(files_server, FILES_PATH=str(volume), FILES_ROOTS='{"data": "rw", "docs": "ro"}')
    refused = call(mixed, "write_file", {"root": "docs", "path": "x.txt", "content": "x"})
    assert refused["isError"] and "root 'docs' is read-only" in refused["content"][0]["text"]

    read_only = start_server(files_server, FILES_PATH=str(volume), FILES_ROOTS='{"data": "rw"}', FILES_READ_ONLY="1")
    listed = post(read_only.mcp_url, rpc("tools/list"), read_only.token(RW)).json()["result"]["tools"]
    assert sorted(t["name"] for t in listed) == ["get_file_info", "list_directory", "read_file", "search_files"]
    write = post(read_only.mcp_url, tool_call("write_file", {"path": "x", "content": "x"}), read_only.token(RW))
    assert write.json()["error"]["message"] == "Unknown tool: write_file"
    manifest = httpx.get(read_only.base + "/.well-known/mcp-tools.json").json()
    assert "write_file" not in manifest["tools"]
    metadata = httpx.get(read_only.base + "/.well-known/oauth-protected-resource/mcp").json()
    assert metadata["scopes_supported"] == ["files:read"]
    # held to the full pin, a read-only deployment passes: fewer tools is reported, never a changed one
    assert (
        pin(["verify", read_only.mcp_url, "--lock", "apps/files/tools.lock.json", "--token", read_only.token(RW)]) == 0
    )
    assert "not offered: tool 'write_file' removed" in capsys.readouterr().out


def test_a_read_token_cannot_write_and_is_told_the_scope(files):
    response = post(files.mcp_url, tool_call("write_file", {"path": "x", "content": "x"}), files.token("files:read"))
    assert response.status_code == 403
    assert 'scope="files:write"' in response.headers["www-authenticate"]


def test_every_operation_writes_one_audit_event(files, volume, logs):
    call(files, "write_file", {"path": "audited.txt", "content": "hello"})
    call(files, "read_file", {"path": "audited.txt"})
    call(files, "read_file", {"path": "../outside/secret.txt"})
    events = logs.events("files_audit")
    assert [(e["tool"], e["outcome"]) for e in events] == [
        ("write_file", "ok"),
        ("read_file", "ok"),
        ("read_file", "refused"),
    ]
    write, read, refused = events
    assert write["path"] == "audited.txt" and write["root"] == "data" and write["subject"] == "alice"
    assert write["bytes"] == 5 and write["sha256"].startswith("sha256:2cf24dba")  # sha256("hello")
    assert read["bytes"] == 5 and read["sha256"] is None
    assert "leaves its root" in refused["reason"] and "hello" not in str(events)  # content is never logged
