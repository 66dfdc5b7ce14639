"""Session broker: lifecycle, TTL capping, revocation, state tracking, persistence."""

from __future__ import annotations

import hashlib
import secrets
import threading
from pathlib import Path

import pytest
from session_helpers import ALICE, BOT, CAROL, NS, PLANNER, REGISTRY, T0, Clock, sqlite_bytes

from aam_policy.audit import AuditStore
from aam_policy.sessions import (
    SessionBroker,
    SessionExpired,
    SessionNotFound,
    SessionRevoked,
    SigningKeys,
    UnknownIntent,
)

INTENT = "resolve-support-ticket"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys() -> SigningKeys:
    return SigningKeys({"k1": secrets.token_bytes(32)})


@pytest.fixture
def audit(tmp_path: Path) -> AuditStore:
    return AuditStore(tmp_path / "audit.db")


@pytest.fixture
def broker(tmp_path: Path, keys: SigningKeys, audit: AuditStore, clock: Clock) -> SessionBroker:
    return SessionBroker(tmp_path / "sessions.db", keys, REGISTRY, audit=audit, clock=clock)


def _events(audit: AuditStore, session_id: str, type_: str) -> list:
    return [event for event in audit.events(session_id) if event.type == type_]


# --- open -------------------------------------------------------------------------------------


def test_open_issues_a_session_and_audits_it(broker: SessionBroker, audit: AuditStore) -> None:
    opened = broker.open(ALICE, BOT, INTENT, ttl=300, purpose="refund ticket 42", prompt="hi")
    session = opened.session
    assert session.id.startswith("sess_") and len(session.id) > 20
    assert session.intent == INTENT
    assert session.human == ALICE
    assert session.agent == BOT
    assert session.issued_at_ns == T0
    assert session.expires_at_ns == T0 + 300 * NS
    assert session.max_actions == 50
    assert (session.actions_used, session.tools_used, session.max_sensitivity_seen) == (
        0,
        (),
        "public",
    )
    assert broker.verify(opened.token) == session

    [event] = _events(audit, session.id, "session.opened")
    assert event.payload["human"] == ALICE.id
    assert event.payload["agent"] == BOT.id
    assert event.payload["intent"] == INTENT
    assert event.payload["purpose"] == "refund ticket 42"
    assert event.payload["expires_at_ns"] == session.expires_at_ns
    assert event.payload["ttl_seconds"] == 300
    assert event.payload["prompt"]["sha256"] == hashlib.sha256(b"hi").hexdigest()


def test_session_ids_are_unique(broker: SessionBroker) -> None:
    ids = {broker.open(ALICE, BOT, INTENT).session.id for _ in range(20)}
    assert len(ids) == 20


def test_principals_may_be_plain_mappings(broker: SessionBroker) -> None:
    opened = broker.open(
        {"id": "alice@example.com", "roles": ["support-agent"]},
        {"id": BOT.id, "kind": "assistant", "owner": "team-support"},
        INTENT,
    )
    assert opened.session.human.roles == ("support-agent",)


def test_unknown_intent_is_refused(broker: SessionBroker) -> None:
    with pytest.raises(UnknownIntent, match="no-such-intent"):
        broker.open(ALICE, BOT, "no-such-intent")
    assert broker.list() == []


@pytest.mark.parametrize("ttl", [0, -5, True, 1.5])
def test_bad_ttl_is_refused(broker: SessionBroker, ttl: object) -> None:
    with pytest.raises(ValueError, match="ttl"):
        broker.open(ALICE, BOT, INTENT, ttl=ttl)  # type: ignore[arg-type]


def test_ttl_is_capped_by_the_intent_and_the_cap_recorded(
    broker: SessionBroker, audit: AuditStore
) -> None:
    capped = broker.open(ALICE, BOT, "quick-lookup", ttl=3600).session
    assert capped.ttl_seconds == 60
    assert capped.ttl_requested_seconds == 3600
    assert capped.max_ttl_seconds == 60
    assert capped.ttl_capped is True
    assert capped.expires_at_ns == T0 + 60 * NS
    [event] = _events(audit, capped.id, "session.opened")
    assert event.payload["ttl_seconds"] == 60
    assert event.payload["ttl_requested_seconds"] == 3600
    assert event.payload["ttl_capped"] is True

    default = broker.open(ALICE, BOT, "quick-lookup").session
    assert (default.ttl_seconds, default.ttl_capped, default.ttl_requested_seconds) == (
        60,
        False,
        None,
    )
    shorter = broker.open(ALICE, BOT, "quick-lookup", ttl=10).session
    assert (shorter.ttl_seconds, shorter.ttl_capped) == (10, False)


def test_prompt_is_never_stored_whole(
    tmp_path: Path, broker: SessionBroker, audit: AuditStore
) -> None:
    marker = "TOPSECRETPROMPTTAIL"
    prompt = "Please refund the customer. " + "x" * 500 + marker
    session = broker.open(ALICE, BOT, INTENT, prompt=prompt).session
    assert session.prompt_sha256 == hashlib.sha256(prompt.encode()).hexdigest()
    assert marker not in session.prompt_excerpt
    for db in (tmp_path / "sessions.db", tmp_path / "audit.db"):
        assert marker.encode() not in sqlite_bytes(db)


