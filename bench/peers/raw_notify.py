"""Floor for the notification server: a preview's own work, the outbound secret check (the server's own policy, in
a worker thread), rendering the webhook body and keeping it in Redis for ten minutes, no MCP, no checks."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).parent))
from _floor import floor_app, serve

from apps.notify.policy import refuse_secrets, strip_mass_mentions

state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: Any) -> AsyncIterator[None]:
    state["redis"] = Redis.from_url(os.environ["BENCH_REDIS_URL"])
    yield
    await state["redis"].aclose()


async def preview_notification(arguments: dict[str, Any]) -> dict[str, Any]:
    await asyncio.to_thread(refuse_secrets, arguments["subject"], arguments["body"])
    subject, _ = strip_mass_mentions(arguments["subject"])
    text, _ = strip_mass_mentions(arguments["body"])
    preview_id = uuid.uuid4().hex
    rendered = {"json": {"id": preview_id, "target": arguments["target"], "subject": subject, "body": text}}
    digest = hashlib.sha256(json.dumps(rendered, sort_keys=True).encode()).hexdigest()
    preview = {"target": arguments["target"], "rendered": rendered, "sha256": digest}
    await state["redis"].set(f"bench:notify:preview:{preview_id}", json.dumps(preview), ex=600)
    return {"preview_id": preview_id, "rendered": rendered}


if __name__ == "__main__":
    serve(floor_app(preview_notification, lifespan))
