"""Human-in-the-loop escalation: approval requests, approvers, and the grants they create.

```python
queue = ApprovalQueue("state.db", audit=AuditStore("audit.db"))
approval = queue.request(decision, enriched_input)      # decision.outcome == "escalate"
queue.approve(approval.id, Approver(id="bob", roles=("payments-lead",)), why="known customer")
queue.active_grants(session_id)                          # -> input.session.approvals (via broker)
```
"""

from ._models import (
    STATUSES,
    AlreadyResolved,
    Approval,
    ApprovalExpired,
    ApprovalNotFound,
    ApprovalStatus,
    Approver,
    ApproverNotEligible,
    AuditSink,
    EscalationError,
    Grant,
    InvalidEscalation,
    SelfApprovalRefused,
    is_eligible,
)
from ._queue import DEFAULT_REQUEST_TTL_SECONDS, ApprovalQueue

__all__ = [
    "DEFAULT_REQUEST_TTL_SECONDS",
    "STATUSES",
    "AlreadyResolved",
    "Approval",
    "ApprovalExpired",
    "ApprovalNotFound",
    "ApprovalQueue",
    "ApprovalStatus",
    "Approver",
    "ApproverNotEligible",
    "AuditSink",
    "EscalationError",
    "Grant",
    "InvalidEscalation",
    "SelfApprovalRefused",
    "is_eligible",
]
