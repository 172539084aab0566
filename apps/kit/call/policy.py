"""Who may do what: each tool call decided by the server's Cedar policies (`cedarpy`, Cedar's own engine), once,
after its arguments are validated and before its handler runs.

The policies are the server's defaults (its scopes, `apps.kit.declare.policy.default_policies`) and the
organisation's, from the `.cedar` files in `MCP_POLICY_DIR`; all are validated against the server's schema at start
(a policy naming an unknown tool, type or attribute stops the server, as the policy pack stops `pulumi up`).
`tools/list` shows a tool only when some policy could permit it to this principal (Cedar's partial evaluation,
with the resource and the arguments unknown); a denial says a policy does not permit the call, never which.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apps.kit.declare.policy import (
    PRINCIPAL_TYPE,
    SERVER_TYPE,
    argument_types,
    cedar_schema,
    default_policies,
)
from apps.kit.declare.tools import ToolSpec
from apps.kit.identity.tokens import Principal
from apps.kit.wire.encoding import dumps

if TYPE_CHECKING:
    import cedarpy

# What is kept per principal, most recent first: its parsed entity and the decisions for questions it asked again.
# Each principal holds at most DECISIONS_PER_PRINCIPAL (a caller varying its arguments evicts only its own), and
# PRINCIPALS_KEPT principals are kept.
PRINCIPALS_KEPT = 1024
DECISIONS_PER_PRINCIPAL = 16


class PolicyError(ValueError):
    """The policies do not parse or do not fit the server's schema: each problem with its policy and file."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    policies: tuple[str, ...]  # the `@id`s of the policies that decided (cedar's `policyN` for one without)
    resource: dict[str, str] | None = None  # what the call acts on, as the policies saw it


def load_policy_texts(folder: Path | None) -> list[tuple[str, str]]:
    """The organisation's policies: every `*.cedar` file of `folder`, in name order, as (file name, text)."""
    if folder is None:
        return []
    if not folder.is_dir():
        raise PolicyError(f"MCP_POLICY_DIR {folder} is not a folder")
    return [(path.name, path.read_text()) for path in sorted(folder.glob("*.cedar"))]


def check(schema: dict[str, Any], texts: list[tuple[str, str]], defaults: str) -> str:
    """All policies as one text, or `PolicyError` naming each problem (the file, the policy, what is wrong)."""
    import cedarpy  # loaded only where there are policies to check (a server without its own never loads it)

    problems, parts = [], [defaults]
    schema_text = json.dumps(schema)
    for name, text in texts:
        try:
            cedarpy.PolicySet.from_str(text)
        except ValueError as error:
            problems.append(f"{name}: {str(error).strip()}")
            continue
        result = cedarpy.validate_policies(text, schema_text)
        if not result.validation_passed:
            problems += [f"{name}: {_located(text, str(error))}" for error in result.errors]
            continue
        parts.append(_named(name, text))
    if problems:
        raise PolicyError("policies that do not fit this server's tools:\n" + "\n".join(f"  {p}" for p in problems))
    return "\n\n".join(parts)


def _named(name: str, text: str) -> str:
    """Each policy of an organisation's file without an `@id` is named `<file>:<line>`, so an audit event says
    which one decided."""
    lines, out = text.splitlines(), list[str]()
    for number, line in enumerate(lines, 1):
        starts = line.lstrip().startswith(("permit", "forbid"))
        previous = next((p.strip() for p in reversed(out) if p.strip() and not p.strip().startswith("//")), "")
        if starts and not previous.startswith("@"):
            out.append(f'@id("{name}:{number}")')
        out.append(line)
    return "\n".join(out)


def _located(text: str, error: str) -> str:
    """cedar's `[policyN] ...` with the line the policy starts on (policies are numbered in file order)."""
    if error.startswith("[policy"):
        index = int(error[len("[policy") : error.index("]")])
        starts = [n for n, line in enumerate(text.splitlines(), 1) if line.lstrip().startswith(("permit", "forbid"))]
        if index < len(starts):
            said = error.split("] ", 1)[-1]
            said = said.split("`, ", 1)[-1] if said.startswith("for policy `") else said  # its number says nothing
            return f"line {starts[index]}: {said}"
    return error


