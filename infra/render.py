"""Write every Kubernetes object the program declares, as YAML, from a mocked run.

    python -m infra.render --stack dev --out build/dev

For review, `kubectl diff -f build/dev` against a live cluster, and GitOps users. Secrets are
rendered with placeholder values (the mocks' stand-ins), never real ones.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from infra.mocked import collect, kubernetes_objects


def file_name(index: int, manifest: dict[str, object]) -> str:
    metadata = manifest.get("metadata") or {}
    assert isinstance(metadata, dict)
    namespace = metadata.get("namespace", "cluster")
    return f"{index:03d}-{str(manifest['kind']).lower()}-{namespace}-{metadata.get('name')}.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    objects = kubernetes_objects(collect(args.stack)["resources"])
    for index, manifest in enumerate(objects):
        (args.out / file_name(index, manifest)).write_text(yaml.safe_dump(manifest, sort_keys=False))
    print(f"wrote {len(objects)} objects to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
