"""`Authorization`: one decided action, as the guard recorded it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aam_policy.client import Decision
from aam_policy.escalation import Approval


@dataclass(frozen=True)
class Authorization:
    """The decision for one action plus what the enforcement point needs to act on it.

    `request` is the enriched `input` the decision was made for (it holds the action's
    parameters: keep it on the enforcement side, it is not for the agent). `approval` is the
    pending (or reused) approval request when the outcome is `escalate`, else None.
    """

    decision: Decision
    session_id: str
    request: dict[str, Any] = field(repr=False)
    approval: Approval | None = None

    @property
    def allowed(self) -> bool:
        return self.decision.allow

    @property
    def outcome(self) -> str:
        return self.decision.outcome

    @property
    def request_id(self) -> str:
        return str(self.request["request_id"])

    @property
    def fingerprint(self) -> str:
        return str(self.request["action"]["fingerprint"])

    @property
    def tool(self) -> str:
        return str(self.request["action"]["tool"])

    @property
    def operation(self) -> str:
        return str(self.request["action"]["operation"])
