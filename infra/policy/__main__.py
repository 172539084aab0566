"""The mandatory policy pack: `pulumi up --policy-pack infra/policy`.

Configure `allowLoadBalancer: true` in the pack's config to permit LoadBalancer Services.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    ResourceValidationPolicy,
    StackValidationPolicy,
)

from infra.policy.checks import AUTH0_SCOPES, KEYCLOAK_SCOPE, check_resource, check_stack


def validate_resource(args, report_violation):  # type: ignore[no-untyped-def]
    if not args.resource_type.startswith("kubernetes:"):
        return
    allow = bool((args.get_config() or {}).get("allowLoadBalancer", False))
    for problem in check_resource(args.resource_type, args.props, allow_load_balancer=allow):
        report_violation(problem)


def validate_stack(args, report_violation):  # type: ignore[no-untyped-def]
    wanted = ("kubernetes:", KEYCLOAK_SCOPE, AUTH0_SCOPES)  # the objects, and the identity provider's scopes
    objects = [(r.resource_type, r.props) for r in args.resources if r.resource_type.startswith(wanted)]
    for problem in check_stack(objects):
        report_violation(problem)


PolicyPack(
    name="mcpfleet",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        ResourceValidationPolicy(
            name="kubernetes-workload-hardening",
            description="Requests, limits and probes; pinned images; non-root, read-only root; no secret literals; "
            "no LoadBalancer unless allowed.",
            validate=validate_resource,
            config_schema=PolicyConfigSchema(properties={"allowLoadBalancer": {"type": "boolean"}}),
        ),
        StackValidationPolicy(
            name="mcp-apps-have-pdb-and-network-policy",
            description="Every MCP app Deployment has a PodDisruptionBudget and its own NetworkPolicy; every "
            "workload in a namespace enforcing Pod Security restricted meets that profile.",
            validate=validate_stack,
        ),
    ],
)
