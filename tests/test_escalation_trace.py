"""Sessions and escalations feed one audit trail that verifies and rebuilds as a trace."""

from __future__ import annotations

import secrets
from pathlib import Path

from session_helpers import (
    ALICE,
    BOT,
    REGISTRY,
    Clock,
    enriched_request,
    escalate_decision,
    sqlite_bytes,
)

from aam_policy.audit import AuditStore
from aam_policy.escalation import ApprovalQueue, Approver
from aam_policy.sessions import SessionBroker, SigningKeys


def test_session_and_escalation_events_form_a_verifiable_trace(tmp_path: Path) -> None:
    clock = Clock()
    audit = AuditStore(tmp_path / "audit.db")
    queue = ApprovalQueue(tmp_path / "state.db", audit=audit, clock=clock, request_ttl_seconds=60)
    keys = SigningKeys({"k1": secrets.token_bytes(32)})
    broker = SessionBroker(
        tmp_path / "state.db", keys, REGISTRY, audit=audit, clock=clock, grants=queue
    )
    prompt = "Refund order 4411 for jane@example.com, she was double charged"
    sid = broker.open(
        ALICE, BOT, "resolve-support-ticket", purpose="refund", prompt=prompt
    ).session.id

    request = enriched_request(broker.to_input(sid))
    approved = queue.request(escalate_decision(), request)
    clock.advance(1)
    queue.approve(approved.id, Approver(id="bob", roles=("payments-lead",)), why="verified")
    other = enriched_request(broker.to_input(sid), parameters={"amount": 900})
    denied = queue.request(escalate_decision(), other)
    queue.deny(denied.id, Approver(id="bob", roles=("payments-lead",)), why="too much")
    third = enriched_request(broker.to_input(sid), parameters={"amount": 901})
    expired = queue.request(escalate_decision(), third)
    clock.advance(60)
    queue.expire_due()
    broker.teardown(sid, "task complete", actor="guard")

    assert audit.verify().ok
    trace = audit.trace(sid)
    assert trace.gaps == []
    assert (trace.human, trace.agent, trace.intent, trace.purpose) == (
        ALICE.id,
        BOT.id,
        "resolve-support-ticket",
        "refund",
    )
    assert trace.prompt is not None
    assert "jane@example.com" not in (trace.prompt.excerpt or "")
    assert [step.type for step in trace.steps] == [
        "session.opened",
        "escalation.requested",
        "escalation.approved",
        "escalation.requested",
        "escalation.denied",
        "escalation.requested",
        "escalation.expired",
        "session.teardown",
    ]
    by_id = {e.approval_id: e for e in trace.escalations}
    assert (by_id[approved.id].status, by_id[approved.id].resolved_by) == ("approved", "bob")
    assert by_id[approved.id].why == "verified"
    assert (by_id[denied.id].status, by_id[denied.id].why) == ("denied", "too much")
    assert by_id[expired.id].status == "expired"
    assert trace.teardown is not None
    assert (trace.teardown.reason, trace.teardown.kind) == ("task complete", "completed")
    for db in ("audit.db", "state.db"):
        assert prompt.encode() not in sqlite_bytes(tmp_path / db)