# --- expiry, teardown, revocation -------------------------------------------------------------


def test_sweep_expired_tears_down_only_expired_sessions(
    broker: SessionBroker, audit: AuditStore, clock: Clock
) -> None:
    short = broker.open(ALICE, BOT, INTENT, ttl=10)
    long = broker.open(ALICE, BOT, INTENT, ttl=100)
    assert broker.sweep_expired() == []
    clock.advance(10)
    assert broker.sweep_expired() == [short.session.id]
    assert broker.sweep_expired() == []  # idempotent

    with pytest.raises(SessionExpired):
        broker.verify(short.token)
    assert broker.verify(long.token).id == long.session.id
    ended = broker.get(short.session.id)
    assert (ended.end_kind, ended.end_reason, ended.ended_at_ns) == ("expired", "expired", clock())
    assert broker.to_input(short.session.id)["revoked"] is True
    [event] = _events(audit, short.session.id, "session.teardown")
    assert event.payload["reason"] == "expired"

    assert broker.sweep_expired(now=T0 + 100 * NS) == [long.session.id]


def test_expired_but_unswept_session_is_refused(broker: SessionBroker, clock: Clock) -> None:
    opened = broker.open(ALICE, BOT, INTENT, ttl=10)
    clock.advance(11)
    with pytest.raises(SessionExpired):
        broker.verify(opened.token)
    assert broker.to_input(opened.session.id)["expires_at_ns"] <= clock()


def test_teardown_refuses_the_token_and_is_idempotent(
    broker: SessionBroker, audit: AuditStore
) -> None:
    opened = broker.open(ALICE, BOT, INTENT)
    ended = broker.teardown(opened.session.id, "task complete", actor="guard")
    assert ended.ended
    assert (ended.end_kind, ended.end_reason) == ("completed", "task complete")
    with pytest.raises(SessionRevoked, match="task complete"):
        broker.verify(opened.token)
    assert broker.to_input(opened.session.id)["revoked"] is True

    again = broker.teardown(opened.session.id, "second call")
    assert again.end_reason == "task complete"
    [event] = _events(audit, opened.session.id, "session.teardown")
    assert event.payload["reason"] == "task complete"
    assert event.actor == "guard"

    with pytest.raises(SessionNotFound):
        broker.teardown("sess_missing", "x")


def test_revoke_by_session(broker: SessionBroker) -> None:
    a = broker.open(ALICE, BOT, INTENT)
    b = broker.open(ALICE, BOT, INTENT)
    assert broker.revoke(a.session.id, reason="suspicious") == [a.session.id]
    with pytest.raises(SessionRevoked, match="suspicious"):
        broker.verify(a.token)
    assert broker.verify(b.token).id == b.session.id
    assert broker.revoke(a.session.id, reason="again") == []


def test_revoke_by_agent(broker: SessionBroker, audit: AuditStore) -> None:
    bot1 = broker.open(ALICE, BOT, INTENT)
    bot2 = broker.open(CAROL, BOT, INTENT)
    planner = broker.open(ALICE, PLANNER, INTENT)
    revoked = broker.revoke(agent=BOT.id, reason="agent compromised", actor="secops")
    assert sorted(revoked) == sorted([bot1.session.id, bot2.session.id])
    for opened in (bot1, bot2):
        with pytest.raises(SessionRevoked):
            broker.verify(opened.token)
        [event] = _events(audit, opened.session.id, "session.teardown")
        assert event.payload["reason"] == "agent compromised"
        assert event.actor == "secops"
    assert broker.verify(planner.token).id == planner.session.id


def test_revoke_by_human(broker: SessionBroker) -> None:
    alice1 = broker.open(ALICE, BOT, INTENT)
    alice2 = broker.open(ALICE, PLANNER, "quick-lookup")
    carol = broker.open(CAROL, BOT, INTENT)
    assert sorted(broker.revoke(human=ALICE.id, reason="offboarded")) == sorted(
        [alice1.session.id, alice2.session.id]
    )
    for opened in (alice1, alice2):
        with pytest.raises(SessionRevoked):
            broker.verify(opened.token)
    assert broker.verify(carol.token).id == carol.session.id


def test_revoke_needs_a_selector(broker: SessionBroker) -> None:
    with pytest.raises(ValueError, match="revoke needs"):
        broker.revoke(reason="everything")


def test_list_filters(broker: SessionBroker, clock: Clock) -> None:
    a = broker.open(ALICE, BOT, INTENT, ttl=10).session
    b = broker.open(CAROL, PLANNER, "quick-lookup").session
    c = broker.open(ALICE, PLANNER, INTENT).session
    broker.teardown(c.id, "done")
    assert [s.id for s in broker.list()] == [a.id, b.id, c.id]
    assert [s.id for s in broker.list(active_only=True)] == [a.id, b.id]
    assert [s.id for s in broker.list(human=ALICE.id)] == [a.id, c.id]
    assert [s.id for s in broker.list(agent=PLANNER.id, intent="quick-lookup")] == [b.id]
    clock.advance(10)
    assert [s.id for s in broker.list(active_only=True)] == [b.id]


