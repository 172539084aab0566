"""`notes`: keeps short notes on a volume. Declares a volume and Redis, and no database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from pydantic import Field

from apps.kit import FocusedServer, KitSettings, Needs, Telemetry, ToolArgs, Volume


@asynccontextmanager
async def notes_dir(settings: KitSettings, telemetry: Telemetry) -> AsyncIterator[Path]:
    yield Path("/notes")


server: FocusedServer[Path, KitSettings] = FocusedServer(
    "mcpfleet-notes",
    KitSettings,
    notes_dir,
    needs=Needs(redis=True, volumes=(Volume("notes", "/notes"),)),
)


class NoteArgs(ToolArgs):
    title: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,40}$")]


@server.tool(scopes={"notes:read"}, read_only=True)
async def read_note(args: NoteArgs, root: Path) -> dict[str, object]:
    """Read one note."""
    return {"text": (root / args.title).read_text()}
