"""What a stack serves, for people and for registries: each server's `server.json` (the MCP registry's format) and
a catalogue of URLs, scopes and tools, derived from the servers' declarations and the stack, as deployed.

    python -m infra.catalogue --stack prod                 # the catalogue, for people
    python -m infra.catalogue --stack prod --out build/catalogue   # also each server's server.json

A `server.json` describes a remote server (`remotes`: its streamable HTTP URL, and the bearer token it takes
from the stack's issuer); what the registry format has no field for (the issuer, each tool's scopes and pinned
digest, the organisation's policies) is in `_meta` under the registry's publisher-provided key. The name is the
reverse of the resource URL's domain and the app's name (`https://db.mcp.example.com/mcp` -> `com.example.mcp/
mcp-db`), so two stacks' servers never share a name. Its description is the first sentence of the server's
instructions (the registry allows 100 characters; a longer one is refused here, naming the server).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from apps.kit import DIGEST_META, FocusedServer, resource_metadata_path
from infra import fleet
from infra.config import AppConfig, StackConfig, StackConfigError, load_stack

SCHEMA = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
PUBLISHER = "io.modelcontextprotocol.registry/publisher-provided"
DESCRIPTION_LIMIT = 100  # the registry's maxLength for `description`


def registry_name(name: str, app: AppConfig) -> str:
    """`<reverse-DNS of the resource URL's domain>/<app>`: the host's first label (the app's own) left out."""
    host = (urlsplit(str(app.resource_url)).hostname or "").lower()
    labels = host.split(".")
    domain = labels[1:] or labels  # db.mcp.example.com -> mcp.example.com; mcp-db.localhost -> localhost
    return ".".join(reversed(domain)) + "/" + name


def summary(name: str, server: FocusedServer[Any, Any]) -> str:
    """The first sentence of the server's instructions: what it does, for a person choosing it."""
    first = re.split(r"(?<=[.!?])\s", (server.instructions or "").strip(), maxsplit=1)[0]
    if not first:
        raise StackConfigError(f"{name}: its server declares no instructions to describe it by")
    if len(first) > DESCRIPTION_LIMIT:
        raise StackConfigError(
            f"{name}: the first sentence of its instructions has {len(first)} characters; the MCP registry's "
            f"description allows {DESCRIPTION_LIMIT}: {first!r}"
        )
    return first


def server_json(name: str, app: AppConfig, server: FocusedServer[Any, Any], stack: StackConfig) -> dict[str, Any]:
    """One server as the MCP registry describes a remote server, with the stack's facts in `_meta`."""
    url = str(app.resource_url)
    offered = server.offered(fleet.app_settings(name, app, server))  # as deployed: read-only mode, `offers`
    scopes = sorted({scope for spec in offered.values() for scope in spec.scopes})
    tools = [
        {
            "name": spec.name,
            "scopes": sorted(spec.scopes),
            "readOnly": bool(spec.definition["annotations"].get("readOnlyHint")),
            "sha256": spec.definition["_meta"][DIGEST_META],
        }
        for spec in sorted(offered.values(), key=lambda spec: spec.name)
    ]
    policies = sorted(fleet.policy_files(stack, name))
    return {
        "$schema": SCHEMA,
        "name": registry_name(name, app),
        "title": name,
        "description": summary(name, server),
        "version": server.version,
        "remotes": [
            {
                "type": "streamable-http",
                "url": url,
                "headers": [
                    {
                        "name": "Authorization",
                        "description": f"Bearer token from {stack.issuer} for {url}, with the scopes its tools need",
                        "isRequired": True,
                        "isSecret": True,
                    }
                ],
            }
        ],
        "_meta": {
            PUBLISHER: {
                "dev.mcpfleet/deployment": {
                    "issuer": stack.issuer,
                    "resourceMetadata": urljoin(url, resource_metadata_path(url)),
                    "scopes": scopes,
                    "tools": tools,
                    "policies": policies,
                }
            }
        },
    }


def catalogue(stack: StackConfig) -> dict[str, dict[str, Any]]:
    """Every app of the stack (on the cluster and serverless), by name: its `server.json`."""
    return {
        name: server_json(name, app, fleet.load_server(app.module), stack) for name, app in sorted(stack.apps.items())
    }


def for_people(entries: dict[str, dict[str, Any]]) -> str:
    """The catalogue as Markdown: a section per server with its URL, scopes and tools."""
    lines = ["# MCP servers", ""]
    for name, entry in entries.items():
        deployment = entry["_meta"][PUBLISHER]["dev.mcpfleet/deployment"]
        lines += [
            f"## {name}",
            "",
            entry["description"],
            "",
            f"- URL: {entry['remotes'][0]['url']} (streamable HTTP; tokens from {deployment['issuer']})",
            f"- Scopes: {', '.join(deployment['scopes'])}",
            f"- Organisation policies: {', '.join(deployment['policies']) or 'none (scopes only)'}",
            "",
            "| tool | scopes | reads only |",
            "| --- | --- | --- |",
            *(
                f"| {tool['name']} | {', '.join(tool['scopes'])} | {'yes' if tool['readOnly'] else 'no'} |"
                for tool in deployment["tools"]
            ),
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.catalogue", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="the stack (Pulumi.<stack>.yaml)")
    parser.add_argument("--out", type=Path, help="also write <out>/<app>/server.json and <out>/README.md")
    args = parser.parse_args(argv)
    try:
        entries = catalogue(load_stack(args.stack))
    except StackConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = for_people(entries)
    if args.out is not None:
        for name, entry in entries.items():
            (args.out / name).mkdir(parents=True, exist_ok=True)
            (args.out / name / "server.json").write_text(json.dumps(entry, indent=2) + "\n")
        (args.out / "README.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
