"""The attack corpus for the file server: public failures of other file servers, as tool calls.

`build_tree(base)` lays out a volume: the root `data/` with traps inside it (links out, a link to its
parent, a hard link to an outside file, a FIFO, a device, denied files), and outside it `data_evil/`
(the string-prefix bug) and `outside/`, each holding `SECRET`. Every call in `ATTACKS` must come back
as a tool error without `SECRET`, and leave everything outside the root as it was. The same corpus runs
in-process (tests/local) and against the container (tests/integration); `{root}` is the root's
absolute path as the server sees it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECRET = "SECRET-outside-the-root-4f1c"
INSIDE = "inside the root"


@dataclass(frozen=True)
class Attack:
    name: str
    tool: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def resolved(self, root: str) -> dict[str, Any]:
        return {k: v.replace("{root}", root) if isinstance(v, str) else v for k, v in self.arguments.items()}


def build_tree(base: Path) -> dict[str, bool]:
    """Lay out the corpus's volume under `base`; say which optional traps this machine could make."""
    root, evil, outside = base / "data", base / "data_evil", base / "outside"
    for directory in (root / "sub", evil, outside):
        directory.mkdir(parents=True)
    (evil / "secret.txt").write_text(SECRET)
    (outside / "secret.txt").write_text(SECRET)
    (outside / "hard-target.txt").write_text(SECRET)
    (root / "ok.txt").write_text(INSIDE)
    (root / "sub" / "inner.txt").write_text(INSIDE)
    (root / ".env").write_text(f"TOKEN={SECRET}")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text(SECRET)
    (root / "server.pem").write_text(SECRET)
    (root / "sub" / "id_ed25519").write_text(SECRET)
    (root / "link-out").symlink_to("../outside")  # relative: the same trap on the host and in a container
    (root / "secret-link").symlink_to("../outside/secret.txt")
    (root / "sub" / "parent-link").symlink_to("..")
    (root / "root-parent").symlink_to("..")
    (root / "etc-link").symlink_to("/etc")
    os.link(outside / "hard-target.txt", root / "hard-link.txt")
    os.mkfifo(root / "fifo")
    made = {"device": False}
    with contextlib.suppress(OSError):  # needs CAP_MKNOD
        os.mknod(root / "device", 0o600 | 0o020000, os.makedev(1, 3))  # a character device (/dev/null)
        made["device"] = True
    return made


def outside_state(base: Path) -> dict[str, str]:
    """Every path outside the root, with a digest of each file: must not change under attack."""
    state = {}
    for top in (base / "data_evil", base / "outside"):
        for path in sorted(top.rglob("*")):
            state[str(path.relative_to(base))] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    return state


def _read(name: str, path: str) -> Attack:
    return Attack(name, "read_file", {"path": path})


ATTACKS = [
    # the string-prefix bug: /srv/data_evil passing for /srv/data
    _read("prefix sibling, absolute", "{root}_evil/secret.txt"),
    Attack("prefix sibling, list", "list_directory", {"path": "{root}_evil"}),
    # `..` out of the root, relative and absolute
    _read("dotdot relative", "../outside/secret.txt"),
    _read("dotdot after a directory", "sub/../../outside/secret.txt"),
    _read("dotdot deep", "./sub/./../../../../../../etc/passwd"),
    _read("absolute outside", "/etc/passwd"),
    _read("absolute with dotdot", "{root}/../outside/secret.txt"),
    _read("absolute with dotdot inside", "{root}/sub/../../outside/secret.txt"),
    Attack("dotdot listing", "list_directory", {"path": ".."}),
    Attack("dotdot search", "search_files", {"path": "..", "pattern": "*"}),
    Attack("search pattern with dotdot", "search_files", {"pattern": "../outside/*"}),
    # symbolic links inside the root pointing out (read and write), and to a parent
    _read("symlink to an outside file", "secret-link"),
    _read("through a symlinked directory", "link-out/secret.txt"),
    _read("through a link to /etc", "etc-link/passwd"),
    _read("through a link to the parent", "sub/parent-link/ok.txt"),
    _read("through a link to the root's parent", "root-parent/outside/secret.txt"),
    Attack("list through a link", "list_directory", {"path": "link-out"}),
    Attack("info through a link", "get_file_info", {"path": "link-out/secret.txt"}),
    Attack("search from a link", "search_files", {"path": "link-out", "pattern": "*"}),
    Attack("write through a symlinked directory", "write_file", {"path": "link-out/planted.txt", "content": "x"}),
    Attack("write over a link to an outside file", "write_file", {"path": "secret-link", "content": "x"}),
    Attack("mkdir through a link", "create_directory", {"path": "link-out/planted"}),
    Attack("move into a link", "move_file", {"source": "ok.txt", "destination": "link-out/moved.txt"}),
    Attack("move out with dotdot", "move_file", {"source": "ok.txt", "destination": "../outside/moved.txt"}),
    Attack("move in from outside", "move_file", {"source": "../outside/secret.txt", "destination": "stolen.txt"}),
    Attack("delete outside", "delete_file", {"path": "../outside/secret.txt"}),
    Attack("delete through a link", "delete_file", {"path": "link-out/secret.txt"}),
    # encodings that a decoding server would turn into `..` or `/`
    _read("URL-encoded dots", "%2e%2e/outside/secret.txt"),
    _read("URL-encoded slash", "..%2foutside%2fsecret.txt"),
    _read("double URL-encoded", "%252e%252e%252foutside%252fsecret.txt"),
    _read("division slash", "..\u2215outside\u2215secret.txt"),
    _read("fullwidth solidus", "..\uff0foutside\uff0fsecret.txt"),
    _read("fraction slash", "..\u2044outside\u2044secret.txt"),
    _read("one-dot leaders", "\u2024\u2024/outside/secret.txt"),
    _read("fullwidth dots", "\uff0e\uff0e/outside/secret.txt"),
    _read("backslashes", "..\\outside\\secret.txt"),
    _read("NUL byte", "ok.txt\x00/../../outside/secret.txt"),
    # a hard link inside the root to a file outside it
    _read("hard link read", "hard-link.txt"),
    Attack("hard link overwrite", "write_file", {"path": "hard-link.txt", "content": "x"}),
    # very long paths
    _read("path over PATH_MAX", "a/" * 2100 + "x"),
    _read("name over NAME_MAX", "n" * 300),
    _read("dotdot flood", "../" * 1500 + "etc/passwd"),
    # special files must not hang the server
    _read("FIFO", "fifo"),
    _read("device", "device"),
    # denied by policy
    _read("denied .env", ".env"),
    _read("denied .env, other case", ".ENV"),
    _read("denied .git", ".git/config"),
    _read("denied key", "server.pem"),
    _read("denied ssh key", "sub/id_ed25519"),
    _read("denied via dotdot", "sub/../.env"),
    Attack("denied overwrite", "write_file", {"path": ".env", "content": "x"}),
    Attack("denied listing", "list_directory", {"path": ".git"}),
]
