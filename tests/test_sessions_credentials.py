"""Credential brokering: released only for an allowed, matching action; never leaked."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pytest
from pydantic import SecretStr
from session_helpers import (
    ALICE,
    BOT,
    CAROL,
    REGISTRY,
    Clock,
    allow_decision,
    enriched_request,
    escalate_decision,
    sqlite_bytes,
)

from aam_policy.audit import AuditStore
from aam_policy.escalation import ApprovalQueue, Approver
from aam_policy.sessions import CredentialDenied, SessionBroker, SigningKeys, action_fingerprint

INTENT = "resolve-support-ticket"
# Deliberately not shaped like any known key format, so the audit store's own secret scrubbing
# cannot hide a leak from this test: the value must simply never be handed over.
SECRET = "hunter2-CorrectHorse-BatteryStaple-xyzzy"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def audit(tmp_path: Path) -> AuditStore:
    return AuditStore(tmp_path / "audit.db")


@pytest.fixture
def broker(tmp_path: Path, audit: AuditStore, clock: Clock) -> SessionBroker:
    keys = SigningKeys({"k1": secrets.token_bytes(32)})
    broker = SessionBroker(tmp_path / "sessions.db", keys, REGISTRY, audit=audit, clock=clock)
    broker.register_credential("stripe", SECRET, tools=["payments.refund"])
    return broker


def _live(broker: SessionBroker) -> tuple[str, dict]:
    sid = broker.open(ALICE, BOT, INTENT, purpose="refund", prompt="refund it").session.id
    return sid, enriched_request(broker.to_input(sid))


def test_allowed_matching_action_gets_the_credential(broker: SessionBroker) -> None:
    sid, request = _live(broker)
    assert broker.credential_for(sid, "stripe", allow_decision(), request) == SECRET
    assert broker.credential_names() == ["stripe"]


def test_credential_needs_an_allow_decision(broker: SessionBroker) -> None:
    sid, request = _live(broker)
    deny = {**allow_decision(), "outcome": "deny", "allow": False}
    for decision in (deny, escalate_decision(), {**allow_decision(), "allow": False}, {}):
        with pytest.raises(CredentialDenied, match="does not allow"):
            broker.credential_for(sid, "stripe", decision, request)


def test_credential_needs_a_live_session(broker: SessionBroker, clock: Clock) -> None:
    sid, request = _live(broker)
    broker.teardown(sid, "done")
    with pytest.raises(CredentialDenied, match="not live"):
        broker.credential_for(sid, "stripe", allow_decision(), request)

    sid2, request2 = _live(broker)
    clock.advance(601)
    with pytest.raises(CredentialDenied, match="not live"):
        broker.credential_for(sid2, "stripe", allow_decision(), request2)
    with pytest.raises(CredentialDenied, match="no session"):
        broker.credential_for("sess_nope", "stripe", allow_decision(), request2)


def test_fingerprint_must_match_the_action(broker: SessionBroker) -> None:
    sid, request = _live(broker)
    # Parameters changed after the decision: the stored fingerprint no longer matches.
    tampered = {**request, "action": {**request["action"], "parameters": {"amount": 99999}}}
    with pytest.raises(CredentialDenied, match="fingerprint"):
        broker.credential_for(sid, "stripe", allow_decision(), tampered)
    # A decision that names the action it was made for must name this one.
    other = {**allow_decision(), "fingerprint": "0" * 64}
    with pytest.raises(CredentialDenied, match="another action"):
        broker.credential_for(sid, "stripe", other, request)
    same = {**allow_decision(), "fingerprint": request["action"]["fingerprint"]}
    assert broker.credential_for(sid, "stripe", same, request) == SECRET


def test_request_must_belong_to_the_session(broker: SessionBroker) -> None:
    sid, _ = _live(broker)
    other_sid = broker.open(CAROL, BOT, INTENT).session.id
    foreign = enriched_request(broker.to_input(other_sid), human=CAROL)
    with pytest.raises(CredentialDenied, match="does not belong"):
        broker.credential_for(sid, "stripe", allow_decision(), foreign)
    wrong_intent = allow_decision(intent="quick-lookup")
    with pytest.raises(CredentialDenied, match="another intent"):
        broker.credential_for(sid, "stripe", wrong_intent, enriched_request(broker.to_input(sid)))


def test_credential_is_bound_to_its_tools(broker: SessionBroker) -> None:
    sid, _ = _live(broker)
    request = enriched_request(broker.to_input(sid), tool="crm.read_ticket", operation="read")
    with pytest.raises(CredentialDenied, match="not bound"):
        broker.credential_for(sid, "stripe", allow_decision(), request)
    with pytest.raises(CredentialDenied, match="no credential"):
        broker.credential_for(sid, "github", allow_decision(), request)


def test_credential_names_and_validation(broker: SessionBroker) -> None:
    broker.register_credential("github", SecretStr("ghp_" + "a" * 20))
    assert broker.credential_names() == ["github", "stripe"]
    broker.unregister_credential("github")
    assert broker.credential_names() == ["stripe"]
    with pytest.raises(ValueError):
        broker.register_credential("", "x")
    with pytest.raises(ValueError, match="empty"):
        broker.register_credential("blank", "")


def test_fingerprint_is_canonical() -> None:
    a = {"tool": "t", "operation": "read", "target": {"b": 1, "a": 2}, "parameters": {"x": "é"}}
    b = {"parameters": {"x": "é"}, "target": {"a": 2, "b": 1}, "operation": "read", "tool": "t"}
    assert action_fingerprint(a) == action_fingerprint(b)
    assert action_fingerprint(a) != action_fingerprint({**a, "parameters": {"x": "e"}})
    assert action_fingerprint({**a, "fingerprint": "ignored"}) == action_fingerprint(a)


def test_credential_value_never_leaks(
    tmp_path: Path,
    broker: SessionBroker,
    audit: AuditStore,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    queue = ApprovalQueue(tmp_path / "sessions.db", audit=audit, clock=clock)
    broker.set_grant_source(queue)
    broker.register_credential("db", SecretStr(SECRET + "-db"))

    # A whole session: open, allowed use, an escalation resolved, failures, teardown.
    opened = broker.open(ALICE, BOT, INTENT, purpose="refund", prompt="refund it")
    sid = opened.session.id
    request = enriched_request(broker.to_input(sid))
    assert broker.credential_for(sid, "stripe", allow_decision(), request) == SECRET
    broker.record_decision(sid, "payments.refund", "confidential", counted=True)
    approval = queue.request(escalate_decision(), request)
    queue.approve(approval.id, Approver(id="bob", roles=("payments-lead",)), why="ok")
    with pytest.raises(CredentialDenied) as denied:
        broker.credential_for(sid, "stripe", escalate_decision(), request)
    assert SECRET not in str(denied.value)
    broker.teardown(sid, "done")
    with pytest.raises(CredentialDenied) as denied:
        broker.credential_for(sid, "stripe", allow_decision(), request)
    assert SECRET not in str(denied.value)

    texts = [
        repr(broker),
        str(broker),
        repr(broker.get(sid)),
        repr(opened),
        repr(queue.get(approval.id)),
        caplog.text,
        *(repr(record.args) for record in caplog.records),
        *(repr(event) for event in audit.events()),
    ]
    for text in texts:
        assert SECRET not in text
    assert "stripe" in repr(broker)  # names are fine, values are not

    for db in (tmp_path / "sessions.db", tmp_path / "audit.db"):
        assert db.exists()
        assert SECRET.encode() not in sqlite_bytes(db)
