"""What each tool does on disk, as blocking calls run on the server's worker threads.

Every function starts from a `Target` (a root and names already checked) and reaches the file through
`Sandbox` descriptors; none opens a path string. Each returns what the tool answers plus what its
audit event records (`Done`).
"""

from __future__ import annotations

import codecs
import hashlib
import mimetypes
import os
import secrets
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from apps.files.glob import Glob
from apps.files.paths import RelPath
from apps.files.sandbox import Sandbox, Target, fs_error, kind, require_regular
from apps.kit import CallerError

SNIFF_BYTES = 8192
MAX_SEARCH_DEPTH = 64
WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# The few formats worth naming when a file is binary; the extension is the fallback.
MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"\x7fELF", "application/x-executable"),
)


@dataclass
class Done:
    """A tool's answer, and what its audit event records beyond the target."""

    answer: dict[str, Any]
    bytes: int = 0
    sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def describe(info: os.stat_result) -> dict[str, Any]:
    return {
        "type": kind(info.st_mode),
        "size": info.st_size,
        "modified": iso(info.st_mtime),
        "permissions": oct(stat.S_IMODE(info.st_mode)),
        "links": info.st_nlink,
    }


def media_type(name: str, head: bytes) -> str:
    for magic, media in MAGIC:
        if head.startswith(magic):
            return media
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def printable_name(name: str) -> bool:
    """Names that are not valid UTF-8 (kept by Python as surrogates) cannot travel in JSON; they are skipped."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- reading ----------------------------------------------------------------------------------------------
def read_file(sandbox: Sandbox, target: Target, offset: int, length: int) -> Done:
    """UTF-8 text from `offset`, at most `length` bytes, cut on a character boundary; binary is described."""
    where = target.path.text
    with sandbox.parent(target) as dir_fd, sandbox.regular_file(dir_fd, target) as (fd, info):
        size = info.st_size
        if offset > size:
            raise CallerError(f"{where}: offset {offset} is past the end of the file ({size} bytes)")
        head = os.pread(fd, SNIFF_BYTES, 0)
        data = os.pread(fd, length, offset)
    base = {"root": target.root.name, "path": where, "size": size}
    skip = 0  # an offset inside a character starts at the next one
    while offset > 0 and skip < min(3, len(data)) and data[skip] & 0xC0 == 0x80:
        skip += 1
    end_of_file = offset + len(data) >= size
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        if b"\x00" in head:
            raise UnicodeDecodeError("utf-8", head, 0, 1, "NUL byte")
        text = decoder.decode(data[skip:], final=end_of_file)
    except UnicodeDecodeError:
        binary = {**base, "binary": True, "media_type": media_type(target.path.name, head)}
        return Done(binary, extra={"binary": True})
    pending = len(decoder.getstate()[0])
    consumed = len(data) - skip - pending
    if consumed == 0 and not end_of_file:
        raise CallerError(f"{where}: length {length} does not hold one whole character; ask for at least 4 bytes")
    start = offset + skip
    next_offset = start + consumed
    answer = {**base, "binary": False, "offset": start, "bytes": consumed, "text": text}
    answer["truncated"] = next_offset < size
    if answer["truncated"]:
        answer["next_offset"] = next_offset
    return Done(answer, bytes=consumed)


def file_info(sandbox: Sandbox, target: Target) -> Done:
    if not target.path.parts:
        info = os.fstat(target.root.fd)
    else:
        with sandbox.parent(target) as dir_fd:
            found = sandbox.entry(dir_fd, target)
        if found is None:
            raise CallerError(f"{target.path.text}: not found")
        info = found
    return Done({"root": target.root.name, "path": target.path.text, **describe(info)})


def list_directory(sandbox: Sandbox, target: Target, offset: int, limit: int, max_entries: int) -> Done:
    """One page of a directory, sorted by name; denied names never appear. Reads at most `max_entries`."""
    names: list[str] = []
    complete, skipped = True, 0
    with sandbox.directory(target.root, target.path) as fd:
        with os.scandir(fd) as entries:
            for entry in entries:
                if len(names) >= max_entries:
                    complete = False
                    break
                if not printable_name(entry.name):
                    skipped += 1
                elif sandbox.deny.denied(target.path.child(entry.name)) is None:
                    names.append(entry.name)
        names.sort()
        page = []
        for name in names[offset : offset + limit]:
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed since it was listed
            page.append({"name": name, **{k: v for k, v in describe(info).items() if k in ("type", "size")}})
    answer: dict[str, Any] = {
        "root": target.root.name,
        "path": target.path.text,
        "entries": page,
        "offset": offset,
        "total": len(names),
    }
    if offset + limit < len(names):
        answer["next_offset"] = offset + limit
    answer["truncated"] = not complete or "next_offset" in answer
    if not complete:
        answer["note"] = f"the directory has more than {max_entries} entries; this listing covers the first read"
    if skipped:
        answer["skipped_names"] = skipped  # not valid UTF-8
    return Done(answer, extra={"entries": len(page)})


def search_files(sandbox: Sandbox, target: Target, glob: Glob, limit: int, max_visited: int, seconds: float) -> Done:
    """Depth-first from the target, never into links or denied directories, within four budgets: `limit`
    matches, `max_visited` entries read, `seconds`, and `MAX_SEARCH_DEPTH` levels. Directories are read
    an entry at a time, so the budgets apply while reading, not after. Any budget spent says `truncated`."""
    deadline = time.monotonic() + seconds
    matches: list[str] = []
    visited = 0
    stopped: str | None = None
    too_deep = 0  # directories not entered because they are deeper than MAX_SEARCH_DEPTH
    with sandbox.directory(target.root, target.path) as top:
        first = os.dup(top)
        stack: list[tuple[int, tuple[str, ...], Iterator[os.DirEntry[str]]]] = [(first, (), os.scandir(first))]
        try:
            while stack and stopped is None:
                fd, below, entries = stack[-1]
                entry = next(entries, None)
                if entry is None:
                    entries.close()  # type: ignore[attr-defined]
                    os.close(fd)
                    stack.pop()
                    continue
                visited += 1
                if visited > max_visited:
                    stopped = f"looked at {max_visited} entries"
                elif time.monotonic() > deadline:
                    stopped = f"ran for {seconds:g} s"
                if stopped or not printable_name(entry.name):
                    continue
                names = (*below, entry.name)
                if sandbox.deny.denied(RelPath((*target.path.parts, *names))) is not None:
                    continue
                if glob.matches(names):
                    matches.append("/".join(names))
                    if len(matches) >= limit:
                        stopped = f"found {limit} matches"
                if stopped or not entry.is_dir(follow_symlinks=False):
                    continue
                if len(stack) >= MAX_SEARCH_DEPTH:
                    too_deep += 1
                    continue
                try:
                    child = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except OSError:
                    continue  # gone, swapped for a link, or unreadable: not searched
                stack.append((child, names, os.scandir(child)))
        finally:
            for fd, _, entries in stack:
                entries.close()  # type: ignore[attr-defined]
                os.close(fd)
    answer: dict[str, Any] = {
        "root": target.root.name,
        "path": target.path.text,
        "pattern": "/".join(glob.parts),
        "matches": sorted(matches),
        "truncated": stopped is not None or too_deep > 0,
    }
    notes = [f"stopped early: {stopped}"] if stopped else []
    if too_deep:
        notes.append(f"{too_deep} directories deeper than {MAX_SEARCH_DEPTH} levels were not searched")
    if notes:
        answer["note"] = "; ".join(notes)
    return Done(answer, extra={"matches": len(matches), "visited": min(visited, max_visited)})


# --- writing ----------------------------------------------------------------------------------------------
def write_file(sandbox: Sandbox, target: Target, content: bytes, if_exists: Literal["replace", "fail"]) -> Done:
    """Write a new file beside the target, flush it, then rename it over the target: a reader sees the
    old content or the new, never part; a link at the target's name is refused, and rename replaces a
    name, so nothing is ever written through a link."""
    where = target.path.text
    with sandbox.parent(target) as dir_fd:
        existing = sandbox.entry(dir_fd, target)
        if existing is not None:
            if stat.S_ISDIR(existing.st_mode):
                raise CallerError(f"{where}: is a directory")
            require_regular(existing, where)
            if if_exists == "fail":
                raise CallerError(f"{where}: already exists (if_exists is 'fail')")
        # The replaced file's permission bits only: never its setuid, setgid or sticky bit.
        mode = stat.S_IMODE(existing.st_mode) & 0o777 if existing is not None else 0o644
        temporary = f".mcpfleet-{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(temporary, WRITE_FLAGS, mode, dir_fd=dir_fd)
        except OSError as error:
            raise fs_error(error, where) from None
        try:
            try:
                os.fchmod(fd, mode)
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if existing is None or if_exists == "fail":
                # link() never replaces: a file created meanwhile by someone else is not overwritten
                os.link(temporary, target.path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
                os.unlink(temporary, dir_fd=dir_fd)
            else:
                os.replace(temporary, target.path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.fsync(dir_fd)
        except OSError as error:
            _remove_quietly(temporary, dir_fd)
            raise fs_error(error, where) from None
        except BaseException:
            _remove_quietly(temporary, dir_fd)
            raise
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    answer = {"root": target.root.name, "path": where, "bytes": len(content), "sha256": digest}
    return Done({**answer, "created": existing is None}, bytes=len(content), sha256=digest)


def move_file(sandbox: Sandbox, source: Target, destination: Target, overwrite: bool) -> Done:
    """Rename a file within one root; without `overwrite`, an existing destination is never replaced."""
    if source.root is not destination.root:
        raise CallerError("source and destination must be in the same root")
    if source.path == destination.path:
        raise CallerError(f"{source.path.text}: source and destination are the same")
    with sandbox.parent(source) as from_fd, sandbox.parent(destination) as to_fd:
        found = sandbox.entry(from_fd, source)
        if found is None:
            raise CallerError(f"{source.path.text}: not found")
        if stat.S_ISDIR(found.st_mode):
            raise CallerError(f"{source.path.text}: is a directory; move_file moves files")
        require_regular(found, source.path.text)
        existing = sandbox.entry(to_fd, destination)
        if existing is not None:
            if not overwrite:
                raise CallerError(f"{destination.path.text}: already exists (overwrite is false)")
            if stat.S_ISDIR(existing.st_mode):
                raise CallerError(f"{destination.path.text}: is a directory")
            require_regular(existing, destination.path.text)
        src, dst = source.path.name, destination.path.name
        try:
            if overwrite:
                os.rename(src, dst, src_dir_fd=from_fd, dst_dir_fd=to_fd)
            else:
                os.link(src, dst, src_dir_fd=from_fd, dst_dir_fd=to_fd, follow_symlinks=False)
                os.unlink(src, dir_fd=from_fd)
            os.fsync(to_fd)
            os.fsync(from_fd)
        except OSError as error:
            raise fs_error(error, f"{source.path.text} -> {destination.path.text}") from None
    answer = {"root": source.root.name, "from": source.path.text, "to": destination.path.text}
    return Done({**answer, "replaced": existing is not None}, bytes=found.st_size, extra={"to": destination.path.text})


def create_directory(sandbox: Sandbox, target: Target) -> Done:
    """Create the directory and any missing parents, one name at a time, never through a link."""
    created: list[str] = []
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=target.root.fd)
    try:
        for depth, name in enumerate(target.path.parts):
            where = RelPath(target.path.parts[: depth + 1]).text
            try:
                os.mkdir(name, 0o755, dir_fd=fd)
                created.append(where)
            except FileExistsError:
                pass
            except OSError as error:
                raise fs_error(error, where) from None
            try:
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as error:
                raise fs_error(error, where) from None
            os.close(fd)
            fd = child
        os.fsync(fd)
    finally:
        os.close(fd)
    answer = {"root": target.root.name, "path": target.path.text, "created": created}
    return Done(answer, extra={"created": len(created)})


def delete_file(sandbox: Sandbox, target: Target) -> Done:
    """Remove one name that is not a directory (a link is removed, never what it points to)."""
    where = target.path.text
    with sandbox.parent(target) as dir_fd:
        found = sandbox.entry(dir_fd, target)
        if found is None:
            raise CallerError(f"{where}: not found")
        if stat.S_ISDIR(found.st_mode):
            raise CallerError(f"{where}: is a directory; delete_file removes files")
        try:
            os.unlink(target.path.name, dir_fd=dir_fd)
            os.fsync(dir_fd)
        except OSError as error:
            raise fs_error(error, where) from None
    answer = {"root": target.root.name, "path": where, "deleted": kind(found.st_mode)}
    return Done(answer, bytes=found.st_size)


def _remove_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass
