"""Property: arbitrary mutations of valid requests never crash the engine, always give a
well-formed decision, and never allow what the fail-safe rules forbid.

Requests start from the fixture intents' baseline requests and get 1-4 mutations: a key
deleted, or any key (existing or new, at any depth) set to JSON-ish garbage (nulls, huge
numbers, unicode, nested lists and objects), or the tool renamed. No input may make the
engine raise: a wrongly typed field must still end in a decision.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from aam_policy.compiler import baseline_request, compile_bundle
from aam_policy.engine import RegorusEngine, load_policy
from aam_policy.intents import load_intents

REPO = Path(__file__).resolve().parent.parent
SETTINGS = settings(
    max_examples=1500,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow],
)


@cache
def _setup() -> tuple[RegorusEngine, dict[str, Any], list[dict[str, Any]]]:
    import tempfile

    models = [item.intent for item in load_intents([REPO / "fixtures" / "intents"])]
    out = Path(tempfile.mkdtemp(prefix="aam-props-")) / "bundle"
    compile_bundle(models, out)
    intents = {m.metadata.id: m.model_dump(mode="json", by_alias=True) for m in models}
    return RegorusEngine(load_policy([out])), intents, [baseline_request(m) for m in models]


ENGINE, INTENTS, BASELINES = _setup()
ALL_TOOLS = sorted({t["name"] for doc in INTENTS.values() for t in doc["spec"]["tools"]})

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
garbage = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    request = copy.deepcopy(draw(st.sampled_from(BASELINES)))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(request)
        kind = draw(st.sampled_from(["delete", "set", "set", "add", "tool", "session"]))
        if kind == "tool":
            request.setdefault("action", {})
            if isinstance(request["action"], dict):
                request["action"]["tool"] = draw(st.one_of(st.sampled_from(ALL_TOOLS), _text))
            continue
        if kind == "session":
            request.pop("session", None) if draw(st.booleans()) else request.update(
                session=draw(garbage)
            )
            continue
        if not paths:
            request[draw(_text)] = draw(garbage)
            continue
        path = draw(st.sampled_from(paths))
        parent: Any = request
        for key in path[:-1]:
            parent = parent[key]
        if kind == "delete":
            del parent[path[-1]]
        elif kind == "set":
            parent[path[-1]] = draw(garbage)
        else:  # a new key next to an existing one
            target = parent[path[-1]]
            if isinstance(target, dict):
                target[draw(_text)] = draw(garbage)
            else:
                parent[path[-1]] = draw(garbage)
    return request


def _get(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _check(decision: Any) -> None:
    assert isinstance(decision, dict), decision
    assert decision["outcome"] in ("allow", "deny", "escalate")
    assert decision["allow"] is (decision["outcome"] == "allow")
    codes = [reason["code"] for reason in decision["reasons"]]
    assert all(isinstance(code, str) for code in codes)
    assert codes == sorted(codes)
    assert (decision["escalation"] is None) == (decision["outcome"] != "escalate")
    if decision["outcome"] == "deny":
        assert codes, "a deny names its reasons"


@SETTINGS
@given(requests())
def test_mutated_requests_get_a_well_formed_decision_and_fail_safe(
    request: dict[str, Any],
) -> None:
    decision = ENGINE.evaluate("aam/decision", request)
    _check(decision)
    if not decision["allow"]:
        return
    # fail-safe: an allow needs a known intent, a session, the intent's tool and operation
    intent = INTENTS.get(_get(request, "intent", "id"))  # type: ignore[arg-type]
    assert intent is not None, "allowed without a known intent"
    assert isinstance(request.get("session"), dict), "allowed without a session"
    tools = {t["name"]: t for t in intent["spec"]["tools"]}
    tool = _get(request, "action", "tool")
    assert isinstance(tool, str) and tool in tools, f"allowed tool {tool!r} outside the intent"
    assert _get(request, "action", "operation") in tools[tool]["operations"]
    assert _get(request, "actor", "agent", "id") in intent["spec"]["principals"]["agents"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(BASELINES), st.one_of(st.none(), garbage.filter(lambda v: v != {})))
def test_no_session_is_never_allowed(base: dict[str, Any], session: Any) -> None:
    request = copy.deepcopy(base)
    if session is None:
        del request["session"]
    else:
        request["session"] = session
    decision = ENGINE.evaluate("aam/decision", request)
    _check(decision)
    assert not decision["allow"]
    if not isinstance(session, dict):
        assert "session_missing" in [r["code"] for r in decision["reasons"]]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(BASELINES), st.one_of(_text, garbage))
def test_a_tool_outside_the_intent_is_denied(base: dict[str, Any], tool: Any) -> None:
    intent = INTENTS[base["intent"]["id"]]
    if isinstance(tool, str) and tool in {t["name"] for t in intent["spec"]["tools"]}:
        return
    request = copy.deepcopy(base)
    request["action"]["tool"] = tool
    decision = ENGINE.evaluate("aam/decision", request)
    _check(decision)
    assert decision["outcome"] == "deny"
    assert "tool_not_in_intent" in [r["code"] for r in decision["reasons"]]


@pytest.mark.parametrize("field", ["roles", "groups"])
def test_a_string_where_a_list_of_roles_belongs_is_denied_not_an_error(field: str) -> None:
    # the support intent admits humans by role only, so a role list that is not a list
    # admits nobody
    base = next(b for b in BASELINES if b["intent"]["id"] == "resolve-support-ticket")
    request = copy.deepcopy(base)
    request["actor"]["human"]["roles"] = "support-agent"
    request["actor"]["human"][field] = "support-agent"
    decision = ENGINE.evaluate("aam/decision", request)
    _check(decision)
    assert decision["outcome"] == "deny"
    assert "principal_not_allowed" in [r["code"] for r in decision["reasons"]]


@pytest.mark.parametrize("sensitivity", [None, "secret", "RESTRICTED", 3, ["public"]])
def test_an_unknown_sensitivity_is_not_allowed_under_a_ceiling(sensitivity: Any) -> None:
    base = next(
        b
        for b in BASELINES
        if INTENTS[b["intent"]["id"]]["spec"]["tools"][0]["max_sensitivity"] != "restricted"
    )
    assert ENGINE.evaluate("aam/decision", base)["allow"], "the baseline itself is allowed"
    request = copy.deepcopy(base)
    if sensitivity is None:
        del request["data"]["sensitivity"]
    else:
        request["data"]["sensitivity"] = sensitivity
    decision = ENGINE.evaluate("aam/decision", request)
    _check(decision)
    assert not decision["allow"]
