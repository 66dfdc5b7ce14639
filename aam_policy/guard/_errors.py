"""What `Guard.run` raises when the tool does not run."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._models import Authorization


class GuardError(Exception):
    """Base class of the guard's refusals; `authorization` is the recorded decision."""

    def __init__(self, authorization: Authorization, message: str) -> None:
        super().__init__(message)
        self.authorization = authorization

    @property
    def reason_codes(self) -> list[str]:
        return self.authorization.decision.reason_codes


class ActionDenied(GuardError):
    """The policy denied the action (or the PDP failed closed); nothing ran."""

    def __init__(self, authorization: Authorization) -> None:
        codes = ", ".join(authorization.decision.reason_codes) or "no reason given"
        super().__init__(authorization, f"{authorization.tool} denied: {codes}")


class EscalationPending(GuardError):
    """The action needs a human approval first; nothing ran. Retry the same action once
    `approval_id` is approved (the grant is bound to this session and this exact action)."""

    def __init__(self, authorization: Authorization) -> None:
        assert authorization.approval is not None
        self.approval_id = authorization.approval.id
        approvers = ", ".join(authorization.approval.approvers)
        super().__init__(
            authorization,
            f"{authorization.tool} awaits approval {self.approval_id} by {approvers}",
        )
