"""Tool-manifest pinning: what a server's tools are, as digests a gateway or CI can hold it to.

A lookalike tool silently replacing a trusted one is a named MCP threat, and scanners that hash only
descriptions miss a changed schema or a flipped `readOnlyHint`. Each tool's digest is the SHA-256 of
the RFC 8785 canonical JSON of everything a client is told about it and everything that decides who
may call it: `name`, `description`, `inputSchema`, `outputSchema`, `annotations` and the scopes it
requires (published in its `_meta` as `io.mcpfleet/scopes`). The server digest covers every tool. Servers publish
each digest in the tool's `_meta` and the whole manifest at `MANIFEST_PATH`; each app folder keeps a
lock file that a test, and `python -m apps.kit.cli.pin`, compare with.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import rfc8785

PINNED_FIELDS = ("name", "description", "inputSchema", "outputSchema", "annotations")
DIGEST_META = "io.mcpfleet/sha256"
SCOPES_META = "io.mcpfleet/scopes"  # the scopes a tool requires: part of what is pinned
MANIFEST_PATH = "/.well-known/mcp-tools.json"


def pinned_part(definition: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a tool definition that the digest covers, and its scopes (from `_meta`, or already
    pinned); never the rest of `_meta`, which carries the digest. A copy, so nothing done to a manifest can
    reach the definitions a server serves."""
    part = copy.deepcopy({key: definition[key] for key in PINNED_FIELDS if key in definition})
    scopes = definition.get("scopes", (definition.get("_meta") or {}).get(SCOPES_META))
    if scopes is not None:
        part["scopes"] = sorted(scopes)
    return part


def tool_digest(definition: Mapping[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(rfc8785.dumps(pinned_part(definition))).hexdigest()


def manifest(server: str, definitions: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The whole server: each tool's digest and definition, and one digest over all the tools' digests."""
    tools = {d["name"]: {"sha256": tool_digest(d), "definition": pinned_part(d)} for d in definitions}
    digests: dict[str, Any] = {name: tool["sha256"] for name, tool in sorted(tools.items())}
    return {
        "server": server,
        "sha256": "sha256:" + hashlib.sha256(rfc8785.dumps(digests)).hexdigest(),
        "tools": dict(sorted(tools.items())),
    }


def drift(locked: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Readable differences between a lock and a manifest: tools added and removed, and each changed value by
    its path, one line each (`tools.query.inputSchema.properties.limit.maximum: 1000 -> 100000`)."""
    lines: list[str] = []
    old, new = locked.get("tools", {}), current.get("tools", {})
    for name in sorted(set(old) - set(new)):
        lines.append(f"- tool {name!r} removed")
    for name in sorted(set(new) - set(old)):
        lines.append(f"+ tool {name!r} added ({new[name]['sha256']})")
    for name in sorted(set(old) & set(new)):
        if old[name]["sha256"] == new[name]["sha256"] and old[name].get("definition") == new[name].get("definition"):
            continue
        lines.append(f"~ tool {name!r}: {old[name]['sha256']} -> {new[name]['sha256']}")
        changes = _changed(f"tools.{name}", old[name].get("definition", {}), new[name].get("definition", {}))
        lines += [f"    {path}: {_short(before)} -> {_short(after)}" for path, before, after in changes]
    return lines


_ABSENT = object()


def _changed(path: str, before: Any, after: Any) -> list[tuple[str, Any, Any]]:
    """Every leaf that differs, by dotted path (list items by index)."""
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for key in sorted(set(before) | set(after), key=str):
            found += _changed(f"{path}.{key}", before.get(key, _ABSENT), after.get(key, _ABSENT))
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [
            change
            for i, pair in enumerate(zip(before, after, strict=True))
            for change in _changed(f"{path}[{i}]", *pair)
        ]
    return [] if before == after else [(path, before, after)]


def _short(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 200 else text[:200] + "..."


def to_lock_text(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
