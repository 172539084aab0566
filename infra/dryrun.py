"""The dry run: every resource a stack declares, without a cloud account, a cluster or the Pulumi CLI.

    uv run python -m infra.dryrun --stack dev           # one line per resource: type, name, key properties
    uv run python -m infra.dryrun --stack serverless --json

It runs the Pulumi program under mocks (`infra.mocked`), so it covers every target alike: Kubernetes objects,
Helm releases, Cloud Run services, Lambda functions and their HTTP APIs. Secret values print as `[secret]`.
`infra.render` writes the Kubernetes objects themselves as YAML.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from infra.mocked import SECRET_SIGNATURE, collect, normalise

# The properties that say what a resource is, by name wherever they occur in its inputs (first found, depth first).
KEY_PROPERTIES = (
    "namespace",
    "image",
    "imageUri",
    "replicas",
    "chart",
    "version",
    "location",
    "region",
    "scaling",
    "reservedConcurrentExecutions",
    "snapStart",
    "memorySize",
    "routeKey",
    "protocolType",
    "role",
    "member",
    "ingressClassName",
    "dnsNames",
    "create",
)
MAX_VALUE = 90


def _find(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        if SECRET_SIGNATURE in value:
            return None
        if key in value:
            return value[key]
        for child in value.values():
            if (found := _find(child, key)) is not None:
                return found
    if isinstance(value, list):
        for child in value:
            if (found := _find(child, key)) is not None:
                return found
    return None


def _shown(value: Any) -> str:
    if isinstance(value, dict) and SECRET_SIGNATURE in value:
        return "[secret]"
    value = normalise(value, unwrap_secrets=False)
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def summary(resource: dict[str, Any]) -> dict[str, str]:
    """A resource's type, name and key properties (a Kubernetes object's kind and name come from its manifest)."""
    inputs = resource.get("inputs") or {}
    properties = {key: _shown(found) for key in KEY_PROPERTIES if (found := _find(inputs, key)) is not None}
    metadata = inputs.get("metadata")
    name = str((metadata.get("name") if isinstance(metadata, dict) else None) or resource["name"])
    return {"type": resource["type"], "name": name, **properties}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.dryrun", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="a stack file's name: Pulumi.<stack>.yaml")
    parser.add_argument("--json", action="store_true", help="one JSON object per resource")
    args = parser.parse_args(argv)
    declared = collect(args.stack)
    rows = [summary(resource) for resource in declared["resources"]]
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            rest = "  ".join(f"{k}={v}" for k, v in row.items() if k not in ("type", "name"))
            print(f"{row['type']:60s} {row['name']:40s} {rest}".rstrip())
    counts: dict[str, int] = {}
    for row in rows:
        provider = row["type"].split(":", 1)[0]
        counts[provider] = counts.get(provider, 0) + 1
    if not args.json:
        print(f"{len(rows)} resources: " + ", ".join(f"{n} {p}" for p, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
