"""The focused file MCP server: read, list, search and (where a root is `rw`) write files under its roots.

Roots are configuration (`FILES_ROOTS`); every path a caller sends is resolved inside one of them by
`apps.files.sandbox`, which never follows a link and never re-resolves a checked path by name. In
read-only mode (`FILES_READ_ONLY`, or no `rw` root) the write tools are not registered at all.
Every operation, allowed or refused, writes one `files_audit` event.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, StringConstraints

from apps.files import operations
from apps.files.config import FilesSettings, RootName
from apps.files.glob import MAX_PATTERN_CHARS, Glob
from apps.files.operations import Done
from apps.files.paths import MAX_PATH_CHARS
from apps.files.sandbox import Sandbox, StartupError, Target
from apps.files.telemetry import DASHBOARD, FileCounters
from apps.kit import (
    CallerError,
    Check,
    FocusedServer,
    Needs,
    ServerError,
    Telemetry,
    ToolArgs,
    Volume,
    bounded,
    log_event,
)
from apps.kit import current_principal as caller

T = TypeVar("T")
Path = Annotated[str, StringConstraints(max_length=MAX_PATH_CHARS)]
MAX_CONTENT_CHARS = 48 * 1024 * 1024  # the schema's bound; FILES_MAX_WRITE_BYTES is the cap that applies


class ReadOnlyVolume(Exception):
    """A root configured `rw` sits on a volume mounted read-only (readiness names this type)."""


@dataclass
class Files:
    """The server's state: the open roots, the threads that touch the disk, and the caps."""

    sandbox: Sandbox
    settings: FilesSettings
    executor: ThreadPoolExecutor
    counters: FileCounters

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """File system calls block: they run on the server's own threads, never on the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(function, *args))

    def readiness_checks(self) -> Mapping[str, Check]:
        return {"volume": self.check_volume}

    async def check_volume(self) -> None:
        for root in self.sandbox.roots.values():
            info = await self.run(os.fstatvfs, root.fd)
            if root.writable and info.f_flag & os.ST_RDONLY:
                raise ReadOnlyVolume(root.name)


@asynccontextmanager
async def open_files(settings: FilesSettings, telemetry: Telemetry) -> AsyncIterator[Files]:
    try:
        sandbox = Sandbox.open(settings)
    except (StartupError, OSError) as error:
        log_event("files_roots_invalid", logging.CRITICAL, error=str(error))
        raise
    executor = ThreadPoolExecutor(settings.files_workers, thread_name_prefix="files")
    try:
        yield Files(sandbox, settings, executor, FileCounters(telemetry.registry))
    finally:
        executor.shutdown(wait=True)
        sandbox.close()


def _writes_the_volume(settings: FilesSettings) -> bool:
    return not settings.read_only


server: FocusedServer[Files, FilesSettings] = FocusedServer(
    "mcpfleet-files",
    FilesSettings,
    open_files,
    instructions="Read, list and search files under the server's roots, and write where a root allows it. "
    "Paths are relative to a root (default: the first) or absolute under one; links are never followed.",
    needs=Needs(volumes=(Volume("files", "/srv/files", writable=_writes_the_volume),)),
    dashboard=DASHBOARD,
    read_only_when=lambda settings: settings.read_only,
)


class At(ToolArgs):
    root: RootName | None = Field(default=None, description="a root's name; default: the first root")
    path: Path = Field(description="relative to the root, or absolute under it")


class ReadArgs(At):
    offset: Annotated[int, Field(ge=0, le=2**53 - 1)] = 0
    length: Annotated[int | None, Field(ge=1, le=2**31, description="bytes; at most the server's read cap")] = None


class ListArgs(At):
    path: Path = "."
    offset: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    limit: Annotated[int, Field(ge=1, le=10_000, description="entries per page; at most the server's cap")] = 200


class SearchArgs(At):
    path: Path = "."
    pattern: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PATTERN_CHARS)] = Field(
        description="glob: * and ? within a name, ** across names; without '/', a name at any depth"
    )
    limit: Annotated[int, Field(ge=1, le=10_000, description="matches; at most the server's cap")] = 100


class WriteArgs(At):
    content: Annotated[str, StringConstraints(max_length=MAX_CONTENT_CHARS)] = Field(description="UTF-8 text")
    if_exists: Literal["replace", "fail"] = "replace"


class MoveArgs(ToolArgs):
    root: RootName | None = Field(default=None, description="a root's name; default: the first root")
    source: Path
    destination: Path
    overwrite: bool = False


async def audited(
    state: Files, tool: str, args: At | MoveArgs, work: Callable[[Target], Awaitable[Done]], *, write: bool = False
) -> dict[str, Any]:
    """Resolve the target, run the work on a thread, and write one audit event whatever happens."""
    principal = caller()
    event: dict[str, Any] = {
        "tool": tool,
        "root": args.root or state.sandbox.default_root,
        "path": bounded(args.source if isinstance(args, MoveArgs) else args.path, 256),
        "subject": principal.subject,
        "client_id": principal.client_id,
    }
    try:
        target = state.sandbox.locate(args.root, args.source if isinstance(args, MoveArgs) else args.path)
        if write:
            state.sandbox.writable(target)
        event.update(root=target.root.name, path=target.path.text)
        done = await work(target)
    except (CallerError, ServerError) as error:
        outcome = "refused" if isinstance(error, CallerError) else "error"
        log_event("files_audit", logging.WARNING, outcome=outcome, reason=str(error), **event)
        raise
    direction = "written" if write else "read"
    if done.bytes and tool in ("read_file", "write_file"):
        state.counters.bytes.labels(root=target.root.name, direction=direction).inc(done.bytes)
    log_event("files_audit", outcome="ok", bytes=done.bytes, sha256=done.sha256, **event, **done.extra)
    return done.answer


@server.tool(scopes={"files:read"}, read_only=True)
async def read_file(args: ReadArgs, files: Files) -> dict[str, Any]:
    """Read a UTF-8 text file from `offset`, at most `length` bytes (the server caps it). The answer says
    `truncated` and gives `next_offset` when more remains; a binary file is described (size, media type)."""
    cap = files.settings.files_max_read_bytes
    length = min(args.length or cap, cap)
    return await audited(
        files, "read_file", args, lambda t: files.run(operations.read_file, files.sandbox, t, args.offset, length)
    )


@server.tool(scopes={"files:read"}, read_only=True)
async def get_file_info(args: At, files: Files) -> dict[str, Any]:
    """Describe a path without opening it: type, size, modified time, permissions and link count."""
    return await audited(files, "get_file_info", args, lambda t: files.run(operations.file_info, files.sandbox, t))


@server.tool(scopes={"files:read"}, read_only=True)
async def list_directory(args: ListArgs, files: Files) -> dict[str, Any]:
    """List a directory (name, type, size), sorted by name, one page at a time (`offset`, `limit`)."""
    settings = files.settings
    limit = min(args.limit, settings.files_max_list_entries)

    def work(target: Target) -> Awaitable[Done]:
        scan = settings.files_max_directory_entries
        return files.run(operations.list_directory, files.sandbox, target, args.offset, limit, scan)

    return await audited(files, "list_directory", args, work)


@server.tool(scopes={"files:read"}, read_only=True)
async def search_files(args: SearchArgs, files: Files) -> dict[str, Any]:
    """Find paths under a directory matching a glob. Bounded by matches, entries visited and time; the
    answer says `truncated` when a bound stopped it."""
    settings = files.settings
    limit = min(args.limit, settings.files_max_search_results)
    visited, seconds = settings.files_max_search_visited, settings.files_search_seconds

    def work(target: Target) -> Awaitable[Done]:
        glob = Glob(args.pattern)
        return files.run(operations.search_files, files.sandbox, target, glob, limit, visited, seconds)

    return await audited(files, "search_files", args, work)


@server.tool(scopes={"files:write"}, read_only=False, destructive=True, idempotent=True)
async def write_file(args: WriteArgs, files: Files) -> dict[str, Any]:
    """Create or replace a text file atomically (a reader sees the old or the new content, never part).
    `if_exists: fail` never replaces. The parent directory must exist."""
    cap = files.settings.files_max_write_bytes

    def work(target: Target) -> Awaitable[Done]:
        def encode_and_write() -> Done:
            content = args.content.encode("utf-8")
            if len(content) > cap:
                raise CallerError(f"content is {len(content)} bytes; the write cap is {cap} bytes")
            return operations.write_file(files.sandbox, target, content, args.if_exists)

        return files.run(encode_and_write)

    return await audited(files, "write_file", args, work, write=True)


@server.tool(scopes={"files:write"}, read_only=False, destructive=True)
async def move_file(args: MoveArgs, files: Files) -> dict[str, Any]:
    """Move or rename a file within its root. An existing destination is replaced only with `overwrite`."""

    def work(source: Target) -> Awaitable[Done]:
        destination = files.sandbox.locate(args.root or source.root.name, args.destination)
        return files.run(operations.move_file, files.sandbox, source, destination, args.overwrite)

    return await audited(files, "move_file", args, work, write=True)


@server.tool(scopes={"files:write"}, read_only=False, idempotent=True)
async def create_directory(args: At, files: Files) -> dict[str, Any]:
    """Create a directory and any missing parents; an existing directory is not an error."""
    return await audited(
        files, "create_directory", args, lambda t: files.run(operations.create_directory, files.sandbox, t), write=True
    )


@server.tool(scopes={"files:write"}, read_only=False, destructive=True, idempotent=True)
async def delete_file(args: At, files: Files) -> dict[str, Any]:
    """Delete a file (not a directory). A link is removed itself; what it points to is never touched."""
    return await audited(
        files, "delete_file", args, lambda t: files.run(operations.delete_file, files.sandbox, t), write=True
    )
