"""The intent template JSON Schema (Draft 2020-12).

`build_schema()` writes it from the shared patterns; the committed `intent.schema.json` is
its output (a test keeps the two equal), so editors and CI validate against the same file the
loader uses. Definitions carry a `title` the loader's messages key on.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from aam_policy.intents._patterns import (
    APPROVER,
    DURATION,
    FIELD_PATH,
    INTENT_ID,
    LEAF_OPS,
    LEVELS,
    LIST_OPS,
    NUMBER_OPS,
    OPERATIONS,
    OUTCOMES,
    REASON_CODES,
    SCALAR_OPS,
    TOOL_NAME,
)

SCHEMA_FILE = "intent.schema.json"
_SCALAR = {"type": ["string", "number", "boolean"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def _object(
    properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return {**schema, **extra}


def _list(items: dict[str, Any], *, non_empty: bool = False) -> dict[str, Any]:
    return {"type": "array", "items": items, **({"minItems": 1} if non_empty else {})}


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_STRINGS = _list({"type": "string"})
# the value each group of ops needs (VALUE_WANTED says the same in words)
_VALUE_SCHEMAS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (NUMBER_OPS, {"type": "number"}),
    (LIST_OPS, _list(_SCALAR, non_empty=True)),
    (("matches",), {"type": "string"}),
    (("exists",), {"type": "boolean"}),
    (SCALAR_OPS, _SCALAR),
)


def _value_rules() -> list[dict[str, Any]]:
    """One if/then per group of ops, so a wrong value is reported against its op."""
    return [
        {
            "if": {"properties": {"op": {"enum": list(ops)}}, "required": ["op"]},
            "then": {"properties": {"value": value}},
        }
        for ops, value in _VALUE_SCHEMAS
    ]


def _definitions() -> dict[str, Any]:
    return {
        "duration": {
            "title": "duration",
            "description": "90s, 10m, 1h, 1h30m, 2d, or a positive number of seconds",
            "type": ["integer", "string"],
            "minimum": 1,
            "pattern": DURATION.pattern,
        },
        "intentId": {"title": "intent id", "type": "string", "pattern": INTENT_ID.pattern},
        "toolName": {"title": "tool name", "type": "string", "pattern": TOOL_NAME.pattern},
        "fieldPath": {"title": "field path", "type": "string", "pattern": FIELD_PATH.pattern},
        "approver": {"title": "approver", "type": "string", "pattern": APPROVER.pattern},
        "level": {"enum": list(LEVELS)},
        "condition": {
            "title": "condition",
            "description": "{field, op, value}, or all:/any: of conditions, or not: a condition",
            "anyOf": [
                _ref("fieldCondition"),
                _ref("allCondition"),
                _ref("anyCondition"),
                _ref("notCondition"),
            ],
        },
        "fieldCondition": _object(
            {"field": _ref("fieldPath"), "op": {"enum": list(LEAF_OPS)}, "value": {}},
            ("field", "op", "value"),
            allOf=_value_rules(),
        ),
        "allCondition": _object({"all": _list(_ref("condition"), non_empty=True)}, ("all",)),
        "anyCondition": _object({"any": _list(_ref("condition"), non_empty=True)}, ("any",)),
        "notCondition": _object({"not": _ref("condition")}, ("not",)),
        "metadata": _object(
            {
                "id": _ref("intentId"),
                "owner": {"type": "string"},
                "description": {"type": "string"},
                "standards": _STRINGS,
            },
            ("id", "owner"),
        ),
        "principals": _object(
            {
                "human_roles": _STRINGS,
                "humans": _STRINGS,
                "groups": _STRINGS,
                "agents": _list({"type": "string", "minLength": 1}, non_empty=True),
            },
            ("agents",),
        ),
        "session": _object(
            {"max_ttl": _ref("duration"), "max_actions": {"type": "integer", "minimum": 0}},
            ("max_ttl", "max_actions"),
        ),
        "escalation": _object(
            {
                "when": _or_null(_ref("condition")),
                "approvers": _list(_ref("approver"), non_empty=True),
                "reason": {"type": "string"},
                "approval_ttl": _ref("duration"),
            },
            ("approvers",),
        ),
        "tool": _object(
            {
                "name": _ref("toolName"),
                "operations": _list({"enum": list(OPERATIONS)}, non_empty=True),
                "max_sensitivity": _ref("level"),
                "escalate": _list(_ref("escalation")),
            },
            ("name", "operations", "max_sensitivity"),
        ),
        "chainAfter": _object(
            {
                "sensitivity_at_least": _or_null(_ref("level")),
                "tools_used_any": _or_null(_list(_ref("toolName"))),
            },
            minProperties=1,
        ),
        "chainRule": _object(
            {
                "after": _ref("chainAfter"),
                "deny_tools": _list(_ref("toolName"), non_empty=True),
                "reason": {"type": "string"},
            },
            ("after", "deny_tools"),
        ),
        "delegation": _object(
            {
                "max_depth": {"type": "integer", "minimum": 0},
                "agents": _list({"type": "string", "minLength": 1}),
            },
            ("max_depth",),
        ),
        "breakGlass": _object(
            {"allowed": {"type": "boolean"}, "max_ttl": _or_null(_ref("duration"))},
            ("allowed",),
        ),
        "expect": {
            "anyOf": [
                {"enum": list(OUTCOMES)},
                _object(
                    {
                        "outcome": {"enum": list(OUTCOMES)},
                        "reasons": _list({"enum": list(REASON_CODES)}),
                    },
                    ("outcome",),
                ),
            ]
        },
        "example": _object(
            {"name": {"type": "string"}, "request": {"type": "object"}, "expect": _ref("expect")},
            ("name", "expect"),
        ),
        "spec": _object(
            {
                "principals": _ref("principals"),
                "session": _ref("session"),
                "environments": _or_null(_STRINGS),
                "tools": _list(_ref("tool"), non_empty=True),
                "chaining": _list(_ref("chainRule")),
                "delegation": _or_null(_ref("delegation")),
                "break_glass": _or_null(_ref("breakGlass")),
                "examples": _list(_ref("example")),
            },
            ("principals", "session", "tools"),
        ),
    }


def build_schema() -> dict[str, Any]:
    """The schema as the code defines it (what `intent.schema.json` must hold)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "aam-policy intent template",
        **_object(
            {
                "apiVersion": {"const": "aam/v1"},
                "kind": {"const": "Intent"},
                "metadata": _ref("metadata"),
                "spec": _ref("spec"),
            },
            ("apiVersion", "kind", "metadata", "spec"),
        ),
        "$defs": _definitions(),
    }


def render_schema() -> str:
    """`build_schema()` as the committed file's text."""
    return json.dumps(build_schema(), indent=2, sort_keys=True) + "\n"


@cache
def _committed() -> str:
    return (resources.files(__package__) / SCHEMA_FILE).read_text(encoding="utf-8")


def intent_schema() -> dict[str, Any]:
    """The committed intent template JSON Schema (a fresh copy each call)."""
    return json.loads(_committed())
