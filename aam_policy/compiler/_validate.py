"""Re-validation of the normalized intent dict before anything is rendered.

The authoring model (`aam_policy.intents`) validates templates for humans, with file:line
messages. The compiler checks again because it is the last line of defence between text and
Rego: an id or field path is emitted *as code* (a package name, a ref), so a value that is
not of its pattern must stop the compile, never be escaped into something that parses. Dicts
that bypass the loader (API users, tests) get the same guarantee.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from aam_policy.compiler._errors import CompileError
from aam_policy.intents._patterns import (
    APPROVER,
    CONTROL,
    INTENT_ID,
    LEAF_OPS,
    LEVELS,
    MAX_CONDITION_DEPTH,
    OPERATIONS,
    OUTCOMES,
    PATH_ROOTS,
    PATH_SEGMENT,
    REASON_CODES,
    SURROGATE,
    TOOL_NAME,
)


def intent_document(intent: Any) -> dict[str, Any]:
    """The normalized dict of an `Intent` model, a `LoadedIntent`, or such a dict (copied)."""
    inner = getattr(intent, "intent", None)
    if inner is not None and hasattr(inner, "model_dump"):
        intent = inner  # a LoadedIntent
    if hasattr(intent, "model_dump"):
        return intent.model_dump(mode="json", by_alias=True)
    if isinstance(intent, Mapping):
        return copy.deepcopy(dict(intent))
    raise CompileError(f"expected an Intent or its dict, got {type(intent).__name__}")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int)


def is_scalar(value: Any) -> bool:
    return isinstance(value, (str, bool)) or is_number(value)


def check_field_path(path: Any, where: str) -> tuple[str, ...]:
    """Segments of a valid field path; CompileError for anything else."""
    if not isinstance(path, str):
        raise CompileError(f"{where}: field path must be a string, got {type(path).__name__}")
    segments = tuple(path.split("."))
    if segments[0] not in PATH_ROOTS:
        raise CompileError(
            f"{where}: field path {path!r} must start with one of {', '.join(PATH_ROOTS)}"
        )
    for segment in segments:
        if not PATH_SEGMENT.fullmatch(segment):
            raise CompileError(
                f"{where}: field path {path!r} has an invalid segment {segment!r} "
                "(dotted identifiers only)"
            )
    return segments


def check_intent_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not INTENT_ID.fullmatch(value):
        raise CompileError(f"{where}: intent id {value!r} does not match {INTENT_ID.pattern}")
    return value


def check_tool_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not TOOL_NAME.fullmatch(value):
        raise CompileError(f"{where}: tool name {value!r} does not match {TOOL_NAME.pattern}")
    return value


class _Checker:
    """Walks one intent dict; every problem names the intent and the field."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        meta = doc.get("metadata")
        ident = meta.get("id") if isinstance(meta, Mapping) else None
        self.label = f"intent {ident!r}" if isinstance(ident, str) else "intent"

    def fail(self, where: str, message: str) -> CompileError:
        return CompileError(f"{self.label}: {where}: {message}")

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"must be a mapping, got {type(value).__name__}")
        return dict(value)

    def sequence(self, value: Any, where: str, *, non_empty: bool = False) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, f"must be a list, got {type(value).__name__}")
        if non_empty and not value:
            raise self.fail(where, "must not be empty")
        return value

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"must be a string, got {type(value).__name__}")
        return value

    def strings(self, value: Any, where: str, *, non_empty: bool = False) -> list[str]:
        items = self.sequence(value, where, non_empty=non_empty)
        return [self.string(item, f"{where}[{i}]") for i, item in enumerate(items)]

    def integer(self, value: Any, where: str, minimum: int) -> int:
        if not is_int(value) or value < minimum:
            raise self.fail(where, f"must be an integer >= {minimum}, got {value!r}")
        return value

    def choice(self, value: Any, where: str, allowed: tuple[str, ...]) -> str:
        if value not in allowed:
            raise self.fail(where, f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    # --- the document ---------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        doc = self.doc
        self.unicode(doc, "")
        meta = self.mapping(doc.get("metadata"), "metadata")
        try:
            check_intent_id(meta.get("id"), "metadata.id")
        except CompileError as exc:
            raise CompileError(f"{self.label}: {exc}") from None
        self.string(meta.get("owner"), "metadata.owner")
        meta.setdefault("description", "")
        self.string(meta["description"], "metadata.description")
        meta.setdefault("standards", [])
        self.strings(meta["standards"], "metadata.standards")
        doc["metadata"] = meta

        spec = self.mapping(doc.get("spec"), "spec")
        spec["principals"] = self.principals(spec.get("principals"))
        spec["session"] = self.session(spec.get("session"))
        environments = spec.get("environments")
        if environments is not None:
            self.strings(environments, "spec.environments")
        spec["environments"] = environments
        spec["tools"] = self.tools(spec.get("tools"))
        spec["chaining"] = self.chaining(spec.get("chaining") or [])
        spec["delegation"] = self.delegation(spec.get("delegation"))
        spec["break_glass"] = self.break_glass(spec.get("break_glass"))
        spec["examples"] = self.examples(spec.get("examples") or [])
        doc["spec"] = spec
        return doc

    def principals(self, value: Any) -> dict[str, Any]:
        where = "spec.principals"
        principals = self.mapping(value, where)
        out: dict[str, Any] = {}
        for key in ("human_roles", "humans", "groups"):
            out[key] = self.strings(principals.get(key) or [], f"{where}.{key}")
        agents = self.strings(principals.get("agents"), f"{where}.agents", non_empty=True)
        for i, agent in enumerate(agents):
            if not agent or CONTROL.search(agent):
                raise self.fail(
                    f"{where}.agents[{i}]", "agent id must be non-empty without control characters"
                )
        out["agents"] = agents
        return out

    def session(self, value: Any) -> dict[str, Any]:
        session = self.mapping(value, "spec.session")
        return {
            "max_ttl": self.integer(session.get("max_ttl"), "spec.session.max_ttl", 1),
            "max_actions": self.integer(session.get("max_actions"), "spec.session.max_actions", 0),
        }

    def tools(self, value: Any) -> list[dict[str, Any]]:
        tools = self.sequence(value, "spec.tools", non_empty=True)
        seen: set[str] = set()
        out = []
        for t, raw in enumerate(tools):
            where = f"spec.tools[{t}]"
            tool = self.mapping(raw, where)
            name = tool.get("name")
            try:
                check_tool_name(name, f"{where}.name")
            except CompileError as exc:
                raise CompileError(f"{self.label}: {exc}") from None
            if name in seen:
                raise self.fail(f"{where}.name", f"duplicate tool {name!r}")
            seen.add(name)
            operations = self.strings(tool.get("operations"), f"{where}.operations", non_empty=True)
            for i, op in enumerate(operations):
                self.choice(op, f"{where}.operations[{i}]", OPERATIONS)
            self.choice(tool.get("max_sensitivity"), f"{where}.max_sensitivity", LEVELS)
            rules = self.sequence(tool.get("escalate") or [], f"{where}.escalate")
            tool["escalate"] = [
                self.escalate(rule, f"{where}.escalate[{r}]") for r, rule in enumerate(rules)
            ]
            out.append(tool)
        return out

    def escalate(self, value: Any, where: str) -> dict[str, Any]:
        rule = self.mapping(value, where)
        if rule.get("when") is not None:
            rule["when"] = self.condition(rule["when"], f"{where}.when", 0)
        else:
            rule["when"] = None
        approvers = self.strings(rule.get("approvers"), f"{where}.approvers", non_empty=True)
        for i, approver in enumerate(approvers):
            if not APPROVER.fullmatch(approver) or CONTROL.search(approver):
                raise self.fail(
                    f"{where}.approvers[{i}]",
                    f"approver {approver!r} must be role:<name> or user:<name>",
                )
        rule.setdefault("reason", "")
        self.string(rule["reason"], f"{where}.reason")
        rule["approval_ttl"] = self.integer(rule.get("approval_ttl"), f"{where}.approval_ttl", 1)
        return rule

    def condition(self, value: Any, where: str, depth: int) -> dict[str, Any]:
        if depth > MAX_CONDITION_DEPTH:
            raise self.fail(where, f"conditions nest deeper than {MAX_CONDITION_DEPTH} levels")
        cond = self.mapping(value, where)
        # a model dump may carry the unused shapes as nulls
        present = {k: v for k, v in cond.items() if v is not None or k == "value"}
        shapes = [k for k in ("all", "any", "not") if k in present]
        is_leaf = "field" in present or "op" in present
        if len(shapes) + int(is_leaf) != 1:
            raise self.fail(
                where, "a condition is exactly one of {field, op, value}, all:, any: or not:"
            )
        if shapes in (["all"], ["any"]):
            key = shapes[0]
            children = self.sequence(present[key], f"{where}.{key}", non_empty=True)
            return {
                key: [
                    self.condition(child, f"{where}.{key}[{i}]", depth + 1)
                    for i, child in enumerate(children)
                ]
            }
        if shapes == ["not"]:
            return {"not": self.condition(present["not"], f"{where}.not", depth + 1)}
        extra = set(present) - {"field", "op", "value"}
        if extra:
            raise self.fail(where, f"unexpected keys {sorted(extra)} in a field condition")
        try:
            check_field_path(present.get("field"), f"{where}.field")
        except CompileError as exc:
            raise CompileError(f"{self.label}: {exc}") from None
        op = self.choice(present.get("op"), f"{where}.op", LEAF_OPS)
        if "value" not in present:
            raise self.fail(where, f"op {op!r} needs a value")
        self.check_value(op, present["value"], f"{where}.value")
        return {"field": present["field"], "op": op, "value": present["value"]}

    def check_value(self, op: str, value: Any, where: str) -> None:
        if op in ("gt", "gte", "lt", "lte"):
            ok, wanted = is_number(value), "a number"
        elif op in ("in", "not_in"):
            ok = isinstance(value, list) and bool(value) and all(is_scalar(v) for v in value)
            wanted = "a non-empty list of strings, numbers or booleans"
        elif op == "matches":
            ok, wanted = isinstance(value, str), "a glob string"
        elif op == "exists":
            ok, wanted = isinstance(value, bool), "true or false"
        else:
            ok, wanted = is_scalar(value), "a string, number or boolean"
        if not ok:
            raise self.fail(where, f"op {op!r} needs {wanted}, got {value!r}")

    def chaining(self, value: Any) -> list[dict[str, Any]]:
        rules = self.sequence(value, "spec.chaining")
        out = []
        for c, raw in enumerate(rules):
            where = f"spec.chaining[{c}]"
            rule = self.mapping(raw, where)
            after = self.mapping(rule.get("after") or {}, f"{where}.after")
            level = after.get("sensitivity_at_least")
            if level is not None:
                self.choice(level, f"{where}.after.sensitivity_at_least", LEVELS)
            used = after.get("tools_used_any")
            if used is not None:
                for i, name in enumerate(self.strings(used, f"{where}.after.tools_used_any")):
                    self.tool_ref(name, f"{where}.after.tools_used_any[{i}]")
            deny = self.strings(rule.get("deny_tools"), f"{where}.deny_tools", non_empty=True)
            for i, name in enumerate(deny):
                self.tool_ref(name, f"{where}.deny_tools[{i}]")
            reason = rule.get("reason") or ""
            self.string(reason, f"{where}.reason")
            out.append(
                {
                    "after": {"sensitivity_at_least": level, "tools_used_any": used},
                    "deny_tools": deny,
                    "reason": reason,
                }
            )
        return out

    def tool_ref(self, name: str, where: str) -> None:
        try:
            check_tool_name(name, where)
        except CompileError as exc:
            raise CompileError(f"{self.label}: {exc}") from None

    def delegation(self, value: Any) -> dict[str, Any] | None:
        if value is None:
            return None
        delegation = self.mapping(value, "spec.delegation")
        return {
            "max_depth": self.integer(delegation.get("max_depth"), "spec.delegation.max_depth", 0),
            "agents": self.strings(delegation.get("agents") or [], "spec.delegation.agents"),
        }

    def break_glass(self, value: Any) -> dict[str, Any] | None:
        if value is None:
            return None
        glass = self.mapping(value, "spec.break_glass")
        allowed = glass.get("allowed")
        if not isinstance(allowed, bool):
            raise self.fail("spec.break_glass.allowed", f"must be true or false, got {allowed!r}")
        ttl = glass.get("max_ttl")
        if ttl is not None:
            self.integer(ttl, "spec.break_glass.max_ttl", 1)
        return {"allowed": allowed, "max_ttl": ttl}

    def examples(self, value: Any) -> list[dict[str, Any]]:
        examples = self.sequence(value, "spec.examples")
        out = []
        for e, raw in enumerate(examples):
            where = f"spec.examples[{e}]"
            example = self.mapping(raw, where)
            name = self.string(example.get("name"), f"{where}.name")
            request = self.mapping(example.get("request") or {}, f"{where}.request")
            self.json_value(request, f"{where}.request")
            expect = example.get("expect")
            if isinstance(expect, str):  # the YAML shorthand `expect: allow`
                expect = {"outcome": expect, "reasons": []}
            expect = self.mapping(expect, f"{where}.expect")
            outcome = self.choice(expect.get("outcome"), f"{where}.expect.outcome", OUTCOMES)
            reasons = self.strings(expect.get("reasons") or [], f"{where}.expect.reasons")
            for i, code in enumerate(reasons):
                self.choice(code, f"{where}.expect.reasons[{i}]", REASON_CODES)
            out.append(
                {
                    "name": name,
                    "request": request,
                    "expect": {"outcome": outcome, "reasons": reasons},
                }
            )
        return out

    def unicode(self, value: Any, where: str) -> None:
        """Every string must be encodable as UTF-8 (no lone surrogates from `\\udXXX` escapes):
        the bundle is UTF-8 text, and a revision hash needs bytes."""
        if isinstance(value, str):
            if SURROGATE.search(value):
                raise self.fail(where or "(document)", f"{value!r} is not valid Unicode")
        elif isinstance(value, Mapping):
            for key, item in value.items():
                self.unicode(key, where)
                self.unicode(item, f"{where}.{key}" if where else str(key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.unicode(item, f"{where}[{i}]")

    def json_value(self, value: Any, where: str) -> None:
        """Requests become Rego literals: only JSON types, string keys, finite numbers."""
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise self.fail(where, f"keys must be strings, got {key!r}")
                self.json_value(item, f"{where}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.json_value(item, f"{where}[{i}]")
        elif not (value is None or isinstance(value, (str, bool)) or is_number(value)):
            raise self.fail(where, f"not a JSON value: {value!r}")


def check_intent(intent: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the intent's dict as given, a checked copy with defaults filled in).

    The first is what the intent revision hashes; the second is what gets rendered.
    Raises CompileError when the intent is invalid.
    """
    # two documents: the checker normalizes its own (intent_document copies every time)
    return intent_document(intent), _Checker(intent_document(intent)).run()
