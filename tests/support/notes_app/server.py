"""`notes`: keeps short notes on a volume. Declares a volume and Redis, and no database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from pydantic import Field

from apps.kit import CallerError, FocusedServer, KitSettings, Needs, Telemetry, ToolArgs, Volume


class NotesSettings(KitSettings):
    notes_path: Path = Path("/notes")  # NOTES_PATH, set by the platform from the declared volume


@asynccontextmanager
async def notes_dir(settings: NotesSettings, telemetry: Telemetry) -> AsyncIterator[Path]:
    yield settings.notes_path


server: FocusedServer[Path, NotesSettings] = FocusedServer(
    "mcpfleet-notes",
    NotesSettings,
    notes_dir,
    needs=Needs(redis=True, volumes=(Volume("notes", "/notes"),)),
)


class NoteArgs(ToolArgs):
    title: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,40}$")]


@server.tool(scopes={"notes:read"}, read_only=True)
async def read_note(args: NoteArgs, root: Path) -> dict[str, object]:
    """Read one note."""
    note = root / args.title
    if not note.is_file():
        raise CallerError(f"no note '{args.title}'")
    return {"text": note.read_text()}
