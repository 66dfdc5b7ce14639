"""Guard over the compiled fixture intents: allow / deny / escalate, grants that bind to one
session and one action and expire, self-approval, `run` and the credential, teardown.

Decisions come from the in-process engine (`LocalDecisionClient`): HTTP is not the point here
(tests/test_guard_sidecar.py runs the same guard against the real sidecar process). Sessions,
approvals and the audit trail are real SQLite files in tmp_path.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from aam_policy.audit import AuditStore
from aam_policy.client import LocalDecisionClient
from aam_policy.compiler import compile_bundle
from aam_policy.engine import load_policy
from aam_policy.escalation import ApprovalQueue, Approver, ApproverNotEligible, SelfApprovalRefused
from aam_policy.guard import ActionDenied, Authorization, EscalationPending, Guard
from aam_policy.intents import load_intents
from aam_policy.sessions import OpenedSession, SessionBroker, SigningKeys, TokenInvalid

REPO = Path(__file__).resolve().parent.parent
INTENTS = REPO / "fixtures" / "intents"
NS = 1_000_000_000
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z

ALICE = {"id": "alice@example.com", "roles": ["support-agent"]}
BOT = {
    "id": "spiffe://example.org/agents/support-bot",
    "kind": "assistant",
    "owner": "team-support",
}
BOB = Approver(id="bob@example.com", roles=("payments-lead",))
INTENT = "resolve-support-ticket"
PROMPT = "Customer jane.doe@example.com was charged twice for order 4411; refund 500 EUR please"
CRM = {"system": "zendesk", "resource": "ticket/42", "environment": "production"}
STRIPE = {"system": "stripe", "resource": "charge/ch_123", "environment": "production"}
REFUND = {"amount": 500, "currency": "EUR"}


class Clock:
    """The shared, injectable nanosecond clock of guard, broker and queue."""

    def __init__(self, start: int = T0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += int(seconds * NS)


@dataclass
class World:
    path: Path
    clock: Clock
    audit: AuditStore
    queue: ApprovalQueue
    broker: SessionBroker
    guard: Any

    def open(
        self,
        human: dict[str, Any] = ALICE,
        agent: dict[str, Any] = BOT,
        intent: str = INTENT,
        prompt: str = PROMPT,
        ttl: int = 300,
    ) -> OpenedSession:
        return self.broker.open(human, agent, intent, ttl=ttl, purpose="refund", prompt=prompt)

    def types(self, session_id: str) -> list[str]:
        return [step.type for step in self.audit.trace(session_id).steps]


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("guard") / "bundle"
    compile_bundle([item.intent for item in load_intents([INTENTS])], out)
    return out


def make_world(
    path: Path, bundle: Path, client_factory: Callable[[], Any], guard_cls: type = Guard
) -> World:
    clock = Clock()
    audit = AuditStore(path / "audit.db")
    queue = ApprovalQueue(path / "sessions.db", audit=audit, clock=clock)
    keys = SigningKeys({"k1": secrets.token_bytes(32)})
    registry = load_policy([bundle]).registry
    broker = SessionBroker(path / "sessions.db", keys, registry, audit=audit, clock=clock)
    guard = guard_cls(broker, client_factory(), queue, audit, clock=clock)
    return World(path, clock, audit, queue, broker, guard)


@pytest.fixture
def world(tmp_path: Path, bundle: Path) -> World:
    w = make_world(tmp_path, bundle, lambda: LocalDecisionClient(bundle))
    yield w
    w.audit.close()


def refund(world: World, session: Any, parameters: dict[str, Any] = REFUND) -> Authorization:
    return world.guard.authorize(
        session, "payments.refund", "write", STRIPE, parameters, "confidential"
    )


def test_allow_deny_and_escalate_are_decided_recorded_and_applied(world: World) -> None:
    opened = world.open()
    token = opened.token
    read = world.guard.authorize(token, "crm.read_ticket", "read", CRM, data="confidential")
    assert (read.allowed, read.outcome, read.approval) == (True, "allow", None)
    drift = world.guard.authorize(token, "email.send_external", "write", CRM, data="internal")
    assert (drift.allowed, drift.decision.reason_codes) == (False, ["tool_not_in_intent"])
    ceiling = world.guard.authorize(token, "crm.read_ticket", "read", CRM, data="restricted")
    assert ceiling.decision.reason_codes == ["sensitivity_exceeds_ceiling"]
    big = refund(world, token)
    assert (big.outcome, big.decision.reason_codes) == ("escalate", ["escalation_required"])
    assert big.approval is not None and big.approval.status == "pending"
    assert big.approval.approvers == ("role:payments-lead",)
    assert big.approval.fingerprint == big.fingerprint
    # Asking again while it is pending reuses the request.
    assert refund(world, token).approval.id == big.approval.id  # type: ignore[union-attr]

    # Only the allowed action counted against the budget and the chain history.
    session = world.broker.get(opened.session.id)
    assert (session.actions_used, session.decisions) == (1, 5)
    assert session.tools_used == ("crm.read_ticket",)
    assert session.max_sensitivity_seen == "confidential"

    trace = world.audit.trace(opened.session.id)
    assert [(d.tool, d.outcome) for d in trace.decisions] == [
        ("crm.read_ticket", "allow"),
        ("email.send_external", "deny"),
        ("crm.read_ticket", "deny"),
        ("payments.refund", "escalate"),
        ("payments.refund", "escalate"),
    ]
    first = trace.decisions[0]
    assert first.request_id == read.request_id and first.fingerprint == read.fingerprint
    assert first.revision and first.intent_revision
    # decision -> escalation.requested (the decision is recorded first), one request only
    assert world.types(opened.session.id)[4:] == ["decision", "escalation.requested", "decision"]
    assert trace.gaps == []


def test_escalation_approved_by_an_eligible_human_lets_the_identical_retry_through(
    world: World,
) -> None:
    opened = world.open()
    pending = refund(world, opened.token).approval
    assert pending is not None
    world.clock.advance(30)
    world.queue.approve(pending.id, BOB, why="double charge confirmed")
    retry = refund(world, opened.token)
    assert (retry.outcome, retry.decision.reason_codes) == ("allow", ["approval_granted"])
    assert retry.request["session"]["approvals"][0]["approval_id"] == pending.id
    assert world.types(opened.session.id) == [
        "session.opened",
        "decision",
        "escalation.requested",
        "escalation.approved",
        "decision",
    ]


def test_a_grant_replayed_for_other_parameters_escalates_again(world: World) -> None:
    opened = world.open()
    first = refund(world, opened.token).approval
    assert first is not None
    world.queue.approve(first.id, BOB, why="ok")
    other = refund(world, opened.token, {"amount": 5000, "currency": "EUR"})
    assert other.outcome == "escalate" and other.fingerprint != first.fingerprint
    assert other.approval is not None and other.approval.id != first.id
    # Only grants for this very action reach the policy.
    assert other.request["session"]["approvals"] == []
    other_target = world.guard.authorize(
        opened.token,
        "payments.refund",
        "write",
        {**STRIPE, "resource": "charge/ch_999"},
        REFUND,
        "confidential",
    )
    assert other_target.outcome == "escalate"


def test_a_grant_replayed_in_another_session_escalates(world: World) -> None:
    mine = world.open()
    granted = refund(world, mine.token).approval
    assert granted is not None
    world.queue.approve(granted.id, BOB, why="ok")
    assert refund(world, mine.token).allowed

    other = world.open()
    replay = refund(world, other.token)
    assert replay.fingerprint == granted.fingerprint  # the same action...
    assert replay.outcome == "escalate"  # ...but the grant belongs to the first session
    assert replay.approval is not None and replay.approval.session_id == other.session.id


def test_an_expired_grant_escalates_again(world: World) -> None:
    # deploy-service: production deletes need the on-call SRE, and the grant lasts 5 minutes
    # (the support intent's 15-minute grants outlive its 10-minute sessions).
    opened = world.open(
        {"id": "sam@example.com", "roles": ["sre"]},
        {"id": "spiffe://example.org/agents/deploy-bot"},
        "deploy-service",
        ttl=1800,
    )
    target = {
        "system": "k8s-eu1",
        "resource": "deployments/legacy-cart",
        "environment": "production",
    }

    def delete() -> Authorization:
        return world.guard.authorize(
            opened.token, "k8s.deployment", "delete", target, data="internal"
        )

    first = delete().approval
    assert first is not None
    oncall = Approver(id="olga@example.com", roles=("sre-oncall",))
    approved = world.queue.approve(first.id, oncall, why="legacy cart is unused")
    assert approved.grant_expires_at_ns == world.clock.now + 5 * 60 * NS
    world.clock.advance(5 * 60 - 1)
    assert delete().decision.reason_codes == ["approval_granted"]
    world.clock.advance(1)
    again = delete()
    assert (again.outcome, again.decision.reason_codes) == ("escalate", ["escalation_required"])
    assert again.approval is not None and again.approval.id != first.id


def test_self_approval_and_ineligible_approvers_are_refused(world: World) -> None:
    opened = world.open(human={"id": "carol@example.com", "roles": ["support-agent"]})
    pending = refund(world, opened.token).approval
    assert pending is not None
    with pytest.raises(SelfApprovalRefused):
        world.queue.approve(
            pending.id, Approver(id="carol@example.com", roles=("payments-lead",)), why="mine"
        )
    with pytest.raises(ApproverNotEligible):
        world.queue.approve(
            pending.id, Approver(id="dave@example.com", roles=("support-lead",)), why="helping"
        )
    assert refund(world, opened.token).outcome == "escalate"


def test_run_calls_the_tool_only_when_allowed_and_hands_it_the_credential(world: World) -> None:
    secret = "crm-" + secrets.token_hex(20)
    world.broker.register_credential("crm", secret, tools=["crm.read_ticket", "payments.refund"])
    opened = world.open()
    calls: list[dict[str, Any]] = []

    def tool(**kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        return {"ticket": kwargs.get("ticket"), "status": "open"}

    result = world.guard.run(
        opened.token,
        tool,
        tool="crm.read_ticket",
        operation="read",
        target=CRM,
        parameters={"ticket": 42},
        data="confidential",
        credential="crm",
        summarize=lambda r: f"ticket {r['ticket']}",
    )
    assert result == {"ticket": 42, "status": "open"}  # what the agent gets: no credential
    assert calls == [{"ticket": 42, "credential": secret}]

    with pytest.raises(ActionDenied) as denied:
        world.guard.run(
            opened.token,
            tool,
            tool="email.send_external",
            operation="write",
            target=CRM,
            parameters={"to": "x@example.org"},
            credential="crm",
        )
    assert denied.value.reason_codes == ["tool_not_in_intent"]
    with pytest.raises(EscalationPending) as pending:
        world.guard.run(
            opened.token,
            tool,
            tool="payments.refund",
            operation="write",
            target=STRIPE,
            parameters=REFUND,
            data="confidential",
            credential="crm",
        )
    assert pending.value.approval_id.startswith("apr_")
    assert len(calls) == 1  # neither refused call reached the tool

    def broken(**kwargs: Any) -> None:
        raise RuntimeError(f"connection refused using {kwargs['credential']}")

    with pytest.raises(RuntimeError):
        world.guard.run(
            opened.token,
            broken,
            tool="crm.read_ticket",
            operation="read",
            target=CRM,
            parameters={"ticket": 43},
            data="confidential",
            credential="crm",
        )

    trace = world.audit.trace(opened.session.id)
    assert [(a.tool, a.status, a.result_summary) for a in trace.actions] == [
        ("crm.read_ticket", "ok", "ticket 42"),
        ("crm.read_ticket", "error", "raised RuntimeError"),
    ]
    assert all(a.authorized_by_seq is not None for a in trace.actions)
    assert trace.gaps == []
    for db in ("audit.db", "sessions.db"):
        assert secret.encode() not in _bytes(world.path, db)


def test_record_result_refuses_an_action_that_was_not_allowed(world: World) -> None:
    opened = world.open()
    drift = world.guard.authorize(opened.token, "email.send_external", "write", CRM)
    with pytest.raises(ActionDenied):
        world.guard.record_result(drift)
    assert "action.executed" not in world.types(opened.session.id)


@pytest.mark.parametrize("end", ["teardown", "revoke"])
def test_after_teardown_or_revocation_every_action_is_denied(world: World, end: str) -> None:
    opened = world.open()
    assert world.guard.authorize(
        opened.token, "crm.read_ticket", "read", CRM, data="internal"
    ).allowed
    if end == "teardown":
        world.broker.teardown(opened.session.id, "done", actor=ALICE["id"])
    else:
        world.broker.revoke(opened.session.id, reason="agent misbehaved", actor="secops")
    for session in (opened.token, opened.session):
        after = world.guard.authorize(session, "crm.read_ticket", "read", CRM, data="internal")
        assert (after.outcome, after.decision.reason_codes) == ("deny", ["session_revoked"])
    trace = world.audit.trace(opened.session.id)
    assert [d.outcome for d in trace.decisions] == ["allow", "deny", "deny"]
    assert trace.gaps == []  # refused decisions after teardown are expected


def test_an_expired_session_is_denied_by_policy(world: World) -> None:
    opened = world.open()
    world.clock.advance(301)
    after = world.guard.authorize(opened.token, "crm.read_ticket", "read", CRM, data="internal")
    assert (after.outcome, after.decision.reason_codes) == ("deny", ["session_expired"])


def test_a_token_that_does_not_verify_is_refused_before_any_decision(world: World) -> None:
    opened = world.open()
    forged = opened.token[:-4] + ("AAAA" if not opened.token.endswith("AAAA") else "BBBB")
    with pytest.raises(TokenInvalid):
        world.guard.authorize(forged, "crm.read_ticket", "read", CRM, data="internal")
    foreign = SigningKeys({"k1": secrets.token_bytes(32)}).sign(
        {
            "sid": opened.session.id,
            "sub": ALICE["id"],
            "agent": BOT["id"],
            "intent": INTENT,
            "iat": T0 // NS,
            "exp": T0 // NS + 300,
            "jti": "x",
        }
    )
    with pytest.raises(TokenInvalid):
        world.guard.authorize(foreign, "crm.read_ticket", "read", CRM, data="internal")
    assert world.types(opened.session.id) == ["session.opened"]


def _bytes(path: Path, db: str) -> bytes:
    """A SQLite file with its WAL: where a leaked value would sit before a checkpoint."""
    return b"".join(p.read_bytes() for p in path.glob(db + "*"))


def test_a_revoke_from_another_process_is_seen_by_the_very_next_authorize(
    world: World, tmp_path: Path
) -> None:
    # The stores keep a connection per thread: that must never mean a stale session read.
    opened = world.open()
    assert world.guard.authorize(opened.token, "crm.read_ticket", "read", CRM, data="internal")
    script = (
        "import sys; from aam_policy.sessions import SessionBroker, SigningKeys\n"
        "b = SessionBroker(sys.argv[1], SigningKeys.generate(warn=False), {})\n"
        "assert b.revoke(sys.argv[2], reason='elsewhere') == [sys.argv[2]]\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "sessions.db"), opened.session.id],
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    after = world.guard.authorize(opened.token, "crm.read_ticket", "read", CRM, data="internal")
    assert (after.outcome, after.decision.reason_codes) == ("deny", ["session_revoked"])


@pytest.mark.parametrize("durability", ["full", "normal"])
def test_both_state_durabilities_decide_and_record_alike(
    tmp_path: Path, bundle: Path, durability: Literal["full", "normal"]
) -> None:
    clock = Clock()
    audit = AuditStore(tmp_path / "audit.db", durability=durability)
    queue = ApprovalQueue(tmp_path / "s.db", audit=audit, clock=clock, durability=durability)
    broker = SessionBroker(
        tmp_path / "s.db",
        SigningKeys({"k1": secrets.token_bytes(32)}),
        load_policy([bundle]).registry,
        audit=audit,
        clock=clock,
        durability=durability,
    )
    guard = Guard(broker, LocalDecisionClient(bundle), queue, audit, clock=clock)
    opened = broker.open(ALICE, BOT, INTENT, ttl=300, purpose="refund", prompt=PROMPT)
    assert guard.authorize(opened.token, "crm.read_ticket", "read", CRM, data="internal").allowed
    pending = guard.authorize(
        opened.token, "payments.refund", "write", STRIPE, REFUND, "confidential"
    )
    assert pending.outcome == "escalate" and pending.approval is not None
    assert broker.get(opened.session.id).actions_used == 1
    assert audit.verify().ok and len(audit) == 4  # opened, decision, decision, requested
    audit.close()
    queue.close()
    broker.close()
