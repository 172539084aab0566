"""What a server's policies can speak of, derived from its tool declarations: a Cedar schema and the default
policies (Cedar, https://www.cedarpolicy.com; evaluated by `cedarpy`, never by anything written here).

- **Principal**: `Person::"<sub>"` (a client with no person: `Person::"client:<id>"`), with the token's `scopes`,
  `groups` (as the provider's token profile names them), `client` and `issuer`.
- **Action**: `Action::"<tool>"`, one per tool.
- **Resource**: what the tool touches as its server declares it (`On("Table", "{table}")`: a `Table` named by the
  `table` argument); a tool that declares none acts on `Server::"<server name>"`.
- **Context**: `arguments` (each argument Cedar can type: strings, whole numbers, booleans, lists of strings),
  `hour` and `weekday` (UTC; Monday is 1, Sunday 7).

The default policies permit each tool to a principal holding its declared scopes: exactly today's scope rule.
An organisation's policies add to them (a `forbid` always wins), so they narrow what scopes grant; they cannot
widen it past the token's scopes, which the HTTP gate checks first (with its step-up challenge).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apps.kit.declare.server import FocusedServer
    from apps.kit.declare.tools import ToolSpec

PRINCIPAL_TYPE = "Person"
SERVER_TYPE = "Server"
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z0-9]{0,63}")


@dataclass(frozen=True)
class On:
    """The resource a tool acts on: an entity type, and its id formatted from the arguments (`"{owner}/{repo}"`)."""

    type: str
    id: str
    lower: bool = False  # the names are case-insensitive where they live (GitHub's): policies see them lower-cased

    def __post_init__(self) -> None:
        if not _TYPE_NAME.fullmatch(self.type) or self.type in (PRINCIPAL_TYPE, "Action"):
            raise ValueError(f"not a resource type name: {self.type!r} (CamelCase, not Person or Action)")

    @cached_property  # parsed once, not per call
    def fields(self) -> list[str]:
        return [name for _, name, _, _ in string.Formatter().parse(self.id) if name]

    def entity_id(self, arguments: Any) -> str:
        named = self.id.format(**{name: getattr(arguments, name) for name in self.fields})
        return named.lower() if self.lower else named


def resource_type(spec: ToolSpec[Any]) -> str:
    return spec.acts_on.type if spec.acts_on is not None else SERVER_TYPE


def _cedar_type(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The Cedar type of a JSON-schema property, or None when Cedar cannot hold it (objects, decimals)."""
    if "anyOf" in schema:  # Optional[X]: X or null
        kinds = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return _cedar_type(kinds[0]) if len(kinds) == 1 else None
    kind = schema.get("type")
    if kind == "string" or ("enum" in schema and all(isinstance(v, str) for v in schema["enum"])):
        return {"type": "String"}
    if kind == "integer":
        return {"type": "Long"}
    if kind == "boolean":
        return {"type": "Boolean"}
    if kind == "array" and (schema.get("items") or {}).get("type") == "string":
        return {"type": "Set", "element": {"type": "String"}}
    return None


def argument_types(spec: ToolSpec[Any]) -> dict[str, dict[str, Any]]:
    """The tool's arguments as Cedar record attributes: every one Cedar can type (optional ones not required)."""
    schema = spec.args.model_json_schema(by_alias=True)
    required = set(schema.get("required", []))
    attributes = {}
    for name, prop in (schema.get("properties") or {}).items():
        typed = _cedar_type(prop)
        if typed is not None:
            attributes[name] = typed | ({} if name in required else {"required": False})
    return attributes


def cedar_schema(server: FocusedServer[Any, Any]) -> dict[str, Any]:
    """The server's Cedar schema (JSON form), from its tools alone."""
    text_set = {"type": "Set", "element": {"type": "String"}}
    entity_types: dict[str, Any] = {
        PRINCIPAL_TYPE: {
            "shape": {
                "type": "Record",
                "attributes": {
                    "scopes": text_set,
                    "groups": text_set,
                    "client": {"type": "String"},
                    "issuer": {"type": "String"},
                },
            }
        },
        SERVER_TYPE: {},
    }
    actions = {}
    for spec in server.specs.values():
        entity_types.setdefault(resource_type(spec), {})
        context = {
            "arguments": {"type": "Record", "attributes": argument_types(spec)},
            "hour": {"type": "Long"},
            "weekday": {"type": "Long"},
        }
        actions[spec.name] = {
            "appliesTo": {
                "principalTypes": [PRINCIPAL_TYPE],
                "resourceTypes": [resource_type(spec)],
                "context": {"type": "Record", "attributes": context},
            }
        }
    return {"": {"entityTypes": entity_types, "actions": actions}}


def default_policies(server: FocusedServer[Any, Any]) -> str:
    """One permit per tool, for a principal holding every scope the tool declares: today's scope rule, as Cedar."""
    policies = []
    for spec in server.specs.values():
        held = " && ".join(f'principal.scopes.contains("{scope}")' for scope in sorted(spec.scopes))
        policies.append(
            f'@id("default: {spec.name}")\n'
            f'permit (principal, action == Action::"{spec.name}", resource is {resource_type(spec)})\n'
            f"when {{ {held} }};"
        )
    return "\n\n".join(policies) + "\n"
