"""Pin a server's tools, and hold code or a live server to the pin.

    python -m apps.kit.cli.pin lock apps.db                          # write apps/db/tools.lock.json from the code
    python -m apps.kit.cli.pin check apps.db                         # the code against its lock (CI)
    python -m apps.kit.cli.pin verify http://host/mcp --lock apps/db/tools.lock.json [--token T]

`verify` is for a gateway or CI in front of a running server: it recomputes every digest from the
definitions the server publishes (it never trusts the digests it is sent) and, with a token, from
what `tools/list` actually returns. Any drift prints a readable diff and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from apps.kit.declare.manifest import MANIFEST_PATH, drift, manifest, to_lock_text
from apps.kit.declare.server import load_server

ACCEPT = "python -m apps.kit.cli.pin lock {module}"


def lock_path(module: str) -> Path:
    return Path(*module.split(".")) / "tools.lock.json"


def report(what: str, lines: list[str], accept: str | None) -> int:
    if not lines:
        print(f"{what}: matches the pin")
        return 0
    print(f"{what}: tool definitions drifted from the pin:", file=sys.stderr)
    for line in lines:
        print(f"  {line}", file=sys.stderr)
    if accept:
        print(f"if the change is intended, accept it with: {accept}", file=sys.stderr)
    return 1


def live_manifest(url: str, token: str | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The server's published manifest, rebuilt from its definitions; and, with a token, from tools/list."""
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    published = httpx.get(base + MANIFEST_PATH, timeout=10).raise_for_status().json()
    rebuilt = manifest(published["server"], [tool["definition"] for tool in published["tools"].values()])
    listed = None
    if token:
        response = httpx.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "MCP-Protocol-Version": "2025-11-25",
            },
            timeout=10,
        ).raise_for_status()
        listed = manifest(published["server"], response.json()["result"]["tools"])
    return rebuilt, listed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apps.kit.cli.pin", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("lock", help="write the lock file from the code").add_argument("module")
    commands.add_parser("check", help="compare the code with its lock file").add_argument("module")
    verify = commands.add_parser("verify", help="compare a running server with a lock file")
    verify.add_argument("url", help="the server's /mcp URL")
    verify.add_argument("--lock", required=True, type=Path)
    verify.add_argument("--token", help="also check what tools/list returns for this token's scopes")
    args = parser.parse_args(argv)

    if args.command == "lock":
        path = lock_path(args.module)
        path.write_text(to_lock_text(load_server(args.module).manifest()))
        print(f"wrote {path}")
        return 0
    if args.command == "check":
        path = lock_path(args.module)
        locked = json.loads(path.read_text()) if path.exists() else {"tools": {}}
        current = load_server(args.module).manifest()
        return report(args.module, drift(locked, current), ACCEPT.format(module=args.module))
    locked = json.loads(args.lock.read_text())
    published, listed = live_manifest(args.url, args.token)
    # A server may offer fewer tools than it pins (read-only mode, or a token's scopes): that is reported,
    # not refused. A tool added or changed is drift.
    changes = drift(locked, published)
    for line in (line for line in changes if line.startswith("- tool")):
        print(f"{args.url}: not offered: {line[2:]}")
    lines = [f"manifest {line}" for line in changes if not line.startswith("- tool")]
    if listed is not None:
        lines += [f"tools/list {line}" for line in drift(locked, listed) if not line.startswith("- tool")]
    if published["sha256"] != locked["sha256"] and not changes:
        lines.append(f"server digest {locked['sha256']} -> {published['sha256']}")
    return report(args.url, lines, None)


if __name__ == "__main__":
    raise SystemExit(main())
