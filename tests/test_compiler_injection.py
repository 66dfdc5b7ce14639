"""Hostile text in every string field of an intent compiles to Rego that evaluates as intended.

Quotes, backslashes, newlines, braces, Rego keywords (`else`, `import`, `package`), comment
markers, Jinja syntax, bidi overrides and emoji go into descriptions, reasons, approver names,
agent ids, roles, tool lists, environments, condition values, example names and requests. The
bundle must load, its generated tests must pass, and every string must come back unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from compiler_helpers import DecisionLocals, compile_engine, example, intent, rule, tool

from aam_policy.compiler import CompileError, baseline_request, compile_bundle, merge_request
from aam_policy.engine import RegorusEngine, load_policy

EVIL = '"} else := true {\n}\nimport data.secrets\npackage evil\n# \\" \' ` {{ x }} {% if %}'
# what the compiler's revision stamp looks for, raw and escaped, in free text
STAMP = '"bundle_revision":"" \\"bundle_revision\\":\\"\\"'
UNI = "caf\u00e9 \U0001f600 \u202eevil\u202c \u2028 \U0001f469\u200d\U0001f4bb"
AGENT_ID = 'spiffe://example.org/agents/"} else := true { \\ # \U0001f916'
PLANNER = "spiffe://example.org/agents/planner \u00e9 } import"
EQ_VALUE = '"} else := true {'
# approver names and agent ids may not hold control characters (newlines); all else goes
APPROVER = "role:\"} else := true { import data.x package evil # \\ ' ` {{ x }} \U0001f600"


def _hostile() -> dict[str, Any]:
    doc = intent(
        "hostile-intent",
        tools=[
            tool(
                "crm.read_ticket",
                escalate=[
                    rule(
                        {"field": "action.parameters.note", "op": "eq", "value": EQ_VALUE},
                        [APPROVER, "user:" + UNI],
                        "reason " + EVIL + UNI + STAMP,
                        300,
                    ),
                    rule(
                        {
                            "any": [
                                {
                                    "field": "action.parameters.tag",
                                    "op": "in",
                                    "value": [EVIL, UNI],
                                },
                                {"field": "data.categories", "op": "contains", "value": EVIL},
                                {"field": "actor.human.id", "op": "matches", "value": "*" + EVIL},
                            ]
                        },
                        ["role:second"],
                        UNI,
                    ),
                    rule(  # fires iff `safe` is present and equal to UNI
                        {
                            "all": [
                                {"field": "action.parameters.safe", "op": "exists", "value": True},
                                {
                                    "not": {
                                        "field": "action.parameters.safe",
                                        "op": "ne",
                                        "value": UNI,
                                    }
                                },
                            ]
                        },
                        ["role:third"],
                        "third",
                    ),
                ],
            )
        ],
        principals={
            "human_roles": ["role " + EVIL, UNI],
            "humans": ["human " + UNI],
            "groups": [EVIL],
            "agents": [AGENT_ID],
        },
        environments=["prod " + EVIL, UNI],
        chaining=[
            {
                "after": {"sensitivity_at_least": None, "tools_used_any": ["crm.read_ticket"]},
                "deny_tools": ["email.send_external"],
                "reason": STAMP + EVIL + UNI,
            }
        ],
        delegation={"max_depth": 1, "agents": [PLANNER]},
        break_glass={"allowed": True, "max_ttl": 60},
    )
    doc["metadata"]["owner"] = "owner " + EVIL
    doc["metadata"]["description"] = "description " + EVIL + UNI
    doc["metadata"]["standards"] = [EVIL, UNI]
    doc["spec"]["examples"] = [
        example(EVIL, {"action": {"parameters": {"note": "harmless " + EVIL}}}, "allow"),
        example(
            UNI, {"action": {"parameters": {"note": EQ_VALUE}}}, "escalate", "escalation_required"
        ),
        example(EVIL, {"action": {"parameters": {"tag": UNI}}}, "escalate"),
        example(
            "} else {",
            {
                "data": {"categories": ["x", EVIL]},
                "actor": {"human": {"id": "x" + EVIL}},
                "session": {"human": "x" + EVIL},
            },
            "escalate",
        ),
        example(
            "delegated " + UNI,
            {"delegation": [{"agent": PLANNER, "scopes": ["crm.read_ticket"]}]},
            "allow",
        ),
        example(
            "a drifted tool " + EVIL,
            {"action": {"tool": "email.send_external"}},
            "deny",
            "tool_not_in_intent",
        ),
        example("safe equals " + UNI, {"action": {"parameters": {"safe": UNI}}}, "escalate"),
    ]
    return doc


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[RegorusEngine, Path, dict]:
    tmp = tmp_path_factory.mktemp("hostile")
    doc = _hostile()
    engine, out = compile_engine(tmp, [doc])
    return engine, out, doc


def test_generated_tests_pass(compiled: tuple[RegorusEngine, Path, dict]) -> None:
    _, out, doc = compiled
    report = RegorusEngine(load_policy([out])).run_tests()
    assert report.total == len(doc["spec"]["examples"])
    assert report.failed == 0, [(r.name, r.status, r.message) for r in report.results]


def test_registry_strings_round_trip(compiled: tuple[RegorusEngine, Path, dict]) -> None:
    engine, _, doc = compiled
    entry = engine.evaluate("data.aam.registry")["hostile-intent"]
    assert entry["owner"] == "owner " + EVIL
    assert entry["principals"] == doc["spec"]["principals"]
    assert entry["environments"] == ["prod " + EVIL, UNI]
    assert entry["chaining"][0]["reason"] == STAMP + EVIL + UNI
    assert entry["delegation"]["agents"] == [PLANNER]


def test_the_module_entry_is_the_registry_entry_stamped_with_the_revision(
    compiled: tuple[RegorusEngine, Path, dict],
) -> None:
    engine, _, _ = compiled
    entry = engine.evaluate("data.aam.registry")["hostile-intent"]
    module_entry = DecisionLocals.of(engine).entry("hostile_intent", baseline_request(_hostile()))
    assert engine.revision and module_entry == {**entry, "bundle_revision": engine.revision}
    decision = engine.evaluate("aam/decision", baseline_request(_hostile()))
    assert decision["policy"]["revision"] == engine.revision


def test_eq_matches_only_the_exact_string(compiled: tuple[RegorusEngine, Path, dict]) -> None:
    engine, _, doc = compiled
    base = baseline_request(doc)
    near_misses = [
        EQ_VALUE + " ",
        " " + EQ_VALUE,
        EQ_VALUE[:-1],
        EQ_VALUE + "\n",
        EQ_VALUE.replace('"', "'"),
        '\\"} else := true {',
        "",
        True,
        None,
    ]
    for value in [EQ_VALUE, *near_misses]:
        request = merge_request(base, {"action": {"parameters": {"note": value}}})
        fired = DecisionLocals.of(engine).escalations("hostile_intent", request)
        rules = {item["rule"] for item in fired}
        assert (0 in rules) == (value == EQ_VALUE), value
    # without the field nothing is injected into being true either
    assert DecisionLocals.of(engine).escalations("hostile_intent", base) == []


def test_escalation_text_reaches_the_decision(compiled: tuple[RegorusEngine, Path, dict]) -> None:
    engine, _, doc = compiled
    request = merge_request(baseline_request(doc), {"action": {"parameters": {"note": EQ_VALUE}}})
    decision = engine.evaluate("aam/decision", request)
    assert decision["outcome"] == "escalate"
    assert decision["reasons"] == [
        {"code": "escalation_required", "message": "reason " + EVIL + UNI + STAMP}
    ]
    assert decision["escalation"]["approvers"] == sorted([APPROVER, "user:" + UNI])
    assert decision["escalation"]["approval_ttl_seconds"] == 300


def test_glob_and_in_and_contains_with_hostile_values(
    compiled: tuple[RegorusEngine, Path, dict],
) -> None:
    engine, _, doc = compiled
    base = baseline_request(doc)

    def second_rule(patch: dict[str, Any]) -> bool:
        request = merge_request(base, patch)
        fired = DecisionLocals.of(engine).escalations("hostile_intent", request)
        return 1 in {item["rule"] for item in fired}

    assert second_rule({"action": {"parameters": {"tag": EVIL}}})
    assert not second_rule({"action": {"parameters": {"tag": EVIL + "x"}}})
    assert second_rule({"data": {"categories": [EVIL]}})
    assert not second_rule({"data": {"categories": [EVIL[:-1]]}})
    assert second_rule({"actor": {"human": {"id": "anything\nat all" + EVIL}}})
    assert not second_rule({"actor": {"human": {"id": EVIL + "x"}}})


def test_no_raw_hostile_text_in_the_rego(compiled: tuple[RegorusEngine, Path, dict]) -> None:
    _, out, _ = compiled
    for path in [
        *out.joinpath("aam", "intents").iterdir(),
        *out.joinpath("aam", "tests").iterdir(),
    ]:
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        # the only package/import lines are the generated ones
        assert [line for line in lines if line.startswith("package ")] == [lines[2]]
        imports = [line for line in lines if line.startswith("import ")]
        assert set(imports) <= {"import rego.v1", "import data.aam.core"}
        assert "\u202e" not in text and "\u2028" not in text  # escaped, so visible
        assert "\U0001f600" in text  # ordinary unicode stays readable


def test_hostile_ids_and_paths_are_errors_not_escaped(tmp_path: Path) -> None:
    cases: list[tuple[str, Any]] = [
        ("metadata.id", 'x" } else := true { "'),
        ("tool", "crm.read_ticket\n} else := true {"),
        ("deny_tool", "email.send_external\n"),
        ("field", "action.parameters.note\n"),
        ("approver", "manager"),
        ("approver", "role:x\nimport data.y"),
        ("agent", "spiffe://x\n"),
        ("example request", {"k": float("inf")}),
    ]
    for kind, value in cases:
        doc = _hostile()
        if kind == "metadata.id":
            doc["metadata"]["id"] = value
        elif kind == "tool":
            doc["spec"]["tools"][0]["name"] = value
        elif kind == "deny_tool":
            doc["spec"]["chaining"][0]["deny_tools"] = [value]
        elif kind == "field":
            doc["spec"]["tools"][0]["escalate"][0]["when"]["field"] = value
        elif kind == "approver":
            doc["spec"]["tools"][0]["escalate"][0]["approvers"] = [value]
        elif kind == "agent":
            doc["spec"]["principals"]["agents"] = [value]
        else:
            doc["spec"]["examples"][0]["request"] = value
        with pytest.raises(CompileError):
            compile_bundle([doc], tmp_path / "b")
        assert not (tmp_path / "b").exists(), kind


def test_lone_surrogate_is_an_error(tmp_path: Path) -> None:
    doc = _hostile()
    doc["metadata"]["description"] = "broken \udc00"
    with pytest.raises(CompileError):
        compile_bundle([doc], tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_data_json_is_utf8_json(compiled: tuple[RegorusEngine, Path, dict]) -> None:
    _, out, _ = compiled
    data = json.loads((out / "data.json").read_text(encoding="utf-8"))
    assert data["aam"]["registry"]["hostile-intent"]["principals"]["agents"] == [AGENT_ID]
    assert UNI in (out / "data.json").read_text(encoding="utf-8")  # raw UTF-8, not \u escapes
