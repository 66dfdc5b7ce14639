"""The core's shortcut for the common case decides exactly as the full reason-building path.

core.decide skips building deny reasons when `all_clear` holds: one body that must hold exactly
when `violations` is empty (the core's own Rego tests assert that over a fixed corpus). Here the
decision served for each request is compared with `verdict(intent, violations(intent), ...)`,
the decision without the shortcut, on realistic and edge-case intents: the fixture intents, the
benchmark generator's (tool ceilings, escalations, chaining, delegation, environments) and
intents with degenerate lists, under every labelled scenario request and under hypothesis
mutations that move fields of those requests across the boundary of some check.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from compiler_helpers import intent, tool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aam_policy.compiler import baseline_request, compile_bundle
from aam_policy.compiler._rego import package_name
from aam_policy.engine import RegorusEngine, load_policy
from aam_policy.engine._regorus import build_engine
from aam_policy.intents import load_intents

generate = pytest.importorskip("benchmarks._generate", reason="benchmarks/ is only in a checkout")

REPO = Path(__file__).resolve().parent.parent
LEVELS = ["public", "internal", "confidential", "restricted"]
NOW = 1_767_225_600_000_000_000


def _edge_intents() -> list[dict[str, Any]]:
    both_null = {"after": {}, "deny_tools": ["crm.write_ticket"], "reason": "always closed"}
    never = {
        "after": {"sensitivity_at_least": None, "tools_used_any": []},
        "deny_tools": ["crm.read_ticket"],
    }
    public = {"after": {"sensitivity_at_least": "public"}, "deny_tools": ["crm.read_ticket"]}
    tools = [
        tool("crm.read_ticket", ["read"], "public"),
        tool("crm.write_ticket", ["write", "delete"], "restricted"),
    ]
    humans_only = {"human_roles": [], "humans": ["ann@example.com"], "groups": []}
    groups_only = {"human_roles": [], "humans": [], "groups": ["ops"]}
    agents = ["spiffe://example.org/agents/bot"]
    return [
        intent("edge-chains", tools, chaining=[both_null, never]),
        intent("edge-public-chain", tools, chaining=[public], environments=["prod"]),
        intent("edge-no-environment", tools, environments=[]),
        intent("edge-humans", tools, principals={**humans_only, "agents": agents}),
        intent("edge-groups", tools, principals={**groups_only, "agents": agents}),
        intent("edge-nobody", tools, principals={**groups_only, "groups": [], "agents": agents}),
    ]


# core.decide without its shortcut, put in place of it for the reference decision
_REFERENCE = """package aam.test_reference

import rego.v1

import data.aam.core

decide(intent, escalations) := core.verdict(intent, core.violations(intent), escalations)
"""


@cache
def _setup() -> tuple[RegorusEngine, Any, list[dict[str, Any]], list[dict[str, Any]]]:
    import tempfile

    generated = generate.generate_intents(24)
    fixtures = [
        item.intent.model_dump(mode="json", by_alias=True)
        for item in load_intents([REPO / "fixtures" / "intents"])
    ]
    docs = [*generate.docs(generated), *fixtures, *_edge_intents()]
    out = Path(tempfile.mkdtemp(prefix="aam-all-clear-")) / "bundle"
    compile_bundle(docs, out)
    policy = load_policy([out])
    requests = [r.input for r in generate.generate_requests(generated, 600)]
    for doc in docs[len(generated) :]:
        base = baseline_request(doc)
        base.setdefault("context", {})["time_ns"] = NOW
        base["session"]["expires_at_ns"] = NOW + 10**12
        requests.append(base)
    reference = build_engine(policy, tests=False)
    reference.add_policy("test_reference.rego", _REFERENCE)
    return RegorusEngine(policy), reference, docs, requests


ENGINE, CORE_ENGINE, DOCS, REQUESTS = _setup()
BY_ID = {doc["metadata"]["id"]: doc for doc in DOCS}


def _reference_decision(request: dict[str, Any]) -> Any:
    """The module's decision without the all_clear shortcut: every reason built."""
    module = f"data.aam.intents.{package_name(request['intent']['id'])}"
    CORE_ENGINE.set_input(request)
    found = json.loads(
        CORE_ENGINE.eval_query_as_json(
            f"{module}.decision with data.aam.core.decide as data.aam.test_reference.decide"
        )
    )["result"]
    return found[0]["expressions"][0]["value"] if found else None


