"""`aam check`: every module parses, and calls only builtins both engines implement.

The allowed builtins are those in `capabilities.json` (OPA's capabilities format, so the same
file drives `opa check --capabilities` in CI). A call is resolved the way the Rego compiler
does: a name defined by a rule of the same package, a `data.` ref, or an imported alias is a
user function; anything else is a builtin and must be listed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from aam_policy.engine import _ast
from aam_policy.engine._engine import opa_binary
from aam_policy.engine._policy import PolicySet, read_policy, split_regorus_error

# Operators are builtins too (OPA checks them against capabilities by these names).
_OPERATORS = {
    ("BoolExpr", "Eq"): "equal",
    ("BoolExpr", "Ne"): "neq",
    ("BoolExpr", "Lt"): "lt",
    ("BoolExpr", "Le"): "lte",
    ("BoolExpr", "Gt"): "gt",
    ("BoolExpr", "Ge"): "gte",
    ("ArithExpr", "Add"): "plus",
    ("ArithExpr", "Sub"): "minus",
    ("ArithExpr", "Mul"): "mul",
    ("ArithExpr", "Div"): "div",
    ("ArithExpr", "Mod"): "rem",
    ("BinExpr", "Union"): "or",
    ("BinExpr", "Intersection"): "and",
    ("AssignExpr", "ColEq"): "assign",
    ("AssignExpr", "Eq"): "eq",
}


@dataclass(frozen=True)
class CheckProblem:
    """One finding; `str()` is `path:line:column: message`."""

    path: str
    line: int
    column: int
    message: str
    code: str = "aam_check"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


def capabilities_file() -> Path:
    """The shipped capabilities.json (for `opa check --capabilities`)."""
    return Path(__file__).with_name("capabilities.json")


@lru_cache(maxsize=1)
def allowed_builtins() -> frozenset[str]:
    document = json.loads(capabilities_file().read_text(encoding="utf-8"))
    return frozenset(b["name"] for b in document["builtins"])


@dataclass
class _Parsed:
    path: str
    source: str
    ast: dict[str, Any]
    package: tuple[str, ...]


def check_paths(
    paths: Sequence[str | Path] | str | Path, use_opa: bool | None = None
) -> list[CheckProblem]:
    """Problems in the Rego under `paths` (empty list = clean).

    Raises `PolicyLoadError` when the paths cannot be read at all (missing, bad tarball).
    `use_opa`: also run `opa check --strict --capabilities` (default: when `opa` is on PATH).
    """
    from aam_policy.engine._regorus import new_engine

    policy = read_policy(paths)
    problems: list[CheckProblem] = []
    parsed: list[_Parsed] = []
    for module in policy.modules:
        engine = new_engine()  # one per module so each syntax error is reported on its own
        try:
            engine.add_policy(module.path, module.text)
        except RuntimeError as exc:
            path, line, column, message = split_regorus_error(str(exc))
            problems.append(
                CheckProblem(
                    path or module.path, line or 0, column or 0, message, "rego_parse_error"
                )
            )
            continue
        entry = json.loads(engine.get_ast_as_json())[0]
        ast = entry.get("ast") or {}
        parsed.append(_Parsed(module.path, module.text, ast, tuple(_ast.package_parts(ast))))
    problems.extend(_check_calls(parsed))
    if use_opa is None:
        use_opa = opa_binary() is not None
    if use_opa and not any(p.code == "rego_parse_error" for p in problems):
        problems.extend(_opa_check(policy))
    problems.sort(key=lambda p: (p.path, p.line, p.column, p.message))
    return list(dict.fromkeys(problems))


def _check_calls(parsed: list[_Parsed]) -> list[CheckProblem]:
    allowed = allowed_builtins()
    rules: dict[tuple[str, ...], set[str]] = {}
    for module in parsed:
        names = rules.setdefault(module.package, set())
        names.update(head.name for head in _ast.rule_heads(module.ast))
    problems = []
    for module in parsed:
        aliases = _ast.imports(module.ast, module.source)
        local = rules.get(module.package, set())
        for kind, body in _ast.walk(module.ast.get("rules") or []):
            name: str | None = None
            if kind == "Call":
                parts = _ast.ref_parts(body.get("fcn"))
                if parts is None:
                    continue  # a computed function ref; the compiler would reject it anyway
                target = _resolve(parts, aliases, local)
                if target is not None:
                    if not _defined(target, rules):
                        line, column = _call_position(body, *_ast.span_of(body))
                        problems.append(
                            CheckProblem(
                                module.path,
                                line,
                                column,
                                f"undefined function {'.'.join(target)}",
                                "undefined_function",
                            )
                        )
                    continue
                name = ".".join(parts)
            elif kind in ("BoolExpr", "ArithExpr", "BinExpr", "AssignExpr"):
                name = _OPERATORS.get((kind, str(body.get("op"))))
            elif kind in ("Membership", "SomeIn"):
                name = "internal.member_3" if body.get("key") else "internal.member_2"
            if name is None or name in allowed:
                continue
            line, column = _ast.span_of(body)
            if kind == "Call":
                line, column = _call_position(body, line, column)
                known = "." in name or name in _regorus_builtins()
            else:
                known = True
            problems.append(
                CheckProblem(
                    module.path,
                    line,
                    column,
                    f"builtin {name} is not allowed: not in capabilities.json "
                    "(only builtins both OPA and the embedded engine implement)"
                    if known
                    else f"unknown function {name}: neither an allowed builtin nor defined "
                    "by the loaded policy",
                    "capability_error" if known else "undefined_function",
                )
            )
    return problems


def _call_position(call: dict[str, Any], line: int, column: int) -> tuple[int, int]:
    """Where the function name starts (regorus' Call span points at the parenthesis)."""
    current = call.get("fcn")
    while True:
        found = _ast.node(current)
        if found is None:
            return line, column
        kind, body = found
        if kind == "Var":
            return _ast.span_of(body)
        current = body.get("refr")


@lru_cache(maxsize=1)
def _regorus_builtins() -> frozenset[str]:
    """Builtins the embedded engine implements (it reports them via opa.runtime())."""
    from aam_policy.engine._regorus import new_engine

    result = new_engine().eval_query("opa.runtime().builtins")["result"]
    return frozenset(result[0]["expressions"][0]["value"]) if result else frozenset()


def _resolve(parts: list[str], aliases: dict[str, list[str]], local: set[str]) -> list[str] | None:
    """Full `data...` path of a user function, or None when `parts` names a builtin."""
    if parts[0] == "data":
        return parts
    if parts[0] in aliases:
        return aliases[parts[0]] + parts[1:]
    if parts[0] in local:
        return None if len(parts) > 1 else ["<local>", parts[0]]
    return None


def _defined(target: list[str], rules: dict[tuple[str, ...], set[str]]) -> bool:
    if target[0] == "<local>":
        return True
    path = target[1:]  # without "data"
    for split in range(len(path) - 1, 0, -1):
        names = rules.get(tuple(path[:split]))
        if names is not None:
            return path[split] in names
    return False


def _opa_check(policy: PolicySet) -> list[CheckProblem]:
    from aam_policy.engine._opa import OpaEngine

    engine = OpaEngine(policy)
    try:
        return engine.check(capabilities_file())
    finally:
        engine.close()
