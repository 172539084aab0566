"""A caller's path string, checked before any file system call: which root, and which names under it.

Nothing here touches the disk. `..` is resolved on the names (never handed to the kernel), and a `..`
that would leave the root is refused; nothing is decoded or normalised (`%2e%2e`, a division slash and
full-width slashes are names like any other); names the kernel would refuse (NUL, over NAME_MAX) and
paths over PATH_MAX are refused with a clear error before any system call.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from apps.kit import CallerError

PATH_MAX = 4096  # bytes, including the terminating NUL on Linux
NAME_MAX = 255  # bytes per name
MAX_PATH_CHARS = PATH_MAX  # what a tool argument may carry before it is even parsed
_CONTROL = frozenset(chr(c) for c in (*range(0x20), 0x7F))


class PathRefused(CallerError):
    """The path cannot name anything this server serves."""


@dataclass(frozen=True)
class RelPath:
    """Names under a root, `..` already resolved: what every operation walks, one name at a time."""

    parts: tuple[str, ...]

    @property
    def text(self) -> str:
        """The canonical relative path: what audit events, answers and deny patterns see."""
        return "/".join(self.parts) or "."

    @property
    def parent(self) -> RelPath:
        return RelPath(self.parts[:-1])

    @property
    def name(self) -> str:
        return self.parts[-1] if self.parts else "."

    def child(self, name: str) -> RelPath:
        return RelPath((*self.parts, name))


def check_name(name: str) -> None:
    if "\x00" in name:
        raise PathRefused("path contains a NUL byte")
    if any(ch in _CONTROL for ch in name):
        raise PathRefused("path contains a control character")
    if "\\" in name:
        raise PathRefused("path contains a backslash; the separator is '/'")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise PathRefused("path is not valid UTF-8") from None
    if size > NAME_MAX:
        raise PathRefused(f"a name in the path is {size} bytes; the limit is {NAME_MAX}")


def split(path: str) -> tuple[bool, tuple[str, ...]]:
    """Whether the path is absolute, and its names with `.` dropped and `..` applied."""
    if len(path) > MAX_PATH_CHARS or len(path.encode("utf-8", "surrogatepass")) >= PATH_MAX:
        raise PathRefused(f"path is longer than PATH_MAX ({PATH_MAX} bytes)")
    names: list[str] = []
    for name in path.split("/"):
        if name in ("", "."):
            continue
        check_name(name)
        if name == "..":
            if not names:
                raise PathRefused("path leaves its root ('..' above the top)")
            names.pop()
            continue
        names.append(name)
    return path.startswith("/"), tuple(names)


def under(prefix: tuple[str, ...], names: tuple[str, ...]) -> bool:
    """Name by name, never by string: `/srv/data_evil` is not under `/srv/data`."""
    return names[: len(prefix)] == prefix


class DenyList:
    """Paths never served, matched on the canonical relative path, case-insensitively.

    A pattern without `/` (`.env*`, `*.pem`, `id_*`) matches any name at any depth, so a matching
    directory hides everything under it; a trailing `/` (`.git/`) says the same of a directory.
    A pattern with an inner `/` (`config/secrets.yaml`) matches that path from the root, and
    everything under it.
    """

    def __init__(self, patterns: Iterable[str]):
        self.patterns = tuple(patterns)
        self._any_name: list[str] = []
        self._from_root: list[tuple[str, ...]] = []
        for pattern in self.patterns:
            body = pattern.strip().strip("/").casefold()
            if not body:
                continue
            if "/" in body:
                self._from_root.append(tuple(body.split("/")))
            else:
                self._any_name.append(body)

    def denied(self, path: RelPath) -> str | None:
        """The pattern that denies this path, if any."""
        names = [name.casefold() for name in path.parts]
        for pattern in self._any_name:
            if any(fnmatch.fnmatchcase(name, pattern) for name in names):
                return pattern
        for parts in self._from_root:
            if len(names) >= len(parts) and all(
                fnmatch.fnmatchcase(name, part) for name, part in zip(names, parts, strict=False)
            ):
                return "/".join(parts)
        return None