def _same(request: dict[str, Any]) -> dict[str, Any]:
    decision = ENGINE.evaluate("aam/decision", request)
    assert decision == _reference_decision(request), request
    return decision


def test_scenario_requests_decide_as_without_the_shortcut() -> None:
    outcomes = [_same(request)["outcome"] for request in REQUESTS]
    # the shortcut's own case and every other outcome are exercised
    assert outcomes.count("allow") >= 200
    assert outcomes.count("deny") >= 100 and outcomes.count("escalate") >= 50


def test_edge_intents_decide_as_without_the_shortcut() -> None:
    edge = [r for r in REQUESTS if r["intent"]["id"].startswith("edge-")]
    decisions = {r["intent"]["id"]: _same(r) for r in edge}
    assert decisions["edge-humans"]["allow"] and decisions["edge-groups"]["allow"]
    assert not decisions["edge-nobody"]["allow"]
    assert not decisions["edge-no-environment"]["allow"]


def _mutations(doc: dict[str, Any]) -> st.SearchStrategy[tuple[tuple[str, ...], Any]]:
    spec = doc["spec"]
    tools = [t["name"] for t in spec["tools"]]
    tools += [name for rule in spec["chaining"] for name in rule["deny_tools"]]
    people = spec["principals"]
    agents = [*people["agents"], "spiffe://example.org/agents/stranger"]
    missing = st.just(...)  # delete the field
    choice = st.sampled_from
    return st.one_of(
        st.tuples(st.just(("data", "sensitivity")), choice([*LEVELS, "secret", None, 3, ...])),
        st.tuples(st.just(("action", "tool")), choice([*tools, "x.unknown", 1])),
        st.tuples(st.just(("action", "operation")), choice(["read", "write", "delete", "execute"])),
        st.tuples(
            st.just(("actor", "human", "roles")),
            st.one_of(
                st.lists(choice([*people["human_roles"], "other"]), max_size=2),
                choice(["data-analyst", None, ...]),
            ),
        ),
        st.tuples(
            st.just(("actor", "human", "groups")),
            st.one_of(st.lists(choice([*people["groups"], "other"]), max_size=2), missing),
        ),
        st.tuples(st.just(("actor", "human", "id")), choice([*people["humans"], "x@y", ...])),
        st.tuples(st.just(("session", "human")), choice([*people["humans"], "x@y"])),
        st.tuples(st.just(("actor", "agent", "id")), choice(agents)),
        st.tuples(st.just(("session", "agent")), choice(agents)),
        st.tuples(
            st.just(("action", "target", "environment")),
            choice([*(spec.get("environments") or []), "prod", "dev", None, ...]),
        ),
        st.tuples(
            st.just(("delegation",)),
            choice([[], ..., "hop", [{"agent": agents[0], "scopes": tools[:1]}], [{}]]),
        ),
        st.tuples(st.just(("session", "revoked")), choice([False, True, None, "false", ...])),
        st.tuples(st.just(("session", "intent")), choice([doc["metadata"]["id"], "other"])),
        st.tuples(
            st.just(("session", "expires_at_ns")),
            choice([NOW - 1, NOW, NOW + 1, NOW + 10**12, "soon", ...]),
        ),
        st.tuples(st.just(("context", "time_ns")), choice([NOW, NOW + 10**15, "now", ...])),
        st.tuples(
            st.just(("session", "actions_used")),
            choice(
                [
                    0,
                    spec["session"]["max_actions"] - 1,
                    spec["session"]["max_actions"],
                    None,
                    "1",
                    ...,
                ]
            ),
        ),
        st.tuples(
            st.just(("session", "tools_used")),
            st.one_of(st.lists(choice(tools), max_size=3), choice(["x", None, ...])),
        ),
        st.tuples(
            st.just(("session", "max_sensitivity_seen")),
            choice([*LEVELS, "secret", None, ...]),
        ),
        st.tuples(st.just(("session",)), choice(["none", None, ...])),
    )


def _apply(request: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    parent: Any = request
    for key in path[:-1]:
        if not isinstance(parent.get(key), dict):
            parent[key] = {}
        parent = parent[key]
    if value is ...:
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = copy.deepcopy(value)


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    request = copy.deepcopy(draw(st.sampled_from(REQUESTS)))
    doc = BY_ID[request["intent"]["id"]]
    for path, value in draw(st.lists(_mutations(doc), min_size=1, max_size=3)):
        _apply(request, path, value)
    return request


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_requests_decide_as_without_the_shortcut(request: dict[str, Any]) -> None:
    _same(request)
