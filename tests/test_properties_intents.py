"""Property: any schema-valid intent template survives the YAML round trip, compiles, loads into
the embedded engine, and its generated tests pass for examples whose outcome is obvious.

Hypothesis builds intents in the authoring format (durations as text, `expect` shorthands,
nested all/any/not conditions over valid field paths with type-correct values, chaining,
delegation, break-glass). Examples are only those whose expectation follows from the intent
without evaluating it: the baseline request (allow / escalate / deny worked out from the first
tool), a tool outside the intent, no session, an operation or a sensitivity the tool does not
permit, and break-glass over an unconditional escalation.
"""

from __future__ import annotations

import string
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from aam_policy.compiler import baseline_request, compile_bundle
from aam_policy.engine import RegorusEngine, load_policy
from aam_policy.intents import load_intent_text
from aam_policy.intents._patterns import LEVELS, OPERATIONS

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_LOWER = string.ascii_lowercase
_IDENT = st.text(_LOWER, min_size=1, max_size=6)
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=20
)  # free text: unicode, quotes, backslashes, braces — it must reach Rego escaped
_SAFE_TEXT = _TEXT.filter(lambda s: s.strip() == s and s != "")

intent_ids = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}\Z")
tool_names = st.builds(
    lambda parts: ".".join(parts),
    st.lists(st.from_regex(r"\A[a-z][a-z0-9_]{0,7}\Z"), min_size=1, max_size=3),
)
durations = st.one_of(
    st.integers(1, 86_400),
    st.sampled_from(["90s", "10m", "1h", "1h30m", "2d", "45s"]),
)
levels = st.sampled_from(LEVELS)
scalars = st.one_of(
    st.integers(-(10**9), 10**9),
    st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False),
    st.booleans(),
    _TEXT,
)
field_paths = st.one_of(
    st.sampled_from(
        [
            "action.parameters.amount",
            "action.parameters.currency",
            "action.target.environment",
            "action.target.resource",
            "action.operation",
            "data.sensitivity",
            "data.categories",
            "actor.human.roles",
            "actor.agent.kind",
            "session.actions_used",
            "context.time_ns",
            "delegation",
        ]
    ),
    st.builds(
        lambda root, rest: ".".join([root, *rest]),
        st.sampled_from(["actor", "action", "data", "session", "context", "delegation"]),
        st.lists(st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,6}\Z"), max_size=3),
    ),
)


@st.composite
def leaf_conditions(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(
        st.sampled_from(
            ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "matches", "exists"]
        )
    )
    if op in ("gt", "gte", "lt", "lte"):
        value: Any = draw(st.one_of(st.integers(-(10**12), 10**12), st.floats(-1e6, 1e6)))
    elif op in ("in", "not_in"):
        value = draw(st.lists(scalars, min_size=1, max_size=4))
    elif op == "matches":
        value = draw(st.text(_LOWER + "*?.-[]", max_size=10))
    elif op == "exists":
        value = draw(st.booleans())
    else:
        value = draw(scalars)
    return {"field": draw(field_paths), "op": op, "value": value}


conditions = st.recursive(
    leaf_conditions(),
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=6,
)
approvers = st.lists(
    st.builds(lambda kind, name: f"{kind}:{name}", st.sampled_from(["role", "user"]), _SAFE_TEXT),
    min_size=1,
    max_size=3,
)