class Policies:
    """A server's policy set, parsed once; decisions per call."""

    def __init__(self, server: Any, folder: Path | None, issuer: str):
        self.server, self.issuer, self.server_name = server, issuer, server.name
        texts = load_policy_texts(folder)
        # Without the organisation's policies the set is the scope rules, which the HTTP gate has just applied to
        # this very call: its decision is known without asking Cedar (a Cedar call costs ~50 us, a tenth of a call),
        # and the engine is not even loaded (16 ms and 4 MiB at start, measured here).
        self.defaults_only = not any(text.strip() for _, text in texts)
        self.text = default_policies(server)
        if not self.defaults_only:
            self.text = check(cedar_schema(server), texts, self.text)
        self._set: cedarpy.PolicySet | None = None
        self._typed = {name: set(argument_types(spec)) for name, spec in server.specs.items()}
        # principal -> (its entity, its decisions by question)
        self._principals: OrderedDict[tuple[Any, ...], tuple[cedarpy.Entities, OrderedDict[Any, Decision]]] = (
            OrderedDict()
        )

    @property
    def set(self) -> cedarpy.PolicySet:
        """The parsed policy set, on first use."""
        if self._set is None:
            import cedarpy

            self._set = cedarpy.PolicySet.from_str(self.text)
        return self._set

    def principal_uid(self, principal: Principal) -> dict[str, str]:
        return {"type": PRINCIPAL_TYPE, "id": principal.subject or f"client:{principal.client_id}"}

    @staticmethod
    def _principal_key(principal: Principal) -> tuple[Any, ...]:
        return (principal.subject, principal.client_id, principal.scopes, principal.groups)

    def _kept(self, principal: Principal) -> tuple[cedarpy.Entities, OrderedDict[Any, Decision]]:
        """The principal's parsed entity and its decisions kept, made on first use."""
        import cedarpy

        key = self._principal_key(principal)
        kept = self._principals.get(key)
        if kept is None:
            entity = {
                "uid": self.principal_uid(principal),
                "attrs": {
                    "scopes": sorted(principal.scopes),
                    "groups": sorted(principal.groups),
                    "client": principal.client_id or "",
                    "issuer": self.issuer,
                },
                "parents": [],
            }
            kept = self._principals[key] = (cedarpy.Entities.from_json_str(json.dumps([entity])), OrderedDict())
            if len(self._principals) > PRINCIPALS_KEPT:
                self._principals.popitem(last=False)
        else:
            self._principals.move_to_end(key)
        return kept

    def resource(self, spec: ToolSpec[Any], arguments: Any) -> dict[str, str]:
        if spec.acts_on is None:
            return {"type": SERVER_TYPE, "id": self.server_name}
        return {"type": spec.acts_on.type, "id": spec.acts_on.entity_id(arguments)}

    def decide(self, principal: Principal, spec: ToolSpec[Any], arguments: Any, now: float | None = None) -> Decision:
        """Whether `principal` may call `spec` with these (validated) arguments, and the policies that decided."""
        if self.defaults_only and spec.scopes <= principal.scopes:  # the default permit holds: the scope rule
            return Decision(True, (f"default: {spec.name}",), self.resource(spec, arguments))
        return self.evaluate(principal, spec, arguments, now)

    def evaluate(self, principal: Principal, spec: ToolSpec[Any], arguments: Any, now: float | None = None) -> Decision:
        """The decision as Cedar makes it, always asking the engine."""
        moment = time.gmtime(now)
        typed = self._typed[spec.name]
        values = arguments.model_dump(mode="json", by_alias=True, exclude_none=True)
        resource = self.resource(spec, arguments)
        context = dumps(
            {
                "arguments": {name: value for name, value in values.items() if name in typed},
                "hour": moment.tm_hour,
                "weekday": moment.tm_wday + 1,
            },
            sort_keys=True,
        ).decode()
        # A decision depends on nothing else (the resource entity has no attributes): the same question gets the
        # same answer, so a repeated one is not asked again.
        import cedarpy

        entities, decisions = self._kept(principal)
        question = (spec.name, resource["type"], resource["id"], context)
        known = decisions.get(question)
        if known is not None:
            decisions.move_to_end(question)
            return known
        request: dict[str, Any] = {
            "principal": self.principal_uid(principal),
            "action": {"type": "Action", "id": spec.name},
            "resource": resource,
            "context": context,
        }
        result = cedarpy.is_authorized(request, self.set, entities)
        ids = result.diagnostics.id_annotations_by_reason or {}
        decided = tuple(sorted(ids.get(reason, reason) for reason in result.diagnostics.reasons))
        decision = decisions[question] = Decision(result.decision == cedarpy.Decision.Allow, decided, resource)
        if len(decisions) > DECISIONS_PER_PRINCIPAL:
            decisions.popitem(last=False)
        return decision

    def may_list(self, principal: Principal, spec: ToolSpec[Any]) -> bool:
        """Whether some policy could permit the tool to this principal, whatever the resource and arguments."""
        if self.defaults_only:
            return spec.scopes <= principal.scopes
        uid = self.principal_uid(principal)
        # partial evaluation takes Cedar's own syntax; its string escapes are JSON's for what an id may hold
        request = {"principal": f"{uid['type']}::{json.dumps(uid['id'], ensure_ascii=False)}",
                   "action": f'Action::"{spec.name}"'}  # fmt: skip
        import cedarpy

        try:
            result = cedarpy.is_authorized_partial(request, self.set, self._kept(principal)[0])
        except (ValueError, TypeError):  # an id Cedar's syntax cannot hold: listed; the call itself is decided
            return True
        if result.decision == cedarpy.Decision.Allow:
            return True
        if result.decision == cedarpy.Decision.Deny:
            return False
        return any(
            residual.get("effect") == "permit"
            and not any(condition.get("body") == {"Value": False} for condition in residual.get("conditions", []))
            for residual in (result.residuals or {}).values()
        )
