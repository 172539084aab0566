"""The file server's path rules, before any file system call: splitting, deny patterns, globs, settings."""

from __future__ import annotations

import pytest

from apps.files.config import FilesSettings
from apps.files.glob import Glob
from apps.files.paths import DenyList, PathRefused, RelPath, split


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a/b.txt", (False, ("a", "b.txt"))),
        ("./a//b/./c", (False, ("a", "b", "c"))),
        ("a/b/../c", (False, ("a", "c"))),
        ("", (False, ())),
        (".", (False, ())),
        ("/srv/files/data/x", (True, ("srv", "files", "data", "x"))),
        ("%2e%2e/x", (False, ("%2e%2e", "x"))),  # never decoded
        ("..\u2215x", (False, ("..\u2215x",))),  # a look-alike slash is a character of the name
        ("a/\u2024\u2024/b", (False, ("a", "\u2024\u2024", "b"))),
    ],
)
def test_paths_split_into_names_without_decoding(path, expected):
    assert split(path) == expected


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("..", "leaves its root"),
        ("a/../../b", "leaves its root"),
        ("/..", "leaves its root"),
        ("a\x00b", "NUL"),
        ("a/b\nc", "control character"),
        ("..\\x", "backslash"),
        ("a" * 256, "255"),
        ("é" * 128, "255"),  # 256 bytes in UTF-8
        ("a/" * 2048, "PATH_MAX"),
        ("a\ud800", "UTF-8"),
    ],
)
def test_paths_the_kernel_would_refuse_or_that_leave_the_root_are_refused(path, message):
    with pytest.raises(PathRefused, match=message):
        split(path)


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        (".env", ".env*"),
        ("app/.env.local", ".env*"),
        (".ENV", ".env*"),  # case-insensitive: a case-insensitive volume would serve it
        (".git/config", ".git"),
        ("vendor/.git/HEAD", ".git"),
        ("certs/tls.pem", "*.pem"),
        ("tls.KEY", "*.key"),
        ("home/.ssh/id_rsa", "id_*"),
        ("secrets.pem/readme", "*.pem"),  # a matching directory hides what is under it
        ("config/prod/secrets.yaml", "config/*/secrets.yaml"),
    ],
)
def test_deny_patterns_match_any_depth_case_insensitively(path, pattern):
    deny = DenyList([".git/", ".env*", "*.pem", "*.key", "id_*", "config/*/secrets.yaml"])
    assert deny.denied(RelPath(tuple(path.split("/")))) == pattern


@pytest.mark.parametrize("path", ["readme.md", "environment.txt", "src/keys.py", "pem/notes", "docs/git/x"])
def test_deny_patterns_leave_ordinary_paths_alone(path):
    deny = DenyList([".git/", ".env*", "*.pem", "*.key", "id_*", "config/*/secrets.yaml"])
    assert deny.denied(RelPath(tuple(path.split("/")))) is None


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.md", "a.md", True),
        ("*.md", "docs/deep/a.md", True),  # no '/': a name at any depth
        ("docs/*.md", "docs/a.md", True),
        ("docs/*.md", "docs/deep/a.md", False),  # '*' stays within a name
        ("docs/**/*.md", "docs/a.md", True),  # '**' is zero or more names
        ("docs/**/*.md", "docs/x/y/a.md", True),
        ("**", "any/thing", True),
        ("?.txt", "ab.txt", False),
        ("[ab].txt", "b.txt", True),
    ],
)
def test_globs(pattern, path, matches):
    assert Glob(pattern).matches(tuple(path.split("/"))) is matches


def test_a_hostile_glob_costs_at_most_parts_times_names():
    """Many `*` and `**` cannot backtrack: the match is a table of parts by names (here 30 by 64)."""
    glob = Glob("/".join(["**", "*a*a*a*a*b"] * 15)[:256])
    names = tuple("a" * 200 for _ in range(64))
    assert glob.matches(names) is False


@pytest.mark.parametrize("pattern", ["", "x" * 257, "../*", "a\x00"])
def test_bad_globs_are_refused(pattern):
    with pytest.raises(PathRefused):
        Glob(pattern)


def test_roots_settings_shorthand_global_switch_and_body_cap(make_settings):
    settings = make_settings(FilesSettings, FILES_ROOTS='{"docs": "ro", "scratch": "rw"}')
    assert {name: root.mode for name, root in settings.files_roots.items()} == {"docs": "ro", "scratch": "rw"}
    assert not settings.read_only
    assert settings.mcp_max_body_bytes >= settings.files_max_write_bytes  # a full write fits in one body
    assert make_settings(FilesSettings, FILES_ROOTS='{"docs": "ro"}').read_only  # no rw root: nothing writes
    assert make_settings(FilesSettings, FILES_READ_ONLY="true").read_only
    assert make_settings(FilesSettings, FILES_DENY="*.secret, private/").files_deny == ["*.secret", "private/"]
