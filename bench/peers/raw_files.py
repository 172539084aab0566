"""Floor for the files server: reading the same file in a worker thread, no MCP, no checks."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).parent))
from _floor import floor_app, serve

ROOT = Path(os.environ["BENCH_FILES_ROOT"])
LIMITER = anyio.CapacityLimiter(8)  # the files server's default worker threads


def read(path: Path, length: int) -> str:
    with path.open("rb") as handle:
        return handle.read(length).decode("utf-8")


async def read_file(arguments: dict[str, Any]) -> dict[str, Any]:
    text = await anyio.to_thread.run_sync(read, ROOT / arguments["path"], 256 * 1024, limiter=LIMITER)
    return {"text": text, "truncated": False}


if __name__ == "__main__":
    serve(floor_app(read_file))
