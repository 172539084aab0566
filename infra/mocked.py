"""Run the Pulumi program in-process under `pulumi.runtime.set_mocks` and collect every resource.

No CLI, no cluster: each registered resource's type, name and inputs are recorded through the
mock monitor, so tests and `infra.render` see every object the program declares. One stack
per process (the Pulumi runtime is process-global):

    python -m infra.mocked --stack dev      # JSON on stdout
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from infra.config import stack_config

FAKE_KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n"

# Secrets that `pulumi config set --secret` would provide; stand-ins so the program runs under mocks.
MOCK_SECRETS = {
    "prod": {
        "postgresAdminUrl": "postgresql://admin:mock-admin-password@db.internal:5432/mcpfleet",
        "grafanaAdminPassword": "mock-grafana-password",
        "mcp-notify.signingKey": "mock-signing-key-0123456789abcdef0123456789",
        "mcp-notify.targetSecrets": '{"team-chat": {"url": "https://hooks.slack.com/services/T0/B0/mock"}}',
        "mcp-notify.smtpPassword": "mock-smtp-password",
        "auditExportCredential": "Splunk mock-siem-token",
    },
    "serverless": {
        "postgresAdminUrl": "postgresql://admin:mock-admin-password@db.internal:5432/mcpfleet",
        "grafanaAdminPassword": "mock-grafana-password",
        "mcp-notify.signingKey": "mock-signing-key-0123456789abcdef0123456789",
        "serverlessRedisUrl": "rediss://:mock-redis-password@redis.internal:6379/0",
    },
}


def collect(stack: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the program for `stack`; returns {"resources": [...], "outputs": {...}}."""
    import pulumi
    from pulumi.runtime import mocks

    values = stack_config(stack)
    secret_values = {f"mcpfleet:{k}": v for k, v in MOCK_SECRETS.get(stack, {}).items()}
    values |= secret_values
    values |= overrides or {}
    pulumi.runtime.set_all_config(
        {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()},
        list(secret_values),
    )

    recorded: list[dict[str, Any]] = []

    class Recorder(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            recorded.append({"type": args.typ, "name": args.name, "inputs": args.inputs, "custom": args.custom})
            outputs = dict(args.inputs)
            if args.typ == "random:index/randomPassword:RandomPassword":
                outputs["result"] = f"mock-{args.name}-{'x' * 24}"
            if args.typ == "tls:index/privateKey:PrivateKey":  # a key's PEM, as the provider computes it
                pem = f"-----BEGIN PRIVATE KEY-----\nmock-{args.name}\n-----END PRIVATE KEY-----\n"
                outputs |= {"privateKeyPem": pem, "privateKeyPemPkcs8": pem, "publicKeyPem": pem}
            if args.typ == "command:local:Command":  # a copy prints the digest it made; kind, its kubeconfig
                copying = "crane digest" in str(args.inputs.get("create", ""))
                outputs["stdout"] = f"sha256:{'0' * 64}\n" if copying else FAKE_KUBECONFIG
            if args.typ == "aws:ecr/repository:Repository":  # the URL ECR gives it: account, region, name
                region, repository = args.inputs["region"], args.inputs["name"]
                outputs["repositoryUrl"] = f"123456789012.dkr.ecr.{region}.amazonaws.com/{repository}"
            if args.typ == "gcp:serviceaccount/account:Account":  # the address GCP gives an account
                outputs["email"] = f"{args.inputs['accountId']}@{args.inputs['project']}.iam.gserviceaccount.com"
            if args.typ == "aws:lambda/function:Function":  # what publishing gives: the first version
                outputs["version"] = "1"
            if args.typ == "aws:lambda/alias:Alias":
                region, function, alias = (args.inputs[key] for key in ("region", "functionName", "name"))
                qualified = f"arn:aws:lambda:{region}:123456789012:function:{function}:{alias}"
                functions = f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions"
                outputs["invokeArn"] = f"{functions}/{qualified}/invocations"
            return f"{args.name}-id", outputs

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
            return {}, None

    pulumi.runtime.set_mocks(Recorder(), project="mcpfleet", stack=stack, preview=False)
    from infra.program import main

    exports: dict[str, Any] = {}
    original_export = pulumi.export

    def capture(name: str, value: Any) -> None:
        exports[name] = value
        original_export(name, value)

    pulumi.export = capture
    try:

        @mocks.test  # type: ignore[untyped-decorator]
        def run() -> pulumi.Output[Any]:
            main()
            return pulumi.Output.from_input(exports)

        run()
        resolved: dict[str, Any] = {}

        @mocks.test  # type: ignore[untyped-decorator]
        def settle() -> pulumi.Output[Any]:
            return pulumi.Output.from_input(exports).apply(resolved.update)

        settle()
    finally:
        pulumi.export = original_export
    return {"resources": recorded, "outputs": resolved}


SECRET_SIGNATURE = "4dabf18193072939515e22adb298388d"  # noqa: S105 - Pulumi's marker for a secret value, not one


def normalise(value: Any, unwrap_secrets: bool = True) -> Any:
    """Turn the mock monitor's floats (protobuf Struct) back into integers, and unwrap secret markers (or keep
    them, for a listing that must not show secret values)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict) and SECRET_SIGNATURE in value:
        return normalise(value.get("value")) if unwrap_secrets else value
    if isinstance(value, dict):
        return {k: normalise(v, unwrap_secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v, unwrap_secrets) for v in value]
    return value


def api_version(resource_type: str) -> str:
    """`kubernetes:apps/v1:Deployment` -> `apps/v1`; `kubernetes:core/v1:Service` -> `v1`."""
    group_version = resource_type.split(":")[1]
    return group_version.removeprefix("core/")


def kubernetes_objects(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Kubernetes manifests among the recorded resources, as `kubectl apply` would take them."""
    objects = []
    for resource in resources:
        kind = resource["type"].rsplit(":", 1)[-1]
        if not resource["type"].startswith("kubernetes:") or resource["type"].startswith("kubernetes:helm.sh/"):
            continue  # a Helm release is not an API object: what it creates is its chart's
        manifest = normalise(resource["inputs"])
        objects.append(
            {
                "apiVersion": api_version(resource["type"]),
                "kind": kind,
                **{k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")},
            }
        )
    return objects


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--overrides", default="{}", help="JSON of extra config keys (mcpfleet:key)")
    args = parser.parse_args(argv)
    json.dump(collect(args.stack, json.loads(args.overrides)), sys.stdout, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