# --- state tracking ---------------------------------------------------------------------------


def test_record_decision_tracks_budget_tools_and_sensitivity(broker: SessionBroker) -> None:
    sid = broker.open(ALICE, BOT, INTENT).session.id
    broker.record_decision(sid, "crm.read_ticket", "internal", counted=True)
    broker.record_decision(sid, "crm.read_ticket", "confidential", counted=True)
    broker.record_decision(sid, "kb.search", "public", counted=True)
    # Denied/escalated decisions neither consume budget nor enter the chain history.
    state = broker.record_decision(sid, "email.send_external", "restricted", counted=False)
    assert state.actions_used == 3
    assert state.decisions == 4
    assert state.tools_used == ("crm.read_ticket", "kb.search")
    assert state.max_sensitivity_seen == "confidential"

    # Unknown or missing sensitivity counts as restricted (fail closed).
    assert broker.record_decision(sid, "x.y", None, counted=True).max_sensitivity_seen == (
        "restricted"
    )
    assert broker.record_decision(sid, "x.y", "public", counted=True).max_sensitivity_seen == (
        "restricted"
    )
    other = broker.open(ALICE, BOT, INTENT).session.id
    assert broker.record_decision(other, "x.y", "top-secret", True).max_sensitivity_seen == (
        "restricted"
    )


def test_to_input_is_the_design_session_object(broker: SessionBroker) -> None:
    session = broker.open(ALICE, BOT, INTENT, ttl=120).session
    broker.record_decision(session.id, "crm.read_ticket", "confidential", counted=True)
    assert broker.to_input(session.id) == {
        "id": session.id,
        "intent": INTENT,
        "human": ALICE.id,
        "agent": BOT.id,
        "issued_at_ns": T0,
        "expires_at_ns": T0 + 120 * NS,
        "revoked": False,
        "actions_used": 1,
        "tools_used": ["crm.read_ticket"],
        "max_sensitivity_seen": "confidential",
        "approvals": [],
    }
    with pytest.raises(SessionNotFound):
        broker.to_input("sess_nope")


def test_counted_action_on_ended_session_is_refused(broker: SessionBroker) -> None:
    sid = broker.open(ALICE, BOT, INTENT).session.id
    broker.teardown(sid, "done")
    with pytest.raises(SessionRevoked):
        broker.record_decision(sid, "crm.read_ticket", "public", counted=True)
    # A denied decision after teardown is still recorded (the Guard logs it).
    assert broker.record_decision(sid, "crm.read_ticket", "public", counted=False).decisions == 1
    with pytest.raises(SessionNotFound):
        broker.record_decision("sess_nope", "crm.read_ticket", "public", counted=True)


def test_concurrent_decisions_are_all_counted(tmp_path: Path, keys: SigningKeys) -> None:
    db = tmp_path / "sessions.db"
    sid = SessionBroker(db, keys, REGISTRY).open(ALICE, BOT, INTENT).session.id
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        # A broker per thread, like separate worker processes sharing the file.
        broker = SessionBroker(db, keys, REGISTRY)
        barrier.wait()
        try:
            for i in range(25):
                broker.record_decision(sid, f"tool.t{n}_{i % 3}", "internal", counted=True)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    state = SessionBroker(db, keys, REGISTRY).get(sid)
    assert state.actions_used == 200
    assert len(state.tools_used) == 24
    assert len(set(state.tools_used)) == 24


# --- persistence ------------------------------------------------------------------------------


def test_restart_loses_nothing(
    tmp_path: Path, keys: SigningKeys, audit: AuditStore, clock: Clock
) -> None:
    db = tmp_path / "sessions.db"
    first = SessionBroker(db, keys, REGISTRY, audit=audit, clock=clock)
    live = first.open(ALICE, BOT, INTENT, ttl=300, purpose="p", prompt="q")
    ended = first.open(CAROL, PLANNER, "quick-lookup")
    first.record_decision(live.session.id, "crm.read_ticket", "confidential", counted=True)
    first.record_decision(live.session.id, "payments.refund", "internal", counted=True)
    first.teardown(ended.session.id, "done")
    before = {s.id: s for s in first.list()}
    del first

    # A new process: same file, keys from the same configuration.
    second = SessionBroker(db, keys, REGISTRY, audit=audit, clock=clock)
    assert {s.id: s for s in second.list()} == before
    assert second.verify(live.token) == before[live.session.id]
    assert second.to_input(live.session.id)["tools_used"] == [
        "crm.read_ticket",
        "payments.refund",
    ]
    assert second.to_input(live.session.id)["actions_used"] == 2
    with pytest.raises(SessionRevoked):
        second.verify(ended.token)


def test_database_uses_wal(broker: SessionBroker) -> None:
    import sqlite3

    conn = sqlite3.connect(broker.db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_opened_session_repr_hides_the_token(broker: SessionBroker) -> None:
    opened = broker.open(ALICE, BOT, INTENT)
    assert opened.token not in repr(opened)
    assert opened.token not in str(opened)
