"""Trace rebuild: causal order, grouped facts, gaps, rendering and JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from audit_helpers import ALICE, BOB, BOT, NS, SESSION, T0, play_session, tamper

from aam_policy.audit import AuditStore, Trace, build_trace, prompt_digest, render_trace

ANSI = re.compile(r"\x1b\[[0-9;]*m")
PROMPT = "Please resolve ticket 4711 for carol@example.com and refund 500 EUR."


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    s = AuditStore(tmp_path / "audit.db")
    yield s
    s.close()


def test_trace_rebuilds_the_session_in_causal_order(store: AuditStore) -> None:
    store.append("session.opened", "someone_else", {"human": BOB}, actor=BOB)
    play_session(store)
    trace = store.trace(SESSION)
    assert trace.found
    assert [s.type for s in trace.steps] == [
        "session.opened",
        "decision",
        "action.executed",
        "decision",
        "decision",
        "escalation.requested",
        "escalation.approved",
        "decision",
        "action.executed",
        "session.teardown",
        "decision",
    ]
    seqs = [s.seq for s in trace.steps]
    assert seqs == sorted(seqs) and seqs[0] == 2  # other sessions' events are left out
    # person -> agent -> purpose + prompt
    assert (trace.human, trace.agent, trace.intent) == (ALICE, BOT, "resolve-support-ticket")
    assert trace.purpose == "resolve ticket T-1 and refund the customer"
    assert trace.prompt is not None and trace.prompt.model_dump() == prompt_digest(PROMPT)
    assert (trace.opened_at_ns, trace.ttl_seconds, trace.expires_at_ns) == (T0, 600, T0 + 600 * NS)
    # decisions with outcome, reasons and revisions
    assert [(d.tool, d.outcome) for d in trace.decisions] == [
        ("crm.read_ticket", "allow"),
        ("email.send_external", "deny"),
        ("payments.refund", "escalate"),
        ("payments.refund", "allow"),
        ("crm.read_ticket", "deny"),
    ]
    assert trace.decisions[1].reasons[0].code == "tool_not_in_intent"
    assert trace.decisions[0].revision == "rev1" * 16
    assert trace.decisions[0].intent_revision == "int1" * 16
    assert trace.decisions[2].approval_id == "apr_1"
    # the escalation and who resolved it, why
    (escalation,) = trace.escalations
    assert escalation.status == "approved"
    assert (escalation.resolved_by, escalation.why) == (BOB, "customer verified")
    assert escalation.approvers == ["role:payments-lead"] and escalation.requested_by == ALICE
    assert escalation.requested_seq < escalation.resolved_seq
    # actions, each tied to the allow decision it ran under
    assert [(a.tool, a.status) for a in trace.actions] == [
        ("crm.read_ticket", "ok"),
        ("payments.refund", "ok"),
    ]
    assert trace.actions[1].authorized_by_seq == trace.decisions[3].seq
    assert trace.teardown is not None and trace.teardown.reason == "task complete"
    assert trace.teardown.by == ALICE
    # a refused decision after teardown is expected, not a gap
    assert trace.gaps == []


def test_trace_includes_ingested_opa_decisions(store: AuditStore) -> None:
    play_session(store)
    store.ingest_decision_logs(
        [
            {
                "decision_id": "opa-9",
                "path": "aam/decision",
                "input": {
                    "session": {"id": SESSION},
                    "actor": {"human": {"id": ALICE}},
                    "action": {"tool": "crm.read_ticket", "operation": "read"},
                },
                "result": {
                    "outcome": "deny",
                    "reasons": [{"code": "session_revoked", "message": "ended"}],
                },
                "timestamp": "2026-01-01T00:00:11Z",
            }
        ]
    )
    trace = store.trace(SESSION)
    assert trace.decisions[-1].source == "opa"
    assert trace.decisions[-1].ts_ns == T0 + 11 * NS
    assert "via OPA log" in render_trace(trace)


def test_gaps_are_flagged(store: AuditStore) -> None:
    s = "sess_gaps"
    store.append("decision", s, {"tool": "a", "outcome": "allow", "fingerprint": "f1"}, ALICE)
    store.append("session.opened", s, {"human": ALICE, "agent": BOT}, ALICE)
    store.append("session.opened", s, {"human": ALICE, "agent": BOT}, ALICE)
    store.append("action.executed", s, {"tool": "b", "fingerprint": "f2", "status": "ok"})
    store.append("action.executed", s, {"tool": "c", "status": "ok"})
    store.append("escalation.approved", s, {"approval_id": "apr_x", "approver": BOB}, BOB)
    store.append("escalation.denied", s, {"approval_id": "apr_x", "approver": BOB}, BOB)
    store.append("session.teardown", s, {"reason": "done"}, ALICE)
    store.append("decision", s, {"tool": "a", "outcome": "allow", "fingerprint": "f1"}, ALICE)
    store.append("action.executed", s, {"tool": "a", "fingerprint": "f1", "status": "ok"})
    store.append("escalation.expired", s, {"approval_id": "apr_y", "approver": None})
    trace = store.trace(s)
    kinds = [(g.kind, g.seq) for g in trace.gaps]
    assert kinds == [
        ("missing_open", 2),
        ("duplicate_open", 3),
        ("action_without_allow", 4),
        ("action_without_allow", 5),
        ("escalation_unknown", 6),
        ("escalation_resolved_twice", 7),
        ("after_teardown", 9),
        ("after_teardown", 10),
        ("escalation_unknown", 11),
    ]
    assert trace.actions[0].authorized_by_seq is None
    assert trace.actions[2].authorized_by_seq == 9
    text = render_trace(trace)
    assert "gaps     9" in text and "! #4 action_without_allow" in text


def test_trace_without_an_opened_event(store: AuditStore) -> None:
    store.append("decision", "sess_x", {"outcome": "deny"}, actor=ALICE)
    trace = store.trace("sess_x")
    assert [g.kind for g in trace.gaps] == ["missing_open"]
    assert trace.gaps[0].seq is None and trace.human == ALICE


def test_tampered_event_shows_in_the_trace(store: AuditStore, tmp_path: Path) -> None:
    play_session(store)
    tamper(tmp_path / "audit.db").execute(
        "UPDATE events SET payload_json = replace(payload_json, '\"deny\"', '\"allow\"') "
        "WHERE seq = 4"
    )
    trace = store.trace(SESSION)
    assert trace.decisions[1].outcome == "allow"  # what the row now says ...
    assert [(g.kind, g.seq) for g in trace.gaps] == [("tampered", 4)]  # ... is flagged
    assert store.verify().first_bad_seq == 4


def test_unknown_session_gives_an_empty_trace(store: AuditStore) -> None:
    play_session(store)
    trace = store.trace("sess_nope")
    assert not trace.found and trace.steps == [] and trace.gaps == []
    assert "no audit events for this session" in render_trace(trace)


def test_render_is_a_readable_timeline(store: AuditStore) -> None:
    play_session(store)
    text = render_trace(store.trace(SESSION))
    assert not ANSI.search(text)
    lines = text.splitlines()
    assert lines[0] == f"Session {SESSION} — intent resolve-support-ticket"
    assert lines[1].split() == ["person", ALICE]
    assert lines[2].split() == ["agent", BOT]
    assert "purpose" in lines[3] and "resolve ticket T-1" in lines[3]
    assert f"sha256 {prompt_digest(PROMPT)['sha256'][:16]}" in lines[4]
    assert '"Please resolve ticket # for [email] and…"' in lines[4]
    assert "opened 2026-01-01 00:00:00.000 UTC · ttl 600s" in lines[5]
    body = "\n".join(lines[6:])
    # each step on its own line, in order, with what matters
    order = [
        "session.opened",
        "ALLOW crm.read_ticket read",
        "DENY email.send_external write",
        "↳ tool_not_in_intent: not in the intent",
        "ESCALATE payments.refund write",
        "apr_1 for payments.refund → role:payments-lead: refund over 100",
        f"apr_1 APPROVED by {BOB}: customer verified",
        "↳ approval_granted: approved by bob",
        "payments.refund write → ok: refunded",
        f"completed: task complete (by {ALICE})",
        "↳ session_revoked: the session has ended",
    ]
    positions = [body.index(fragment) for fragment in order]
    assert positions == sorted(positions)
    assert "policy rev1rev1rev1… · intent int1int1int1…" in body
    assert "00:00:06.000  escalation.approved" in body
    assert "summary  5 decision(s) (2 allow, 2 deny, 1 escalate)" in body
    assert "1 escalation(s) (1 approved) · 2 action(s) · torn down" in body
    assert body.rstrip().endswith("gaps     none")


def test_render_colour_only_on_request(store: AuditStore) -> None:
    play_session(store)
    trace = store.trace(SESSION)
    coloured = render_trace(trace, color=True)
    assert "\x1b[1m\x1b[32mALLOW\x1b[0m" in coloured
    assert "\x1b[1m\x1b[31mDENY\x1b[0m" in coloured
    assert ANSI.sub("", coloured) == render_trace(trace, color=False)


def test_to_json_round_trips(store: AuditStore) -> None:
    play_session(store)
    trace = store.trace(SESSION)
    data = trace.to_json()
    text = json.dumps(data)  # JSON-ready as is
    assert data["session_id"] == SESSION
    assert data["prompt"]["sha256"] == prompt_digest(PROMPT)["sha256"]
    assert [s["seq"] for s in data["steps"]] == [s.seq for s in trace.steps]
    assert data["escalations"][0]["status"] == "approved"
    assert data["gaps"] == []
    assert Trace.model_validate_json(text) == trace
    # build_trace works from any event list (e.g. exported), whatever their order
    assert build_trace(SESSION, list(reversed(store.events()))) == trace
