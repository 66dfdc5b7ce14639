"""Shared builders for the session and escalation tests (not a test module)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from aam_policy.sessions import AgentIdentity, HumanPrincipal, action_fingerprint

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
NS = 1_000_000_000

ALICE = HumanPrincipal(id="alice@example.com", roles=("support-agent",), groups=("emea",))
CAROL = HumanPrincipal(id="carol@example.com", roles=("support-agent",))
BOT = AgentIdentity(
    id="spiffe://example.org/agents/support-bot", kind="assistant", owner="team-support"
)
PLANNER = AgentIdentity(id="spiffe://example.org/agents/planner", kind="planner", owner="team-ai")

REGISTRY: dict[str, Any] = {
    "resolve-support-ticket": {
        "id": "resolve-support-ticket",
        "package": "resolve_support_ticket",
        "owner": "team-support",
        "session": {"max_ttl_seconds": 600, "max_actions": 50},
    },
    "quick-lookup": {
        "id": "quick-lookup",
        "package": "quick_lookup",
        "owner": "team-support",
        "session": {"max_ttl_seconds": 60, "max_actions": 3},
    },
}


class Clock:
    """An injectable, thread-safe nanosecond clock."""

    def __init__(self, start: int = T0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> int:
        with self._lock:
            self._now += int(seconds * NS)
            return self._now


def enriched_request(
    session: dict[str, Any],
    *,
    tool: str = "payments.refund",
    operation: str = "write",
    parameters: dict[str, Any] | None = None,
    human: HumanPrincipal = ALICE,
    agent: AgentIdentity = BOT,
    time_ns: int = T0,
) -> dict[str, Any]:
    """An enriched `input` for `session` (an `input.session` dict), fingerprint computed."""
    action: dict[str, Any] = {
        "tool": tool,
        "operation": operation,
        "target": {"system": "stripe", "resource": "charge/ch_123", "environment": "production"},
        "parameters": {"amount": 500, "currency": "EUR"} if parameters is None else parameters,
    }
    action["fingerprint"] = action_fingerprint(action)
    return {
        "request_id": "00000000-0000-4000-8000-000000000000",
        "actor": {
            "human": {"id": human.id, "roles": list(human.roles), "groups": list(human.groups)},
            "agent": {"id": agent.id, "kind": agent.kind, "owner": agent.owner},
        },
        "delegation": [],
        "intent": {"id": session["intent"], "purpose": "refund", "prompt_sha256": "0" * 64},
        "action": action,
        "data": {"sensitivity": "confidential", "categories": ["pii"]},
        "session": session,
        "context": {"time_ns": time_ns, "break_glass": None},
    }


def escalate_decision(
    approvers: list[str] | None = None, ttl: int = 900, intent: str = "resolve-support-ticket"
) -> dict[str, Any]:
    return {
        "outcome": "escalate",
        "allow": False,
        "intent": intent,
        "reasons": [
            {"code": "escalation_required", "message": "refund over 100 needs a payments lead"}
        ],
        "escalation": {
            "approvers": approvers if approvers is not None else ["role:payments-lead"],
            "approval_ttl_seconds": ttl,
        },
        "obligations": {"max_session_ttl_seconds": 600, "review_required": False},
        "policy": {"revision": "rev-1", "intent_revision": "irev-1"},
    }


def allow_decision(intent: str = "resolve-support-ticket") -> dict[str, Any]:
    return {
        "outcome": "allow",
        "allow": True,
        "intent": intent,
        "reasons": [],
        "escalation": None,
        "obligations": {"max_session_ttl_seconds": 600, "review_required": False},
        "policy": {"revision": "rev-1", "intent_revision": "irev-1"},
    }


def sqlite_bytes(db: Path) -> bytes:
    """Everything SQLite may have written for `db`: main file, WAL and shared memory."""
    data = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = Path(str(db) + suffix)
        if path.exists():
            data += path.read_bytes()
    return data
