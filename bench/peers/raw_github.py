"""Floor for the GitHub server: listing a repository's issues from GitHub's REST API over one pooled aiohttp
session (the client the kit's `Upstream` uses) with the credential, no MCP, no checks, no cache and no budget
bookkeeping."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from _floor import floor_app, serve

FIELDS = ("number", "title", "state", "body")
state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: Any) -> AsyncIterator[None]:
    headers = {"Authorization": f"Bearer {os.environ['BENCH_GITHUB_TOKEN']}", "Accept": "application/vnd.github+json"}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(os.environ["BENCH_GITHUB_URL"], headers=headers, timeout=timeout) as client:
        state["client"] = client
        yield


async def list_issues(arguments: dict[str, Any]) -> dict[str, Any]:
    path = f"/repos/{arguments['owner']}/{arguments['repo']}/issues"
    params = {"per_page": 30, "state": arguments.get("state", "open")}
    async with state["client"].get(path, params=params) as answer:
        listed = await answer.json()
    issues = [{f: i.get(f) for f in FIELDS} | {"author": i["user"]["login"]} for i in listed]
    return {"issues": issues, "more": False}


if __name__ == "__main__":
    serve(floor_app(list_issues, lifespan))
