"""The audit store's value types: stored events, chain heads, verify results."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

# The audit vocabulary (DESIGN.md "Sessions, escalation, audit"). `append` refuses anything else.
EVENT_TYPES: frozenset[str] = frozenset(
    {
        "session.opened",
        "decision",
        "escalation.requested",
        "escalation.approved",
        "escalation.denied",
        "escalation.expired",
        "action.executed",
        "session.teardown",
    }
)


class AuditEvent(BaseModel):
    """One stored event. `payload` is the redacted payload as stored; `hash` covers every
    other field (see `aam_policy.audit._chain`)."""

    model_config = ConfigDict(frozen=True)

    seq: int
    event_id: str
    ts_ns: int
    type: str
    session_id: str | None
    actor: str | None
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class ChainHead(BaseModel):
    """The last event of the chain: keep one outside the database (print it, ship it to a log
    service) and pass it to `AuditStore.verify(anchor=...)` to catch a wholesale rewrite."""

    model_config = ConfigDict(frozen=True)

    seq: int
    hash: str


class VerifyResult(BaseModel):
    """Outcome of `AuditStore.verify()`.

    `checked` counts the events verified good (all of them when `ok`); `first_bad_seq` is the
    earliest event found edited, missing or out of place, and `problem` says what, e.g.
    ``"event 17 (decision): hash mismatch — content was edited"``.
    """

    model_config = ConfigDict(frozen=True)

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    head: ChainHead | None = None

    def __str__(self) -> str:
        if self.ok:
            if self.head is None or self.head.seq == 0:
                return "audit chain OK: no events"
            return (
                f"audit chain OK: {self.checked} event(s) verified, "
                f"head #{self.head.seq} {self.head.hash[:16]}"
            )
        return f"audit chain BROKEN after {self.checked} good event(s): {self.problem}"
