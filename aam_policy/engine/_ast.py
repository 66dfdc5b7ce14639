"""Reading regorus' AST JSON (`Engine.get_ast_as_json()`): packages, rule heads, calls.

Every node is a one-key object `{"Kind": {...fields, "span": {...}}}`; refs are chains of
`Var` / `RefDot` (field = [span, name]) / `RefBrack` (index = expression).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RuleHead:
    name: str  # first segment of the head ref ("test_x", "decision", "f")
    kind: str  # "Compr" (complete / ref head), "Set", "Func", "Default"
    line: int
    column: int
    simple: bool  # head is a plain name (not `a.b` or `a[k]`)


def node(value: Any) -> tuple[str, dict[str, Any]] | None:
    """(kind, body) if `value` is an AST node, else None."""
    if isinstance(value, dict) and len(value) == 1:
        kind, body = next(iter(value.items()))
        if kind[:1].isupper() and isinstance(body, dict):
            return kind, body
    return None


def ref_parts(value: Any) -> list[str] | None:
    """["data", "aam", "core"] for `data.aam.core`; None when a segment is not a constant."""
    found = node(value)
    if found is None:
        return None
    kind, body = found
    if kind == "Var":
        name = body.get("value")
        return [name] if isinstance(name, str) else None
    if kind == "RefDot":
        base = ref_parts(body.get("refr"))
        field = body.get("field")
        if base is None or not isinstance(field, list) or len(field) != 2:
            return None
        return [*base, str(field[1])]
    if kind == "RefBrack":
        base = ref_parts(body.get("refr"))
        index = node(body.get("index"))
        if base is None or index is None or index[0] != "String":
            return None
        return [*base, str(index[1].get("value"))]
    return None


def span_of(body: dict[str, Any]) -> tuple[int, int]:
    span = body.get("span") or {}
    return int(span.get("line", 0)), int(span.get("col", 0))


def package_parts(module_ast: dict[str, Any]) -> list[str]:
    parts = ref_parts((module_ast.get("package") or {}).get("refr")) or []
    return parts[1:] if parts[:1] == ["data"] else parts


def rule_heads(module_ast: dict[str, Any]) -> Iterator[RuleHead]:
    for rule in module_ast.get("rules") or []:
        found = node(rule)
        if found is None:
            continue
        kind, body = found
        line, column = span_of(body)
        if kind == "Default":
            parts, head_kind = ref_parts(body.get("refr")), "Default"
            simple = node(body.get("refr")) is not None and next(iter(body["refr"])) == "Var"
        else:
            head = node(body.get("head"))
            if head is None:
                continue
            head_kind, head_body = head
            parts = ref_parts(head_body.get("refr"))
            simple = (
                node(head_body.get("refr")) is not None and next(iter(head_body["refr"])) == "Var"
            )
            if parts is None:
                # `m[k] := v`: the head's base name is still defined by this rule
                inner = node(head_body.get("refr"))
                parts = ref_parts(inner[1].get("refr")) if inner else None
        if parts:
            yield RuleHead(parts[0], head_kind, line, column, simple)


def imports(module_ast: dict[str, Any], source: str) -> dict[str, list[str]]:
    """alias -> imported data path, e.g. {"core": ["data", "aam", "core"]}."""
    out: dict[str, list[str]] = {}
    encoded = source.encode("utf-8")
    for item in module_ast.get("imports") or []:
        parts = ref_parts(item.get("refr"))
        if not parts or parts[0] != "data":
            continue
        alias = parts[-1]
        span = item.get("as")
        if isinstance(span, dict) and "start" in span and "end" in span:
            # regorus stores only the span of `as <alias>`; spans are byte offsets
            alias = encoded[span["start"] : span["end"]].decode("utf-8", "replace")
        out[alias] = parts
    return out


def walk(value: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every AST node under `value`, depth first."""
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            found = node(current)
            if found is not None:
                yield found
                stack.extend(reversed(list(found[1].values())))
            else:
                stack.extend(reversed(list(current.values())))
        elif isinstance(current, list):
            stack.extend(reversed(current))
