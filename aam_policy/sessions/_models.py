"""Session data: principals, the session record, its `input.session` view, and errors."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Ordered lowest to highest; the index is the rank the policy compares.
SENSITIVITY_LEVELS: tuple[str, ...] = ("public", "internal", "confidential", "restricted")

# How a session ended (the audit trace shows it): `teardown()`, the expiry sweep, `revoke()`.
EndKind = Literal["completed", "expired", "revoked"]


def sensitivity_rank(level: str | None) -> int:
    """Rank of a sensitivity level; unknown or missing ranks as restricted (fail closed)."""
    if level in SENSITIVITY_LEVELS:
        return SENSITIVITY_LEVELS.index(level)
    return len(SENSITIVITY_LEVELS) - 1


# One regex scan instead of a Python loop per character: ids are validated on every read.
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f]")


def _no_control_chars(value: str, what: str) -> str:
    if not value or _CONTROL_CHARS.search(value):
        raise ValueError(f"{what} must be a non-empty string without control characters")
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HumanPrincipal(_Frozen):
    """The person the agent acts for, as the identity provider asserted them."""

    id: str
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        return _no_control_chars(value, "human id")


class AgentIdentity(_Frozen):
    """The (workload) identity of the agent, e.g. a SPIFFE id."""

    id: str
    kind: str = "assistant"
    owner: str = ""

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        return _no_control_chars(value, "agent id")


class ApprovalGrant(_Frozen):
    """An approved escalation, exactly the shape of an `input.session.approvals` entry."""

    approval_id: str
    fingerprint: str
    approver: str
    expires_at_ns: int


class Session(_Frozen):
    """A JIT session as the broker stores it. Holds no prompt text and no credential."""

    id: str
    intent: str
    human: HumanPrincipal
    agent: AgentIdentity
    purpose: str
    prompt_sha256: str
    prompt_excerpt: str
    issued_at_ns: int
    expires_at_ns: int
    # TTL bookkeeping: what was asked, what the intent allows, what was granted.
    ttl_requested_seconds: int | None
    max_ttl_seconds: int
    ttl_seconds: int
    ttl_capped: bool
    max_actions: int | None
    actions_used: int = 0
    decisions: int = 0
    tools_used: tuple[str, ...] = ()
    max_sensitivity_seen: str = "public"
    approvals: tuple[ApprovalGrant, ...] = ()
    ended_at_ns: int | None = None
    end_kind: EndKind | None = None
    end_reason: str | None = None

    @property
    def ended(self) -> bool:
        """Torn down, revoked or swept as expired: never usable again."""
        return self.ended_at_ns is not None

    def is_live(self, now_ns: int) -> bool:
        return not self.ended and now_ns < self.expires_at_ns

    def to_input(self, fingerprint: str | None = None) -> dict[str, Any]:
        """The DESIGN.md `input.session` object.

        `revoked` is true for every ended session (teardown included) so that a decision
        after teardown is denied even before the TTL runs out.
        """
        approvals = [
            grant.model_dump()
            for grant in self.approvals
            if fingerprint is None or grant.fingerprint == fingerprint
        ]
        return {
            "id": self.id,
            "intent": self.intent,
            "human": self.human.id,
            "agent": self.agent.id,
            "issued_at_ns": self.issued_at_ns,
            "expires_at_ns": self.expires_at_ns,
            "revoked": self.ended,
            "actions_used": self.actions_used,
            "tools_used": list(self.tools_used),
            "max_sensitivity_seen": self.max_sensitivity_seen,
            "approvals": approvals,
        }


class OpenedSession(_Frozen):
    """What `SessionBroker.open` returns: the session and its bearer token.

    The token is hidden from repr so it does not end up in logs by accident.
    """

    session: Session
    token: str = Field(repr=False)


# --- errors -----------------------------------------------------------------------------------


class SessionError(Exception):
    """Base class of every session error."""


class TokenInvalid(SessionError):
    """Malformed, forged (bad signature, unknown key id, wrong algorithm) or mismatched token."""


class SessionExpired(SessionError):
    """The session's TTL has run out."""


class SessionRevoked(SessionError):
    """The session was torn down or revoked."""


class SessionNotFound(SessionError, KeyError):
    """No session with this id in the store."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "session not found"


class UnknownIntent(SessionError, ValueError):
    """The intent is not in the compiled bundle's registry."""


class CredentialDenied(SessionError):
    """The broker refused to release a credential. The message never contains the value."""


# --- collaborators (structural, so this package imports neither audit nor escalation) ---------


class AuditSink(Protocol):
    """What the broker needs from `aam_policy.audit.AuditStore`."""

    def append(
        self,
        type: str,
        session_id: str | None,
        payload: dict[str, Any],
        actor: str | None = None,
    ) -> object: ...


class GrantLike(Protocol):
    @property
    def approval_id(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def approver(self) -> str: ...
    @property
    def expires_at_ns(self) -> int: ...


class GrantSource(Protocol):
    """Where approval grants live (`aam_policy.escalation.ApprovalQueue` satisfies this).

    Grants stay with the approval queue so an approver (CLI, web hook) needs only the queue's
    database, not the session signing keys; the broker reads them when it builds
    `input.session.approvals`.
    """

    def active_grants(self, session_id: str, now_ns: int) -> Sequence[GrantLike]: ...


def coerce_model(model: type[_Frozen], value: Any) -> Any:
    """Accept a model instance or a plain mapping (CLI, JSON) for a principal."""
    if isinstance(value, model):
        return value
    if isinstance(value, Mapping):
        return model.model_validate(dict(value))
    raise TypeError(f"expected {model.__name__} or a mapping, got {type(value).__name__}")
