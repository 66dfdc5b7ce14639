"""Approval queue: requests, approver checks, atomic transitions, expiry, grants."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from session_helpers import (
    ALICE,
    BOT,
    CAROL,
    NS,
    REGISTRY,
    T0,
    Clock,
    enriched_request,
    escalate_decision,
)

from aam_policy.audit import AuditStore
from aam_policy.escalation import (
    AlreadyResolved,
    ApprovalExpired,
    ApprovalNotFound,
    ApprovalQueue,
    Approver,
    ApproverNotEligible,
    InvalidEscalation,
    SelfApprovalRefused,
    is_eligible,
)
from aam_policy.sessions import SessionBroker, SigningKeys

INTENT = "resolve-support-ticket"
BOB = Approver(id="bob@example.com", roles=("payments-lead",))
DAVE = Approver(id="dave@example.com", roles=("support-agent",))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def audit(tmp_path: Path) -> AuditStore:
    return AuditStore(tmp_path / "audit.db")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    # Sessions and approvals share one state database, as the Guard deploys them.
    return tmp_path / "state.db"


@pytest.fixture
def queue(db: Path, audit: AuditStore, clock: Clock) -> ApprovalQueue:
    return ApprovalQueue(db, audit=audit, clock=clock)


@pytest.fixture
def broker(db: Path, audit: AuditStore, clock: Clock, queue: ApprovalQueue) -> SessionBroker:
    keys = SigningKeys({"k1": secrets.token_bytes(32)})
    return SessionBroker(db, keys, REGISTRY, audit=audit, clock=clock, grants=queue)


@pytest.fixture
def request_for(broker: SessionBroker) -> Callable[..., dict[str, Any]]:
    """Open a session (ALICE by default) and build an enriched request in it."""

    def build(session_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
        human = kwargs.get("human", ALICE)
        if session_id is None:
            session_id = broker.open(human, BOT, INTENT, purpose="refund").session.id
        return enriched_request(broker.to_input(session_id), **kwargs)

    return build


def _types(audit: AuditStore, session_id: str) -> list[str]:
    return [e.type for e in audit.events(session_id) if e.type.startswith("escalation.")]


# --- requests ---------------------------------------------------------------------------------


def test_request_creates_a_pending_approval_and_audits_it(
    queue: ApprovalQueue, audit: AuditStore, request_for: Callable[..., dict[str, Any]]
) -> None:
    request = request_for()
    approval = queue.request(escalate_decision(["role:payments-lead", "user:erin"]), request)
    assert approval.id.startswith("apr_")
    assert approval.status == "pending"
    assert approval.session_id == request["session"]["id"]
    assert approval.fingerprint == request["action"]["fingerprint"]
    assert approval.human == ALICE.id
    assert approval.agent == BOT.id
    assert approval.intent == INTENT
    assert approval.approvers == ("role:payments-lead", "user:erin")
    assert approval.approval_ttl_seconds == 900
    assert approval.reason == "refund over 100 needs a payments lead"
    assert approval.action["parameters"] == {"amount": 500, "currency": "EUR"}
    assert approval.policy_revision == "rev-1"
    assert approval.requested_at_ns == T0
    assert approval.grant is None

    [event] = [e for e in audit.events(approval.session_id) if e.type == "escalation.requested"]
    assert event.payload["approval_id"] == approval.id
    assert event.payload["fingerprint"] == approval.fingerprint
    assert event.payload["approvers"] == ["role:payments-lead", "user:erin"]
    assert event.payload["reason"] == approval.reason
    assert event.payload["expires_at_ns"] == approval.expires_at_ns


def test_request_is_idempotent_per_session_and_fingerprint(
    queue: ApprovalQueue, audit: AuditStore, request_for: Callable[..., dict[str, Any]]
) -> None:
    request = request_for()
    first = queue.request(escalate_decision(), request)
    assert queue.request(escalate_decision(), request) == first
    assert _types(audit, first.session_id) == ["escalation.requested"]

    other_params = request_for(request["session"]["id"], parameters={"amount": 700})
    assert queue.request(escalate_decision(), other_params).id != first.id
    other_session = request_for()
    assert queue.request(escalate_decision(), other_session).id != first.id
    assert len(queue.list(status="pending")) == 3

    # Once resolved, the same action may be asked for again.
    queue.deny(first.id, BOB, why="no")
    assert queue.request(escalate_decision(), request).id != first.id


def test_concurrent_identical_requests_yield_one_approval(
    db: Path, clock: Clock, request_for: Callable[..., dict[str, Any]]
) -> None:
    request = request_for()
    barrier = threading.Barrier(8)
    ids: list[str] = []

    def work() -> None:
        own = ApprovalQueue(db, clock=clock)
        barrier.wait()
        ids.append(own.request(escalate_decision(), request).id)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8
    assert len(set(ids)) == 1


@pytest.mark.parametrize(
    "decision, change, message",
    [
        ({"outcome": "allow", "allow": True}, None, "escalate"),
        (escalate_decision(approvers=[]), None, "approvers"),
        ({**escalate_decision(), "escalation": None}, None, "approvers"),
        (escalate_decision(ttl=0), None, "approval_ttl_seconds"),
        (escalate_decision(), ("session", None), "session id"),
        (escalate_decision(), ("action", {"tool": "x"}), "fingerprint"),
    ],
)
def test_invalid_requests_are_refused(
    queue: ApprovalQueue,
    request_for: Callable[..., dict[str, Any]],
    decision: dict[str, Any],
    change: tuple[str, Any] | None,
    message: str,
) -> None:
    request = request_for()
    if change is not None:
        request[change[0]] = change[1]
    with pytest.raises(InvalidEscalation, match=message):
        queue.request(decision, request)


@dataclass
class _Escalation:
    approvers: list[str]
    approval_ttl_seconds: int


@dataclass
class _Reason:
    code: str
    message: str


@dataclass
class _Decision:
    """A decision-like object (attribute access), as a client model would provide."""

    outcome: str
    escalation: _Escalation
    reasons: list[_Reason] = field(default_factory=list)


def test_decision_may_be_an_object(
    queue: ApprovalQueue, request_for: Callable[..., dict[str, Any]]
) -> None:
    decision = _Decision(
        "escalate", _Escalation(["user:bob@example.com"], 60), [_Reason("escalation_required", "r")]
    )
    approval = queue.request(decision, request_for())
    assert approval.approvers == ("user:bob@example.com",)
    assert approval.approval_ttl_seconds == 60
    assert approval.reason == "r"


# --- approver checks --------------------------------------------------------------------------


def test_eligibility_rules() -> None:
    assert is_eligible(["role:payments-lead"], BOB)
    assert is_eligible(["user:dave@example.com"], DAVE)
    assert not is_eligible(["role:payments-lead"], DAVE)
    assert not is_eligible(["user:payments-lead"], BOB)  # a role name is not a user id
    assert not is_eligible(["role:bob@example.com"], BOB)  # nor a user id a role
    assert not is_eligible(["payments-lead"], BOB)  # unprefixed entries never match


def test_approve_by_eligible_role_creates_a_grant(
    queue: ApprovalQueue,
    broker: SessionBroker,
    audit: AuditStore,
    clock: Clock,
    request_for: Callable[..., dict[str, Any]],
) -> None:
    request = request_for()
    approval = queue.request(escalate_decision(ttl=300), request)
    clock.advance(5)
    approved = queue.approve(approval.id, BOB, why="customer verified by phone")
    assert approved.status == "approved"
    assert approved.resolved_by == BOB.id
    assert approved.resolved_at_ns == clock()
    assert approved.why == "customer verified by phone"
    assert approved.grant is not None
    assert approved.grant.expires_at_ns == clock() + 300 * NS

    sid = request["session"]["id"]
    assert broker.to_input(sid)["approvals"] == [
        {
            "approval_id": approval.id,
            "fingerprint": request["action"]["fingerprint"],
            "approver": BOB.id,
            "expires_at_ns": clock() + 300 * NS,
        }
    ]
    [event] = [e for e in audit.events(sid) if e.type == "escalation.approved"]
    assert event.actor == BOB.id
    assert event.payload["approval_id"] == approval.id
    assert event.payload["approver"] == BOB.id
    assert event.payload["why"] == "customer verified by phone"
    assert queue.list(status="approved") == [approved]


def test_approve_by_user_entry(
    queue: ApprovalQueue, request_for: Callable[..., dict[str, Any]]
) -> None:
    approval = queue.request(escalate_decision(["user:dave@example.com"]), request_for())
    assert queue.approve(approval.id, DAVE, why="ok").status == "approved"


def test_approver_may_be_a_mapping(
    queue: ApprovalQueue, request_for: Callable[..., dict[str, Any]]
) -> None:
    approval = queue.request(escalate_decision(), request_for())
    resolved = queue.approve(approval.id, {"id": "bob", "roles": ["payments-lead"]}, why="ok")
    assert resolved.resolved_by == "bob"


def test_ineligible_approver_is_refused(
    queue: ApprovalQueue, audit: AuditStore, request_for: Callable[..., dict[str, Any]]
) -> None:
    approval = queue.request(escalate_decision(), request_for())
    for attempt in (queue.approve, queue.deny):
        with pytest.raises(ApproverNotEligible, match=r"dave@example\.com.*not among"):
            attempt(approval.id, DAVE, why="I think it is fine")
    with pytest.raises(ApproverNotEligible):
        queue.approve(approval.id, Approver(id="nobody"), why="x")
    assert queue.get(approval.id).status == "pending"
    assert _types(audit, approval.session_id) == ["escalation.requested"]


def test_self_approval_is_refused_even_with_the_right_role(
    queue: ApprovalQueue, request_for: Callable[..., dict[str, Any]]
) -> None:
    approval = queue.request(escalate_decision(), request_for())
    alice_as_lead = Approver(id=ALICE.id, roles=("payments-lead",))
    with pytest.raises(SelfApprovalRefused, match="own session"):
        queue.approve(approval.id, alice_as_lead, why="trust me")
    # Naming the requester explicitly does not help either, nor does the agent.
    named = queue.request(escalate_decision([f"user:{ALICE.id}"]), request_for())
    with pytest.raises(SelfApprovalRefused):
        queue.approve(named.id, Approver(id=ALICE.id), why="trust me")
    with pytest.raises(SelfApprovalRefused):
        queue.approve(approval.id, Approver(id=BOT.id, roles=("payments-lead",)), why="beep")
    assert queue.get(approval.id).status == "pending"
    assert queue.approve(approval.id, BOB, why="ok").status == "approved"


def test_deny(
    queue: ApprovalQueue,
    broker: SessionBroker,
    audit: AuditStore,
    request_for: Callable[..., dict[str, Any]],
) -> None:
    approval = queue.request(escalate_decision(), request_for())
    denied = queue.deny(approval.id, BOB, why="amount looks wrong")
    assert (denied.status, denied.resolved_by, denied.why) == (
        "denied",
        BOB.id,
        "amount looks wrong",
    )
    assert denied.grant is None
    assert broker.to_input(approval.session_id)["approvals"] == []
    [event] = [e for e in audit.events(approval.session_id) if e.type == "escalation.denied"]
    assert (event.actor, event.payload["why"]) == (BOB.id, "amount looks wrong")
    with pytest.raises(AlreadyResolved, match="denied"):
        queue.approve(approval.id, BOB, why="changed my mind")


def test_resolution_needs_a_reason_and_a_known_id(
    queue: ApprovalQueue, request_for: Callable[..., dict[str, Any]]
) -> None:
    approval = queue.request(escalate_decision(), request_for())
    with pytest.raises(ValueError, match="why"):
        queue.approve(approval.id, BOB, why="  ")
    with pytest.raises(ApprovalNotFound):
        queue.approve("apr_missing", BOB, why="ok")


# --- atomicity --------------------------------------------------------------------------------


def _race(db: Path, clock: Clock, approval_id: str, actions: list[str]) -> list[Any]:
    barrier = threading.Barrier(len(actions))
    results: list[Any] = [None] * len(actions)

    def work(index: int, action: str) -> None:
        # Each thread has its own queue (own connections), like separate approver processes.
        own = ApprovalQueue(db, audit=AuditStore(db.parent / "audit.db"), clock=clock)
        approver = Approver(id=f"lead{index}@example.com", roles=("payments-lead",))
        barrier.wait()
        try:
            results[index] = getattr(own, action)(approval_id, approver, why=f"{action} {index}")
        except AlreadyResolved as exc:
            results[index] = exc

    threads = [threading.Thread(target=work, args=(i, a)) for i, a in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_eight_concurrent_approvers_exactly_one_wins(
    db: Path,
    queue: ApprovalQueue,
    broker: SessionBroker,
    audit: AuditStore,
    clock: Clock,
    request_for: Callable[..., dict[str, Any]],
) -> None:
    approval = queue.request(escalate_decision(), request_for())
    results = _race(db, clock, approval.id, ["approve"] * 8)

    winners = [r for r in results if not isinstance(r, AlreadyResolved)]
    losers = [r for r in results if isinstance(r, AlreadyResolved)]
    assert len(winners) == 1
    assert len(losers) == 7
    assert all(loser.status == "approved" for loser in losers)
    final = queue.get(approval.id)
    assert final == winners[0]
    assert final.resolved_by == winners[0].resolved_by
    assert _types(audit, approval.session_id) == ["escalation.requested", "escalation.approved"]
    assert len(broker.to_input(approval.session_id)["approvals"]) == 1


def test_concurrent_approve_and_deny_exactly_one_transition(
    db: Path,
    queue: ApprovalQueue,
    audit: AuditStore,
    clock: Clock,
    request_for: Callable[..., dict[str, Any]],
) -> None:
    approval = queue.request(escalate_decision(), request_for())
    results = _race(db, clock, approval.id, ["approve", "deny"] * 4)
    winners = [r for r in results if not isinstance(r, AlreadyResolved)]
    assert len(winners) == 1
    assert queue.get(approval.id).status == winners[0].status
    assert len(_types(audit, approval.session_id)) == 2


# --- expiry -----------------------------------------------------------------------------------


def test_pending_requests_expire(
    db: Path, audit: AuditStore, clock: Clock, request_for: Callable[..., dict[str, Any]]
) -> None:
    queue = ApprovalQueue(db, audit=audit, clock=clock, request_ttl_seconds=60)
    first = queue.request(escalate_decision(), request_for())
    clock.advance(30)
    second = queue.request(escalate_decision(), request_for())
    assert first.expires_at_ns == T0 + 60 * NS
    assert queue.expire_due() == []
    clock.advance(30)
    expired = queue.expire_due()
    assert [a.id for a in expired] == [first.id]
    assert expired[0].status == "expired"
    assert queue.expire_due() == []
    assert [a.id for a in queue.list(status="pending")] == [second.id]

    [event] = [e for e in audit.events(first.session_id) if e.type == "escalation.expired"]
    assert event.payload["approval_id"] == first.id
    assert event.payload["approver"] is None
    assert event.payload["why"]

    with pytest.raises(ApprovalExpired):
        queue.approve(first.id, BOB, why="too late")
    assert [a.id for a in queue.expire_due(now=T0 + 90 * NS)] == [second.id]


def test_approving_an_overdue_unswept_request_expires_it(
    db: Path, audit: AuditStore, clock: Clock, request_for: Callable[..., dict[str, Any]]
) -> None:
    queue = ApprovalQueue(db, audit=audit, clock=clock, request_ttl_seconds=60)
    approval = queue.request(escalate_decision(), request_for())
    clock.advance(61)
    with pytest.raises(ApprovalExpired):
        queue.approve(approval.id, BOB, why="late")
    assert queue.get(approval.id).status == "expired"
    assert _types(audit, approval.session_id) == ["escalation.requested", "escalation.expired"]
    # Asking again opens a fresh request.
    again = queue.request(escalate_decision(), request_for(approval.session_id))
    assert again.id != approval.id
    assert again.status == "pending"


def test_request_never_outlives_its_session(queue: ApprovalQueue, broker: SessionBroker) -> None:
    sid = broker.open(ALICE, BOT, "quick-lookup").session.id  # 60 s session, 900 s request TTL
    approval = queue.request(escalate_decision(), enriched_request(broker.to_input(sid)))
    assert approval.expires_at_ns == T0 + 60 * NS


def test_grant_expires_after_its_own_ttl(
    queue: ApprovalQueue,
    broker: SessionBroker,
    clock: Clock,
    request_for: Callable[..., dict[str, Any]],
) -> None:
    request = request_for()
    sid = request["session"]["id"]
    approval = queue.request(escalate_decision(ttl=120), request)
    queue.approve(approval.id, BOB, why="ok")
    clock.advance(119)
    assert len(broker.to_input(sid)["approvals"]) == 1
    clock.advance(1)
    assert broker.to_input(sid)["approvals"] == []
    assert queue.active_grants(sid) == []
    # The record of the approval itself stays.
    assert queue.get(approval.id).status == "approved"


# --- grants are bound to session + fingerprint ------------------------------------------------


def test_grant_is_bound_to_its_session_and_fingerprint(
    queue: ApprovalQueue,
    broker: SessionBroker,
    request_for: Callable[..., dict[str, Any]],
) -> None:
    request = request_for()
    sid = request["session"]["id"]
    fingerprint = request["action"]["fingerprint"]
    approval = queue.request(escalate_decision(), request)
    queue.approve(approval.id, BOB, why="ok")

    # The granted action's input carries the grant ...
    assert [
        g["approval_id"] for g in broker.to_input(sid, fingerprint=fingerprint)["approvals"]
    ] == [approval.id]
    # ... the same session's input for other parameters does not ...
    other_action = request_for(sid, parameters={"amount": 9999})
    other_fp = other_action["action"]["fingerprint"]
    assert other_fp != fingerprint
    assert broker.to_input(sid, fingerprint=other_fp)["approvals"] == []
    # ... and another session's input never does, not even for the identical action.
    carol = request_for(human=CAROL)
    assert carol["action"]["fingerprint"] == fingerprint
    assert broker.to_input(carol["session"]["id"])["approvals"] == []
    assert broker.to_input(carol["session"]["id"], fingerprint=fingerprint)["approvals"] == []
    assert queue.active_grants(carol["session"]["id"]) == []


def test_queue_state_survives_a_restart(
    db: Path, audit: AuditStore, clock: Clock, request_for: Callable[..., dict[str, Any]]
) -> None:
    first = ApprovalQueue(db, audit=audit, clock=clock)
    pending = first.request(escalate_decision(), request_for())
    approved = first.request(escalate_decision(), request_for())
    first.approve(approved.id, BOB, why="ok")
    del first

    second = ApprovalQueue(db, audit=audit, clock=clock)
    assert second.get(pending.id).status == "pending"
    assert [g.approval_id for g in second.active_grants(approved.session_id)] == [approved.id]
    assert second.approve(pending.id, BOB, why="after restart").status == "approved"


def test_list_filters(queue: ApprovalQueue, request_for: Callable[..., dict[str, Any]]) -> None:
    a = queue.request(escalate_decision(), request_for())
    b = queue.request(escalate_decision(), request_for())
    queue.deny(b.id, BOB, why="no")
    assert [x.id for x in queue.list()] == [a.id, b.id]
    assert [x.id for x in queue.list(status="pending")] == [a.id]
    assert [x.id for x in queue.list(session_id=b.session_id)] == [b.id]
    assert queue.list(status="approved", session_id=a.session_id) == []
    with pytest.raises(ValueError, match="status"):
        queue.list(status="bogus")
