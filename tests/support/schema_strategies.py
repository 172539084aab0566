"""Hypothesis strategies for the arguments a tool's input schema allows: what a caller can send that passes
validation, for property tests that drive every tool with schema-valid random input.

Covers the JSON Schema subset pydantic writes for tool argument models: objects (properties, required,
additionalProperties, patternProperties, propertyNames, min/maxProperties), arrays, strings (pattern,
min/maxLength), integers and numbers (bounds), booleans, enums, anyOf, nullable, and local `$ref`s.
(hypothesis-jsonschema, the library for this, fails on the Hypothesis release this project runs.)
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

JsonSchema = dict[str, Any]
MAX_TEXT = 200  # longer strings only make examples slower; the length bounds are tested elsewhere


def arguments(schema: JsonSchema) -> st.SearchStrategy[Any]:
    return _strategy(schema, schema.get("$defs", {}))


def _strategy(schema: JsonSchema, defs: dict[str, JsonSchema]) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        return st.deferred(lambda: _strategy(defs[schema["$ref"].rsplit("/", 1)[1]], defs))
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    if "anyOf" in schema:
        return st.one_of([_strategy(option, defs) for option in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**53)), schema.get("maximum", 2**53))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "string":
        return _text(schema)
    if kind == "array":
        return st.lists(
            _strategy(schema.get("items", {}), defs),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 5), 5),
        )
    if kind == "object":
        return _object(schema, defs)
    return st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))


def _text(schema: JsonSchema) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), min(schema.get("maxLength", MAX_TEXT), MAX_TEXT)
    if "pattern" in schema:
        pattern = schema["pattern"]
        return st.from_regex(pattern, fullmatch=True).filter(lambda s: low <= len(s) <= schema.get("maxLength", 10**9))
    return st.text(min_size=low, max_size=max(low, high))


def _object(schema: JsonSchema, defs: dict[str, JsonSchema]) -> st.SearchStrategy[dict[str, Any]]:
    properties: dict[str, JsonSchema] = schema.get("properties", {})
    if properties:
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {name: _strategy(sub, defs) for name, sub in properties.items() if name in required},
            optional={name: _strategy(sub, defs) for name, sub in properties.items() if name not in required},
        )
    patterned: dict[str, JsonSchema] = schema.get("patternProperties", {})
    if patterned:
        pattern, values = next(iter(patterned.items()))
        keys = _text({**schema.get("propertyNames", {}), "pattern": pattern})
    else:
        values = schema.get("additionalProperties") or {}
        keys = _text(schema.get("propertyNames", {"maxLength": 20}))
    most = min(schema.get("maxProperties", 4), 4)
    return st.dictionaries(
        keys, _strategy(values, defs) if isinstance(values, dict) else st.none(), min_size=0, max_size=most
    ).filter(lambda d: len(d) >= schema.get("minProperties", 0))
