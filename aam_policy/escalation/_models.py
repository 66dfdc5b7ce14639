"""Approval requests, approvers, grants, and escalation errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, field_validator

ApprovalStatus = Literal["pending", "approved", "denied", "expired"]
STATUSES: tuple[str, ...] = ("pending", "approved", "denied", "expired")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Approver(_Frozen):
    """A human resolving an escalation, as authenticated by the approval channel."""

    id: str
    roles: tuple[str, ...] = ()

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not value.strip() or any(ord(ch) < 32 for ch in value):
            raise ValueError("approver id must be a non-empty string without control chars")
        return value


def is_eligible(approvers: Sequence[str], approver: Approver) -> bool:
    """`role:<name>` matches one of the approver's roles, `user:<name>` their id."""
    for entry in approvers:
        kind, _, name = entry.partition(":")
        if (kind == "role" and name in approver.roles) or (kind == "user" and name == approver.id):
            return True
    return False


class Grant(_Frozen):
    """An approval turned into permission: bound to one session and one action fingerprint."""

    approval_id: str
    session_id: str
    fingerprint: str
    approver: str
    expires_at_ns: int

    def to_input(self) -> dict[str, Any]:
        """The `input.session.approvals` entry."""
        return {
            "approval_id": self.approval_id,
            "fingerprint": self.fingerprint,
            "approver": self.approver,
            "expires_at_ns": self.expires_at_ns,
        }


class Approval(_Frozen):
    """One escalation request and, once resolved, who resolved it, why, and the grant."""

    id: str
    session_id: str
    fingerprint: str
    status: ApprovalStatus
    intent: str | None
    human: str | None
    agent: str | None
    # What is to be approved (tool, operation, target, parameters) so approvers can judge it.
    action: dict[str, Any]
    approvers: tuple[str, ...]
    approval_ttl_seconds: int
    reason: str
    reasons: tuple[dict[str, Any], ...]
    policy_revision: str | None
    requested_at_ns: int
    expires_at_ns: int
    resolved_at_ns: int | None = None
    resolved_by: str | None = None
    why: str | None = None
    grant_expires_at_ns: int | None = None

    @property
    def grant(self) -> Grant | None:
        if self.status != "approved" or self.grant_expires_at_ns is None:
            return None
        return Grant(
            approval_id=self.id,
            session_id=self.session_id,
            fingerprint=self.fingerprint,
            approver=self.resolved_by or "",
            expires_at_ns=self.grant_expires_at_ns,
        )


class AuditSink(Protocol):
    """What the queue needs from `aam_policy.audit.AuditStore`."""

    def append(
        self,
        type: str,
        session_id: str | None,
        payload: dict[str, Any],
        actor: str | None = None,
    ) -> object: ...


# --- errors -----------------------------------------------------------------------------------


class EscalationError(Exception):
    """Base class of every escalation error."""


class InvalidEscalation(EscalationError, ValueError):
    """The decision is not an escalation, or the request lacks a session or fingerprint."""


class ApprovalNotFound(EscalationError, LookupError):
    """No approval with this id."""


class AlreadyResolved(EscalationError):
    """The approval is no longer pending (someone else resolved it first, or it expired)."""

    def __init__(self, approval_id: str, status: str) -> None:
        super().__init__(f"approval {approval_id} is already {status}")
        self.approval_id = approval_id
        self.status = status


class ApprovalExpired(AlreadyResolved):
    """The request waited longer than its expiry; it is now `expired`."""


class ApproverNotEligible(EscalationError, PermissionError):
    """The approver matches none of the escalation's `role:` / `user:` approvers."""


class SelfApprovalRefused(ApproverNotEligible):
    """The approver is the human (or agent) of the session that asked."""
