"""Every reason code of DESIGN.md, reached through the embedded engine with a real request on
the compiled fixture bundle (the generic `data.aam.decision` query and the engine's dispatch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aam_policy.compiler import baseline_request, compile_bundle, merge_request
from aam_policy.compiler._validate import REASON_CODES
from aam_policy.engine import RegorusEngine, load_policy
from aam_policy.intents import load_intents

REPO = Path(__file__).resolve().parents[1]
NS = 1_000_000_000
SUPPORT = "resolve-support-ticket"
TRAVEL = "book-business-travel"
PLANNER = "spiffe://example.org/agents/travel-planner"
GLASS = {"reason": "customer charged twice", "ticket": "INC-1", "requested_by": "alice@example.com"}
BIG_REFUND = {
    "tool": "payments.refund",
    "operation": "write",
    "parameters": {"amount": 500, "currency": "EUR"},
}

# code -> (intent, patch over that intent's baseline request, expected outcome)
CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "no_intent": (SUPPORT, {"intent": {"id": "no-such-intent"}}, "deny"),
    "principal_not_allowed": (SUPPORT, {"actor": {"human": {"roles": ["marketing"]}}}, "deny"),
    "agent_not_allowed": (
        SUPPORT,
        {"actor": {"agent": {"id": "spiffe://example.org/agents/rogue"}}},
        "deny",
    ),
    "tool_not_in_intent": (SUPPORT, {"action": {"tool": "shell.exec"}}, "deny"),
    "operation_not_allowed": (SUPPORT, {"action": {"operation": "delete"}}, "deny"),
    "sensitivity_exceeds_ceiling": (SUPPORT, {"data": {"sensitivity": "restricted"}}, "deny"),
    "environment_not_allowed": (
        SUPPORT,
        {"action": {"target": {"environment": "development"}}},
        "deny",
    ),
    "session_missing": (SUPPORT, {"session": None}, "deny"),
    "session_expired": (
        SUPPORT,
        {"context": {"time_ns": 1_767_225_600_000_000_000 + 601 * NS}},
        "deny",
    ),
    "session_revoked": (SUPPORT, {"session": {"revoked": True}}, "deny"),
    "session_intent_mismatch": (SUPPORT, {"session": {"intent": TRAVEL}}, "deny"),
    "session_budget_exhausted": (SUPPORT, {"session": {"actions_used": 50}}, "deny"),
    "delegation_too_deep": (
        SUPPORT,
        {
            "delegation": [
                {"agent": "spiffe://example.org/agents/planner", "scopes": ["crm.read_ticket"]}
            ]
            * 2
        },
        "deny",
    ),
    "delegate_not_allowed": (
        TRAVEL,
        {
            "delegation": [
                {"agent": "spiffe://example.org/agents/other", "scopes": ["travel.search"]}
            ]
        },
        "deny",
    ),
    "delegation_scope_exceeded": (
        TRAVEL,
        {"delegation": [{"agent": PLANNER, "scopes": ["calendar.read_events"]}]},
        "deny",
    ),
    "chain_blocked": (
        "analyze-customer-data",
        {
            "action": {"tool": "reports.export", "operation": "write", "parameters": {"rows": 5}},
            "session": {"max_sensitivity_seen": "restricted"},
        },
        "deny",
    ),
    "escalation_required": (SUPPORT, {"action": BIG_REFUND}, "escalate"),
    "approval_granted": (
        SUPPORT,
        {
            "action": BIG_REFUND,
            "session": {
                "approvals": [
                    {
                        "approval_id": "apr_1",
                        "fingerprint": "f" * 64,
                        "approver": "bob@example.com",
                        "expires_at_ns": 1_767_225_600_000_000_000 + 60 * NS,
                    }
                ]
            },
        },
        "allow",
    ),
    "break_glass": (SUPPORT, {"action": BIG_REFUND, "context": {"break_glass": GLASS}}, "allow"),
}


@pytest.fixture(scope="module")
def engine_and_bases(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[RegorusEngine, dict[str, Any]]:
    intents = [item.intent for item in load_intents([REPO / "fixtures" / "intents"])]
    out = tmp_path_factory.mktemp("codes") / "bundle"
    compile_bundle(intents, out)
    bases = {intent.metadata.id: baseline_request(intent) for intent in intents}
    return RegorusEngine(load_policy([out])), bases


def test_the_table_covers_every_reason_code() -> None:
    assert set(CASES) == set(REASON_CODES)


@pytest.mark.parametrize("code", sorted(CASES))
def test_reason_code_is_reachable(
    code: str, engine_and_bases: tuple[RegorusEngine, dict[str, Any]]
) -> None:
    engine, bases = engine_and_bases
    intent, patch, outcome = CASES[code]
    request = merge_request(bases[intent], patch)
    for path in ("aam/decision", "data.aam.decision"):  # engine dispatch and the generic query
        decision = engine.evaluate(path, request)
        assert decision["outcome"] == outcome, (path, decision)
        assert decision["allow"] == (outcome == "allow")
        assert code in {reason["code"] for reason in decision["reasons"]}, (path, decision)
        assert decision["policy"]["revision"] == engine.revision


def test_baselines_are_allowed(engine_and_bases: tuple[RegorusEngine, dict[str, Any]]) -> None:
    # so each case above differs from an allowed request only by its patch
    engine, bases = engine_and_bases
    for intent in (SUPPORT, TRAVEL, "analyze-customer-data"):
        assert engine.evaluate("aam/decision", bases[intent])["outcome"] == "allow", intent
