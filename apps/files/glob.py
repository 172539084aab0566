"""Search patterns: `*` and `?` within a name, `[abc]` classes, `**` across names.

A pattern without `/` matches a name at any depth (`*.md`); one with `/` matches the path from the
directory searched (`docs/**/*.md`). Matching is a table over (pattern part, name), so its cost is
bounded by their product whatever the pattern, and each name is at most NAME_MAX bytes.
"""

from __future__ import annotations

import fnmatch

from apps.files.paths import PathRefused

MAX_PATTERN_CHARS = 256
MAX_PATTERN_PARTS = 32


class Glob:
    def __init__(self, pattern: str):
        if not pattern or len(pattern) > MAX_PATTERN_CHARS:
            raise PathRefused(f"pattern must be 1 to {MAX_PATTERN_CHARS} characters")
        if "\x00" in pattern:
            raise PathRefused("pattern contains a NUL byte")
        parts = [part for part in pattern.strip("/").split("/") if part not in ("", ".")]
        if any(part == ".." for part in parts):
            raise PathRefused("pattern may not contain '..'")
        if len(parts) > MAX_PATTERN_PARTS:
            raise PathRefused(f"pattern has more than {MAX_PATTERN_PARTS} parts")
        if len(parts) == 1 and parts[0] != "**":
            parts = ["**", parts[0]]  # a bare name pattern: at any depth
        collapsed: list[str] = []
        for part in parts:
            if not (part == "**" and collapsed and collapsed[-1] == "**"):
                collapsed.append(part)
        self.parts = tuple(collapsed)

    def matches(self, names: tuple[str, ...]) -> bool:
        """Whether the names (relative to the searched directory) match, by dynamic programming."""
        parts = self.parts
        # reach[j]: the first i parts can match the first j names
        reach = [True] + [False] * len(names)
        for part in parts:
            if part == "**":
                seen = False
                for j in range(len(names) + 1):  # `**` matches zero or more names
                    seen = seen or reach[j]
                    reach[j] = seen
            else:
                reach = [False] + [reach[j] and fnmatch.fnmatchcase(names[j], part) for j in range(len(names))]
        return reach[len(names)]
