"""The enforcement point (PEP): every agent tool call is decided, recorded, then run or refused.

```python
from aam_policy.guard import ActionDenied, EscalationPending, Guard

guard = Guard(broker, DecisionClient(sidecar.url), queue, audit)   # or LocalDecisionClient
auth = guard.authorize(token, "payments.refund", "write",
                       target={"system": "stripe", "environment": "production"},
                       parameters={"amount": 500, "currency": "EUR"}, data="confidential")
auth.allowed, auth.decision.reason_codes, auth.approval     # approval on "escalate"

try:
    rows = guard.run(token, query_tool, tool="warehouse.query", operation="read",
                     parameters={"sql": sql}, data="internal", credential="warehouse")
except EscalationPending as pending:      # pending.approval_id: ask a human, then retry
    ...
except ActionDenied as denied:            # denied.reason_codes
    ...

async with AsyncDecisionClient(url) as pdp:
    await AsyncGuard(broker, pdp, queue, audit).run(...)
```

`authorize` builds the enriched request from the *stored* session state (the agent supplies
only tool, operation, target, parameters and data), asks the PDP, records a `decision` audit
event, updates the session (only an allowed action counts against the budget and the chain
history; one without `data` counts as restricted), and on `escalate` opens (or reuses) the
approval request. A grant applies to the same session and the identical action only, until it
expires; then the action escalates again.

Sessions are given as a `Session` (trusted code) or as the agent's token: a forged or
mismatched token raises `aam_policy.sessions.TokenInvalid`; a genuine token of an expired or
torn-down session is decided by policy (deny `session_expired` / `session_revoked`) and
audited like any other attempt. Downstream credentials go from the broker to the tool callable
only; they are never returned, logged or audited.
"""

from ._errors import ActionDenied, EscalationPending, GuardError
from ._guard import AsyncDecider, AsyncGuard, Guard, SyncDecider
from ._models import Authorization

__all__ = [
    "ActionDenied",
    "AsyncDecider",
    "AsyncGuard",
    "Authorization",
    "EscalationPending",
    "Guard",
    "GuardError",
    "SyncDecider",
]
