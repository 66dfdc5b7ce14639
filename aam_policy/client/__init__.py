"""The decision client: ask OPA (or `aam sidecar`) whether an agent's action may proceed.

```python
from aam_policy.client import AgentRequest, DecisionClient

request = AgentRequest.build(
    human={"id": "alice@example.com", "roles": ["support-agent"]},
    agent="spiffe://example.org/agents/support-bot",
    intent="resolve-support-ticket", purpose="refund ticket 42", prompt=prompt_text,
    tool="payments.refund", operation="write",
    target={"system": "stripe", "resource": "charge/ch_123", "environment": "production"},
    parameters={"amount": 500, "currency": "EUR"}, sensitivity="confidential",
    session=broker.to_input(session_id),
)                                    # fingerprint and prompt hash computed; prompt text dropped
with DecisionClient("http://127.0.0.1:8181", timeout=0.25) as pdp:
    decision = pdp.decide(request)   # any PDP failure -> deny (pdp_unavailable / pdp_error)
    if decision.outcome == "escalate":
        ...                          # decision.escalation.approvers

async with AsyncDecisionClient() as pdp:
    decisions = await pdp.decide_many(requests)

LocalDecisionClient("build/bundle").decide(request)   # in-process engine, no HTTP
```

Fail-closed by default; `fail_mode="raise"` raises `PDPUnavailable` (no response: refused,
reset, timed out) or `PDPError` (a response that is not a valid decision), both
`DecisionError`. Details in `_http` (timeouts, retries, pooling), `_models` (the request and
decision contract), `_canonical` (fingerprint and prompt hash) and `_local`.
"""

from ._canonical import action_fingerprint, canonical_json, prompt_sha256
from ._core import FailMode, RequestLike
from ._errors import DecisionError, PDPError, PDPUnavailable
from ._http import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
    AsyncDecisionClient,
    DecisionClient,
)
from ._local import AsyncLocalDecisionClient, Evaluator, LocalDecisionClient
from ._models import (
    PDP_ERROR,
    PDP_UNAVAILABLE,
    Action,
    Actor,
    Agent,
    AgentRequest,
    Approval,
    BreakGlass,
    Context,
    DataClass,
    Decision,
    DelegationHop,
    Escalation,
    Human,
    IntentRef,
    Obligations,
    Operation,
    Outcome,
    PolicyInfo,
    Reason,
    Sensitivity,
    SessionState,
    Target,
)

__all__ = [
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "PDP_ERROR",
    "PDP_UNAVAILABLE",
    "Action",
    "Actor",
    "Agent",
    "AgentRequest",
    "Approval",
    "AsyncDecisionClient",
    "AsyncLocalDecisionClient",
    "BreakGlass",
    "Context",
    "DataClass",
    "Decision",
    "DecisionClient",
    "DecisionError",
    "DelegationHop",
    "Escalation",
    "Evaluator",
    "FailMode",
    "Human",
    "IntentRef",
    "LocalDecisionClient",
    "Obligations",
    "Operation",
    "Outcome",
    "PDPError",
    "PDPUnavailable",
    "PolicyInfo",
    "Reason",
    "RequestLike",
    "Sensitivity",
    "SessionState",
    "Target",
    "action_fingerprint",
    "canonical_json",
    "prompt_sha256",
]