@st.composite
def escalations(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {"approvers": draw(approvers)}
    if draw(st.booleans()):  # no `when`: the rule always applies
        rule["when"] = draw(conditions)
    if draw(st.booleans()):
        rule["reason"] = draw(_TEXT)
    if draw(st.booleans()):
        rule["approval_ttl"] = draw(durations)
    return rule


@st.composite
def intents(draw: st.DrawFn, ident: str) -> dict[str, Any]:
    names = draw(st.lists(tool_names, min_size=1, max_size=4, unique=True))
    tools = []
    for name in names:
        tool: dict[str, Any] = {
            "name": name,
            "operations": draw(
                st.lists(st.sampled_from(OPERATIONS), min_size=1, max_size=5, unique=True)
            ),
            "max_sensitivity": draw(levels),
        }
        if draw(st.booleans()):
            tool["escalate"] = draw(st.lists(escalations(), max_size=2))
        tools.append(tool)
    agents = draw(
        st.lists(
            st.builds(lambda n: f"spiffe://example.org/agents/{n}", _IDENT),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    spec: dict[str, Any] = {
        "principals": {
            "human_roles": draw(st.lists(_IDENT, max_size=2)),
            "humans": draw(st.lists(st.builds(lambda n: f"{n}@example.com", _IDENT), max_size=2)),
            "groups": draw(st.lists(_IDENT, max_size=2)),
            "agents": agents,
        },
        "session": {"max_ttl": draw(durations), "max_actions": draw(st.integers(0, 100))},
        "tools": tools,
    }
    if draw(st.booleans()):
        spec["environments"] = draw(st.lists(_IDENT, min_size=1, max_size=3, unique=True))
    if draw(st.booleans()):
        chain_tools = st.one_of(st.sampled_from(names), tool_names)
        rules = []
        for _ in range(draw(st.integers(1, 2))):
            after: dict[str, Any] = {}
            if draw(st.booleans()):
                after["sensitivity_at_least"] = draw(levels)
            if not after or draw(st.booleans()):
                after["tools_used_any"] = draw(st.lists(chain_tools, min_size=1, max_size=2))
            rules.append(
                {"after": after, "deny_tools": draw(st.lists(chain_tools, min_size=1, max_size=2))}
            )
        spec["chaining"] = rules
    if draw(st.booleans()):
        spec["delegation"] = {
            "max_depth": draw(st.integers(0, 3)),
            "agents": draw(st.lists(st.just("spiffe://example.org/agents/planner"), max_size=1)),
        }
    if draw(st.booleans()):
        glass: dict[str, Any] = {"allowed": draw(st.booleans())}
        if draw(st.booleans()):
            glass["max_ttl"] = draw(durations)
        spec["break_glass"] = glass
    metadata: dict[str, Any] = {"id": ident, "owner": draw(_SAFE_TEXT)}
    if draw(st.booleans()):
        metadata["description"] = draw(_TEXT)
    doc = {"apiVersion": "aam/v1", "kind": "Intent", "metadata": metadata, "spec": spec}
    doc["spec"]["examples"] = obvious_examples(doc, draw(st.sampled_from(["allow", "full"])))
    return doc


def _baseline_outcome(spec: dict[str, Any]) -> str | None:
    """The outcome of the baseline request, or None when it depends on a condition."""
    first = spec["tools"][0]
    chain_blocks = any(
        # both triggers must hold; the baseline session has used no tool yet
        rule["after"].get("sensitivity_at_least") == "public"
        and "tools_used_any" not in rule["after"]
        and first["name"] in rule["deny_tools"]
        for rule in spec.get("chaining", [])
    )
    nobody = not any(spec["principals"][key] for key in ("human_roles", "humans", "groups"))
    if spec["session"]["max_actions"] == 0 or chain_blocks or nobody:
        return "deny"
    rules = first.get("escalate", [])
    if any("when" in rule for rule in rules):
        return None
    return "escalate" if rules else "allow"


def _example(name: str, request: dict[str, Any], outcome: str, *reasons: str) -> dict[str, Any]:
    expect: Any = {"outcome": outcome, "reasons": list(reasons)} if reasons else outcome
    return {"name": name, "request": request, "expect": expect}


def obvious_examples(doc: dict[str, Any], style: str) -> list[dict[str, Any]]:
    spec = doc["spec"]
    first = spec["tools"][0]
    examples = []
    baseline = _baseline_outcome(spec)
    if baseline is not None:
        examples.append(_example("baseline", {}, baseline))
    if style == "allow":
        return examples
    names = {tool["name"] for tool in spec["tools"]}
    examples.append(
        _example(
            "a tool outside the intent",
            {"action": {"tool": next(n for n in ("zz.outside", "zz.outside2") if n not in names)}},
            "deny",
            "tool_not_in_intent",
        )
    )
    examples.append(_example("no session", {"session": None}, "deny", "session_missing"))
    missing = [op for op in OPERATIONS if op not in first["operations"]]
    if missing:
        examples.append(
            _example(
                "an operation the tool lacks",
                {"action": {"operation": missing[0]}},
                "deny",
                "operation_not_allowed",
            )
        )
    ceiling = LEVELS.index(first["max_sensitivity"])
    if ceiling < len(LEVELS) - 1:
        examples.append(
            _example(
                "data above the ceiling",
                {"data": {"sensitivity": LEVELS[ceiling + 1]}},
                "deny",
                "sensitivity_exceeds_ceiling",
            )
        )
    if baseline == "escalate":
        glass = {"reason": "outage", "ticket": "INC-1", "requested_by": "alice@example.com"}
        allowed = spec.get("break_glass", {}).get("allowed") is True
        examples.append(
            _example(
                "break glass",
                {"context": {"break_glass": glass}},
                "allow" if allowed else "escalate",
                *(["break_glass"] if allowed else []),
            )
        )
    return examples


@st.composite
def intent_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    ids = draw(st.lists(intent_ids, min_size=1, max_size=3, unique=True))
    return [draw(intents(ident)) for ident in ids]


def _round_trip(doc: dict[str, Any]) -> Any:
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    loaded = load_intent_text(text, f"{doc['metadata']['id']}.yaml")
    assert len(loaded) == 1
    return loaded[0].intent


@SETTINGS
@given(intent_sets())
def test_generated_intents_round_trip_compile_load_and_pass_their_examples(
    docs: list[dict[str, Any]],
) -> None:
    models = [_round_trip(doc) for doc in docs]
    for doc, model in zip(docs, models, strict=True):
        dumped = model.model_dump(mode="json", by_alias=True)
        assert dumped["metadata"]["id"] == doc["metadata"]["id"]
        assert [t["name"] for t in dumped["spec"]["tools"]] == [
            t["name"] for t in doc["spec"]["tools"]
        ]
        assert len(dumped["spec"]["examples"]) == len(doc["spec"]["examples"])
    with tempfile.TemporaryDirectory() as tmp:
        bundle = compile_bundle(models, Path(tmp) / "bundle")
        engine = RegorusEngine(load_policy([Path(tmp) / "bundle"]))
        report = engine.run_tests()
    cases = sum(len(doc["spec"]["examples"]) for doc in docs)
    assert report.total == cases
    assert report.ok, [(r.name, r.status, r.message) for r in report.results if r.status != "pass"]
    for doc, model in zip(docs, models, strict=True):
        decision = engine.evaluate("aam/decision", baseline_request(model))
        assert decision is not None
        assert decision["intent"] == doc["metadata"]["id"]
        assert decision["policy"]["revision"] == bundle.revision
        assert decision["allow"] == (decision["outcome"] == "allow")
        expected = _baseline_outcome(doc["spec"])
        if expected is not None:
            assert decision["outcome"] == expected, decision


@SETTINGS
@given(intent_sets())
def test_compiling_twice_is_byte_identical(docs: list[dict[str, Any]]) -> None:
    models = [_round_trip(doc) for doc in docs]
    with tempfile.TemporaryDirectory() as tmp:
        one = compile_bundle(models, Path(tmp) / "a")
        two = compile_bundle(list(reversed(models)), Path(tmp) / "b")
    assert one.revision == two.revision
    assert one.files == two.files


def test_the_baseline_of_a_one_second_session_is_allowed(tmp_path: Path) -> None:
    text = (
        "apiVersion: aam/v1\nkind: Intent\nmetadata: {id: short, owner: team}\nspec:\n"
        "  principals: {human_roles: [r], agents: [spiffe://example.org/agents/a]}\n"
        "  session: {max_ttl: 1s, max_actions: 1}\n"
        "  tools: [{name: crm.read, operations: [read], max_sensitivity: public}]\n"
    )
    model = load_intent_text(text, "short.yaml")[0].intent
    compile_bundle([model], tmp_path / "bundle")
    engine = RegorusEngine(load_policy([tmp_path / "bundle"]))
    decision = engine.evaluate("aam/decision", baseline_request(model))
    assert decision is not None
    assert decision["outcome"] == "allow", decision["reasons"]
