"""The README is a map and the docs are what it points at: it stays short, every relative link resolves (to a file
and, where it names one, a heading), and the code the docs show runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.raw import post, tool_call

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "apps").glob("*/README.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation out, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_readme_is_a_map_of_at_most_150_lines():
    assert len((REPO / "README.md").read_text().splitlines()) <= 150


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md":
            headings = {slug(h) for h in re.findall(r"(?m)^#+ (.*)$", file.read_text())}
            if anchor not in headings:
                broken.append(target)
    assert broken == []


def test_the_add_a_tool_example_runs_as_written(start_server, tmp_path):
    page = (REPO / "docs" / "adding.md").read_text()
    section = page[page.index("## Add a tool") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, object] = {"__name__": "docs_example"}
    exec(compile(code[1], "docs/adding.md", "exec", dont_inherit=True), namespace)  # noqa: S102 - the docs' own example
    running = start_server(namespace["server"])
    greeted = post(running.mcp_url, tool_call("greet", {"name": "Ada"}), running.token("hello:read"))
    assert greeted.json()["result"]["structuredContent"] == {"greeting": "Hello, Ada"}
    refused = post(running.mcp_url, tool_call("greet", {"name": "nobody"}), running.token("hello:read"))
    assert refused.json()["result"]["isError"] and "greet somebody" in refused.json()["result"]["content"][0]["text"]
    forbidden = post(running.mcp_url, tool_call("greet", {"name": "Ada"}), running.token("other:read"))
    assert forbidden.status_code == 403
