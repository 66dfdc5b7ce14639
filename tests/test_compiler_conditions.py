"""Conditions compiled to Rego evaluate as documented, for every op, on present, mismatched
and missing fields, and nested under all / any / not.

Each case is an escalate rule of one intent; the test evaluates the intent's compiled
`escalations` with the embedded engine and checks which rules fired. A seeded random
comparison against a small Python reference evaluator covers deep combinations.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from compiler_helpers import DecisionLocals, compile_engine, intent, rule, tool

from aam_policy.compiler import CompileError, baseline_request, compile_bundle, merge_request
from aam_policy.engine import RegorusEngine

MISSING = object()
FIELD = "action.parameters.v"

# (op, value, [values that hold], [present values that do not hold])
LEAVES: list[tuple[str, Any, list[Any], list[Any]]] = [
    ("eq", "a", ["a"], ["b", "A", 1, None, ["a"], {"a": 1}]),
    ("eq", 5, [5, 5.0], [6, "5", True]),
    ("eq", True, [True], [False, 1, "true"]),
    ("eq", 'x"} else := true {', ['x"} else := true {'], ["x", 'x"} else := true { ']),
    ("ne", "a", ["b", 1, None, ["a"]], ["a"]),
    ("ne", 0, [1, "0", False], [0, 0.0]),
    ("gt", 10, [11, 10.5, 1e9], [10, 9, "11", True, None, [11]]),
    ("gte", 10, [10, 10.0, 11], [9.99, "10", False]),
    ("lt", 10, [9, -1, 9.99], [10, 11, "1", None]),
    ("lte", 10, [10, -3], [10.01, "1", True]),
    ("lt", -2.5, [-3], [-2.5, 0]),
    ("in", ["a", 2, True], ["a", 2, 2.0, True], ["b", 3, False, "2", None, ["a"]]),
    ("not_in", ["a", "b"], ["c", 1, None, ["a"]], ["a", "b"]),
    ("contains", "pii", [["x", "pii"], "has pii inside", "pii"], [["x"], "nope", [], 5, {}]),
    ("contains", 3, [[1, 3], [3.0]], [[1], "3", ["3"]]),
    ("contains", False, [[False]], [[0], [None], []]),
    ("matches", "*@example.com", ["a@example.com", "@example.com"], ["a@example.org", 5]),
    ("matches", "a.b", ["a.b"], ["axb", "a.bc", 5, ["a.b"]]),
    # one leaf per way a glob is compiled (glob_test): prefix, infix, any, and the regex forms
    ("matches", "img/*", ["img/", "img/a\nb*"], ["im", "Img/x", " img/x", 5, None, ["img/a"]]),
    ("matches", "**/secrets/**", ["/secrets/", "a/secrets/b\n"], ["/secret/", "/SECRETS/", 1]),
    ("matches", "*", ["", "x\ny"], [5, None, False, ["x"], {"x": 1}]),
    ("matches", "a*b", ["ab", "axxb", "a\nb"], ["a", "b", "ba", "aba!", 7]),
    ("matches", "*a*b*", ["ab", "xaxbx"], ["ba", "b a", 3]),
    ("exists", True, ["x", 0, False, None, [], {}], []),
]


def _rules_and_cases() -> tuple[list[dict[str, Any]], list[tuple[int, Any, bool]]]:
    """Escalate rules (one per leaf case) and (rule index, field value, expected) triples."""
    rules: list[dict[str, Any]] = []
    cases: list[tuple[int, Any, bool]] = []
    for op, value, hits, misses in LEAVES:
        index = len(rules)
        rules.append(rule({"field": FIELD, "op": op, "value": value}))
        cases += [(index, v, True) for v in hits]
        cases += [(index, v, False) for v in misses]
        cases.append((index, MISSING, False))  # a condition on a missing field is false
        # ... so `not` of it is true, and `not` flips every present value
        negated = len(rules)
        rules.append(rule({"not": {"field": FIELD, "op": op, "value": value}}))
        cases += [(negated, v, False) for v in hits]
        cases += [(negated, v, True) for v in misses]
        cases.append((negated, MISSING, True))
    absent = len(rules)
    rules.append(rule({"field": FIELD, "op": "exists", "value": False}))
    cases += [(absent, v, False) for v in ["x", 0, False, None]] + [(absent, MISSING, True)]
    return rules, cases


def _request(base: dict[str, Any], value: Any) -> dict[str, Any]:
    request = merge_request(base, {"action": {"tool": "t.x", "operation": "read"}})
    if value is not MISSING:
        request["action"]["parameters"]["v"] = value
    return request


def _fired(engine: RegorusEngine, request: dict[str, Any]) -> set[int]:
    found = DecisionLocals.of(engine).escalations("demo_intent", request)
    assert isinstance(found, list), found
    return {item["rule"] for item in found}


def test_every_op_true_false_and_missing(tmp_path: Path) -> None:
    rules, cases = _rules_and_cases()
    doc = intent(tools=[tool("t.x", escalate=rules)])
    engine, _ = compile_engine(tmp_path, [doc])
    base = baseline_request(doc)
    failures = []
    for value in {repr(v): v for _, v, _ in cases}.values():
        fired = _fired(engine, _request(base, value))
        for index, case_value, expected in cases:
            if repr(case_value) == repr(value) and (index in fired) != expected:
                failures.append((rules[index]["when"], value, expected))
    assert failures == []


def test_combinators(tmp_path: Path) -> None:
    a = {"field": "action.parameters.a", "op": "eq", "value": 1}
    b = {"field": "action.parameters.b", "op": "eq", "value": 1}
    rules = [
        rule({"all": [a, b]}),
        rule({"any": [a, b]}),
        rule({"not": {"all": [a, b]}}),
        rule({"not": {"any": [a, b]}}),
        rule({"all": [a, {"not": b}]}),
        rule({"any": [{"all": [a, b]}, {"not": {"any": [a, b]}}]}),  # a == b (xnor)
        rule({"not": {"not": a}}),
        rule(None),  # no `when`: always escalates its tool
    ]
    doc = intent(tools=[tool("t.x", escalate=rules)])
    engine, _ = compile_engine(tmp_path, [doc])
    base = baseline_request(doc)
    table = {
        (1, 1): {0, 1, 5, 6, 7},
        (1, 0): {1, 2, 4, 6, 7},
        (0, 1): {1, 2, 7},
        (0, 0): {2, 3, 5, 7},
    }
    for (va, vb), expected in table.items():
        params = {"a": va, "b": vb}
        request = merge_request(base, {"action": {"tool": "t.x", "parameters": params}})
        assert _fired(engine, request) == expected, (va, vb)
    # missing fields: `not` makes them true
    request = merge_request(base, {"action": {"tool": "t.x"}})
    assert _fired(engine, request) == {2, 3, 5, 7}
    # a rule only applies to its own tool
    other = merge_request(base, {"action": {"tool": "t.other", "parameters": {"a": 1, "b": 1}}})
    assert _fired(engine, other) == set()


def test_paths_into_every_root_and_keyword_segments(tmp_path: Path) -> None:
    leaves = [
        {"field": "actor.human.id", "op": "matches", "value": "*@example.com"},
        {"field": "actor.human.roles", "op": "contains", "value": "support-agent"},
        {"field": "action.target.environment", "op": "in", "value": ["staging"]},
        {"field": "data.sensitivity", "op": "eq", "value": "public"},
        {"field": "session.actions_used", "op": "lt", "value": 1},
        {"field": "context.break_glass", "op": "exists", "value": True},  # null is present
        {"field": "delegation", "op": "exists", "value": True},
        {"field": "action.parameters.if", "op": "eq", "value": "kw"},
        {"field": "action.parameters.else.import", "op": "eq", "value": "kw"},
        {"field": "action.parameters.package", "op": "exists", "value": False},
    ]
    doc = intent(tools=[tool("crm.read_ticket", escalate=[rule(c) for c in leaves])])
    engine, _ = compile_engine(tmp_path, [doc])
    params = {"if": "kw", "else": {"import": "kw"}}
    request = merge_request(baseline_request(doc), {"action": {"parameters": params}})
    assert _fired(engine, request) == set(range(len(leaves)))


# --- random trees against a reference evaluator -----------------------------------------------


def _leaf_holds(cond: dict[str, Any], params: dict[str, Any]) -> bool:
    name = cond["field"].rsplit(".", 1)[1]
    if name not in params:
        return cond["op"] == "exists" and cond["value"] is False
    v, want, op = params[name], cond["value"], cond["op"]

    def num(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    def same(x: Any, y: Any) -> bool:  # Rego equality: 1 == 1.0, but true != 1
        if num(x) and num(y):
            return x == y
        return type(x) is type(y) and x == y

    if op == "eq":
        return same(v, want)
    if op == "ne":
        return not same(v, want)
    if op in ("gt", "gte", "lt", "lte"):
        if not num(v):
            return False
        return {"gt": v > want, "gte": v >= want, "lt": v < want, "lte": v <= want}[op]
    if op == "in":
        return any(same(v, w) for w in want)
    if op == "not_in":
        return not any(same(v, w) for w in want)
    if op == "contains":
        if isinstance(v, list):
            return any(same(item, want) for item in v)
        return isinstance(v, str) and isinstance(want, str) and want in v
    if op == "matches":
        pattern = ".*".join(re.escape(part) for part in want.split("*"))
        return isinstance(v, str) and re.fullmatch(pattern, v, re.DOTALL) is not None
    if op == "exists":
        return want is True
    raise AssertionError(op)


def _holds(cond: dict[str, Any], params: dict[str, Any]) -> bool:
    if "all" in cond:
        return all(_holds(c, params) for c in cond["all"])
    if "any" in cond:
        return any(_holds(c, params) for c in cond["any"])
    if "not" in cond:
        return not _holds(cond["not"], params)
    return _leaf_holds(cond, params)


_RANDOM_LEAVES = [
    ("p", "eq", "x"),
    ("p", "ne", "y"),
    ("p", "in", ["x", "z"]),
    ("p", "not_in", ["z"]),
    ("p", "matches", "x*"),
    ("n", "gt", 3),
    ("n", "lte", 5),
    ("n", "eq", 4),
    ("n", "not_in", [1, 2]),
    ("l", "contains", "k"),
    ("l", "exists", True),
    ("q", "exists", False),
]
_VALUES = {"p": ["x", "xy", "z", "y", 7], "n": [1, 4, 5, 9, "4"], "l": [["k"], ["j"], "kk", []]}


def _random_tree(rng: random.Random, depth: int) -> dict[str, Any]:
    if depth == 0 or rng.random() < 0.3:
        name, op, value = rng.choice(_RANDOM_LEAVES)
        return {"field": f"action.parameters.{name}", "op": op, "value": value}
    kind = rng.choice(["all", "any", "not"])
    if kind == "not":
        return {"not": _random_tree(rng, depth - 1)}
    return {kind: [_random_tree(rng, depth - 1) for _ in range(rng.randint(1, 3))]}


def _random_params(rng: random.Random) -> dict[str, Any]:
    params = {}
    for name, choices in _VALUES.items():
        if rng.random() < 0.8:  # sometimes missing
            params[name] = rng.choice(choices)
    if rng.random() < 0.3:
        params["q"] = None
    return params


def test_random_trees_match_the_reference(tmp_path: Path) -> None:
    rng = random.Random(20260101)
    trees = [_random_tree(rng, 4) for _ in range(60)]
    doc = intent(tools=[tool("t.x", escalate=[rule(t) for t in trees])])
    engine, _ = compile_engine(tmp_path, [doc])
    base = baseline_request(doc)
    for _ in range(40):
        params = _random_params(rng)
        request = merge_request(base, {"action": {"tool": "t.x", "parameters": params}})
        expected = {i for i, tree in enumerate(trees) if _holds(tree, params)}
        assert _fired(engine, request) == expected, params


def test_helper_rules_are_numbered_per_rule_innermost_first(tmp_path: Path) -> None:
    a = {"field": "action.parameters.a", "op": "eq", "value": 1}
    when = {
        "any": [a, {"not": a}, {"all": [a, {"field": "data.x", "op": "exists", "value": False}]}]
    }
    doc = intent(tools=[tool("t.x", escalate=[rule(a), rule(when)])])
    bundle = compile_bundle([doc], tmp_path / "b")
    module = bundle.files["aam/intents/demo_intent.rego"].decode()
    heads = [line.split(" ")[0] for line in module.splitlines() if line.startswith("cond_")]
    assert heads == [  # rule 0 is one body: inlined, no helper
        "cond_0_1_0",  # a
        "cond_0_1_1",  # not a
        "cond_0_1_2",  # present
        "cond_0_1_3",  # exists false = not present
        "cond_0_1_4",  # all [a, exists false]
        "cond_0_1_5",  # any: one body per branch
        "cond_0_1_5",
        "cond_0_1_5",
    ]
    # where the escalate rule is decided: rule 0's condition inline, rule 1's by reference
    assert '\t\t\tinput.action.tool == "t.x"\n\t\t\tinput.action.parameters.a == 1\n\t}' in module
    assert '\t\t\tinput.action.tool == "t.x"\n\t\t\tcond_0_1_5\n\t}' in module


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ({"field": FIELD, "op": "gt", "value": "10"}, "needs a number"),
        ({"field": FIELD, "op": "gt", "value": True}, "needs a number"),
        ({"field": FIELD, "op": "lt", "value": float("nan")}, "needs a number"),
        ({"field": FIELD, "op": "in", "value": []}, "non-empty list"),
        ({"field": FIELD, "op": "in", "value": "abc"}, "non-empty list"),
        ({"field": FIELD, "op": "not_in", "value": [["nested"]]}, "non-empty list"),
        ({"field": FIELD, "op": "matches", "value": 5}, "glob string"),
        ({"field": FIELD, "op": "exists", "value": "yes"}, "true or false"),
        ({"field": FIELD, "op": "eq", "value": None}, "string, number or boolean"),
        ({"field": FIELD, "op": "contains", "value": {"a": 1}}, "string, number or boolean"),
        ({"field": FIELD, "op": "like", "value": "x"}, "must be one of"),
        ({"field": FIELD, "op": "eq"}, "needs a value"),
        ({"field": "input.action", "op": "eq", "value": 1}, "must start with"),
        ({"field": "action.x\n", "op": "eq", "value": 1}, "invalid segment"),
        ({"all": []}, "must not be empty"),
        ({"any": [{"field": FIELD, "op": "eq", "value": 1}], "not": {}}, "exactly one"),
        ({"field": FIELD, "op": "eq", "value": 1, "extra": 2}, "unexpected keys"),
        ({"not": "text"}, "must be a mapping"),
    ],
)
def test_bad_conditions_are_compile_errors(
    tmp_path: Path, when: dict[str, Any], message: str
) -> None:
    doc = intent(tools=[tool("t.x", escalate=[rule(when)])])
    with pytest.raises(CompileError, match=message) as info:
        compile_bundle([doc], tmp_path / "b")
    assert "intent 'demo-intent': spec.tools[0].escalate[0].when" in str(info.value)
    assert not (tmp_path / "b").exists()


def test_too_deep_conditions_are_compile_errors(tmp_path: Path) -> None:
    when: dict[str, Any] = {"field": FIELD, "op": "exists", "value": True}
    for _ in range(40):
        when = {"not": when}
    doc = intent(tools=[tool("t.x", escalate=[rule(when)])])
    with pytest.raises(CompileError, match="nest deeper"):
        compile_bundle([doc], tmp_path / "b")
