"""AgentRequest / Decision: the contract, the fingerprint, and the prompt that never leaves."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from client_helpers import FIXTURE_REQUESTS, SECRET_MARKER, standin_request
from pydantic import ValidationError

from aam_policy.audit import canonical_json as audit_canonical_json
from aam_policy.audit import prompt_digest
from aam_policy.client import (
    Action,
    AgentRequest,
    Decision,
    IntentRef,
    action_fingerprint,
    canonical_json,
    prompt_sha256,
)
from aam_policy.sessions import action_fingerprint as sessions_fingerprint

ACTION = {
    "tool": "payments.refund",
    "operation": "write",
    "target": {"system": "stripe", "resource": "charge/ch_1", "environment": "production"},
    "parameters": {"amount": 500, "currency": "EUR", "memo": "remboursé ✓"},
}


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def test_fingerprint_is_sha256_of_canonical_json_and_shared_with_sessions() -> None:
    text = '{"operation":"write","parameters":{"amount":500,"currency":"EUR","memo":"remboursé ✓"},'
    text += '"target":{"environment":"production","resource":"charge/ch_1","system":"stripe"},'
    text += '"tool":"payments.refund"}'
    assert canonical_json(ACTION) == text == audit_canonical_json(ACTION)
    expected = hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert action_fingerprint(ACTION) == expected
    assert sessions_fingerprint is action_fingerprint
    assert action_fingerprint({**ACTION, "fingerprint": "x", "extra": 1}) == expected
    assert (
        action_fingerprint({"tool": "t"})
        == hashlib.sha256(
            b'{"operation":null,"parameters":null,"target":null,"tool":"t"}'
        ).hexdigest()
    )
    with pytest.raises(ValueError):
        action_fingerprint({**ACTION, "parameters": {"x": float("nan")}})


def test_action_builder_computes_and_checks_the_fingerprint() -> None:
    action = Action.model_validate(ACTION)
    assert action.fingerprint == action_fingerprint(ACTION)
    assert Action.model_validate({**ACTION, "fingerprint": action.fingerprint}) == action
    with pytest.raises(ValidationError, match="fingerprint does not match"):
        Action.model_validate({**ACTION, "fingerprint": "0" * 64})
    bare = Action(tool="crm.read_ticket", operation="read")
    assert bare.fingerprint == action_fingerprint(
        {"tool": "crm.read_ticket", "operation": "read", "parameters": {}}
    )


def test_prompt_is_hashed_and_dropped() -> None:
    prompt = f"refund jane@example.com {SECRET_MARKER} \ud800"  # a lone surrogate, too
    digest = prompt_sha256(prompt)
    assert digest == prompt_digest(prompt)["sha256"]  # the audit trail's digest agrees
    intent = IntentRef.model_validate({"id": "x", "prompt": prompt})
    assert intent.prompt_sha256 == digest
    assert "prompt" not in intent.model_dump()
    with pytest.raises(ValidationError, match="does not match prompt"):
        IntentRef.model_validate({"id": "x", "prompt": prompt, "prompt_sha256": "0" * 64})
    with pytest.raises(ValidationError):
        IntentRef(id="x", prompt_sha256="not-hex")

    request = standin_request()
    sent = json.dumps(request.to_input())
    assert "please refund" not in sent and "please refund" not in repr(request)
    assert request.intent.prompt_sha256 == prompt_sha256(
        f"please refund the customer ({SECRET_MARKER})"
    )


def test_build_fills_ids_clock_and_fingerprint() -> None:
    request = AgentRequest.build(
        human="alice@example.com",
        agent="spiffe://example.org/agents/support-bot",
        intent="resolve-support-ticket",
        tool="crm.read_ticket",
        operation="read",
    )
    data = request.to_input()
    assert len(data["request_id"]) == 36 and data["context"]["time_ns"] > 0
    assert data["action"]["fingerprint"] == action_fingerprint(data["action"])
    assert "session" not in data and "data" not in data  # absent, not null
    assert data["actor"] == {
        "human": {"id": "alice@example.com", "roles": [], "groups": []},
        "agent": {"id": "spiffe://example.org/agents/support-bot"},
    }


def test_request_rejects_typos_and_unknown_values() -> None:
    good = standin_request().to_input()
    with pytest.raises(ValidationError):
        AgentRequest.model_validate({**good, "sesion": {}})
    with pytest.raises(ValidationError):
        AgentRequest.model_validate({**good, "action": {**good["action"], "operation": "wipe"}})
    with pytest.raises(ValidationError):
        AgentRequest.model_validate({**good, "data": {"sensitivity": "secret"}})


@pytest.mark.parametrize("path", sorted(FIXTURE_REQUESTS.glob("*.json")), ids=lambda p: p.stem)
def test_fixture_requests_fit_the_model(path: Any) -> None:
    data = json.loads(path.read_text())
    request = AgentRequest.model_validate(data)  # their fingerprints check out, too
    assert request.to_input() == _without_nulls(data)


DECISION = {
    "outcome": "escalate",
    "allow": False,
    "intent": "resolve-support-ticket",
    "reasons": [{"code": "escalation_required", "message": "refund over 100"}],
    "escalation": {"approvers": ["role:payments-lead"], "approval_ttl_seconds": 900},
    "obligations": {"max_session_ttl_seconds": 600, "review_required": False},
    "policy": {"revision": "r1", "intent_revision": "i1"},
}


def test_decision_round_trips_and_ignores_new_fields() -> None:
    decision = Decision.model_validate({**DECISION, "future_field": 1})
    assert decision.model_dump(exclude={"decision_id"}) == DECISION
    assert decision.reason_codes == ["escalation_required"]
    assert not decision.is_fail_closed


@pytest.mark.parametrize(
    "change",
    [
        {"allow": True},
        {"outcome": "allow"},
        {"escalation": None},
        {"outcome": "deny"},
        {"outcome": "maybe"},
        {"reasons": [{"message": "no code"}]},
    ],
)
def test_decision_contract_violations_are_rejected(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Decision.model_validate({**DECISION, **change})


def test_fail_closed_decision_shape() -> None:
    decision = Decision.fail_closed("pdp_unavailable", "down", intent="x")
    assert decision.outcome == "deny" and decision.allow is False
    assert decision.reason_codes == ["pdp_unavailable"] and decision.is_fail_closed
    assert decision.policy.revision == "" and decision.escalation is None
