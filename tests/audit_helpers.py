"""Shared builders for the audit tests (not a test module)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from aam_policy.audit import AuditStore

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
NS = 1_000_000_000
SESSION = "sess_trace"
ALICE = "alice@example.com"
BOB = "bob@example.com"
BOT = "spiffe://example.org/agents/support-bot"
TRIGGERS = (
    "events_no_update",
    "events_no_delete",
    "events_extend_head",
    "chain_head_forward",
    "chain_head_no_delete",
)


def fill(store: AuditStore, n: int, session_id: str = "sess_fill") -> None:
    """`n` decision events with distinct payloads and timestamps."""
    for i in range(n):
        store.append(
            "decision",
            session_id,
            {"tool": "crm.read_ticket", "operation": "read", "outcome": "allow", "i": i},
            actor=ALICE,
            ts_ns=T0 + i * NS,
        )


def tamper(path: Path) -> sqlite3.Connection:
    """A raw connection to the store's file with the protective triggers dropped, as an
    attacker with file access would have."""
    conn = sqlite3.connect(path, isolation_level=None)
    for name in TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    return conn


def row(conn: sqlite3.Connection, seq: int) -> tuple[Any, ...]:
    return conn.execute(
        "SELECT seq, event_id, ts_ns, type, session_id, actor, payload_json, prev_hash, hash "
        "FROM events WHERE seq = ?",
        (seq,),
    ).fetchone()


def play_session(store: AuditStore, session_id: str = SESSION) -> None:
    """One scripted session: allowed read, drift deny, escalation approved, retry, action,
    teardown, a refused decision after teardown."""
    t = T0

    def at(step: int) -> int:
        return t + step * NS

    store.append(
        "session.opened",
        session_id,
        {
            "human": ALICE,
            "agent": BOT,
            "intent": "resolve-support-ticket",
            "purpose": "resolve ticket T-1 and refund the customer",
            "prompt": "Please resolve ticket 4711 for carol@example.com and refund 500 EUR.",
            "expires_at_ns": at(600),
            "ttl_seconds": 600,
        },
        actor=ALICE,
        ts_ns=at(0),
    )
    decision = {
        "request_id": "r1",
        "tool": "crm.read_ticket",
        "operation": "read",
        "fingerprint": "a" * 64,
        "outcome": "allow",
        "reasons": [],
        "revision": "rev1" * 16,
        "intent_revision": "int1" * 16,
    }
    store.append("decision", session_id, {**decision, "decision_id": "d1"}, ALICE, at(1))
    store.append(
        "action.executed",
        session_id,
        {
            "tool": "crm.read_ticket",
            "operation": "read",
            "fingerprint": "a" * 64,
            "status": "ok",
            "result_summary": "ticket T-1",
        },
        ALICE,
        at(2),
    )
    store.append(
        "decision",
        session_id,
        {
            **decision,
            "decision_id": "d2",
            "request_id": "r2",
            "tool": "email.send_external",
            "operation": "write",
            "fingerprint": "b" * 64,
            "outcome": "deny",
            "reasons": [{"code": "tool_not_in_intent", "message": "not in the intent"}],
        },
        ALICE,
        at(3),
    )
    store.append(
        "decision",
        session_id,
        {
            **decision,
            "decision_id": "d3",
            "request_id": "r3",
            "tool": "payments.refund",
            "operation": "write",
            "fingerprint": "c" * 64,
            "outcome": "escalate",
            "reasons": [{"code": "escalation_required", "message": "refund over 100"}],
            "approval_id": "apr_1",
        },
        ALICE,
        at(4),
    )
    store.append(
        "escalation.requested",
        session_id,
        {
            "approval_id": "apr_1",
            "fingerprint": "c" * 64,
            "tool": "payments.refund",
            "approvers": ["role:payments-lead"],
            "reason": "refund over 100",
            "expires_at_ns": at(900),
        },
        ALICE,
        at(5),
    )
    store.append(
        "escalation.approved",
        session_id,
        {"approval_id": "apr_1", "approver": BOB, "why": "customer verified"},
        BOB,
        at(6),
    )
    store.append(
        "decision",
        session_id,
        {
            **decision,
            "decision_id": "d4",
            "request_id": "r4",
            "tool": "payments.refund",
            "operation": "write",
            "fingerprint": "c" * 64,
            "outcome": "allow",
            "reasons": [{"code": "approval_granted", "message": "approved by bob"}],
        },
        ALICE,
        at(7),
    )
    store.append(
        "action.executed",
        session_id,
        {
            "tool": "payments.refund",
            "operation": "write",
            "fingerprint": "c" * 64,
            "status": "ok",
            "result_summary": "refunded",
        },
        ALICE,
        at(8),
    )
    store.append(
        "session.teardown",
        session_id,
        {"reason": "task complete", "kind": "completed"},
        ALICE,
        at(9),
    )
    store.append(
        "decision",
        session_id,
        {
            **decision,
            "decision_id": "d5",
            "request_id": "r5",
            "outcome": "deny",
            "reasons": [{"code": "session_revoked", "message": "the session has ended"}],
        },
        ALICE,
        at(10),
    )
