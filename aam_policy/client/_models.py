"""`AgentRequest` (DESIGN.md's enriched request, `input`) and `Decision` (`data.aam.decision`).

Requests are strict (unknown fields are errors: the field names are the contract, so a typo
must not silently become an absent field the policy reads as "not set") and frozen. The
builders compute what the enforcement point owes the policy:

* ``Action`` fills ``fingerprint`` from tool, operation, target and parameters
  (`action_fingerprint`) and rejects a fingerprint given by hand that does not match;
* ``IntentRef`` accepts ``prompt=`` and keeps only ``prompt_sha256``: the prompt text is never
  stored on the model, so it can never be sent, logged or dumped.

`AgentRequest.to_input()` is the JSON document sent as `input`, with null-valued optional
fields left out (absent and null read the same in the policy). Plain dicts are accepted by
every client too and sent as they are, for callers that build `input` themselves.

Decisions are validated on the way in: a result that breaks the contract (``allow`` disagreeing
with ``outcome``, an ``escalate`` without escalation details or an escalation on another
outcome) is malformed, and a fail-closed client turns it into a deny (`pdp_error`). Unknown
extra fields in a decision are ignored so a newer policy does not break older clients.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from ._canonical import action_fingerprint, prompt_sha256

Operation = Literal["read", "write", "delete", "execute", "transfer"]
Sensitivity = Literal["public", "internal", "confidential", "restricted"]
Outcome = Literal["allow", "deny", "escalate"]

_SHA256_HEX = r"^[0-9a-f]{64}$"


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Human(_Input):
    id: str
    roles: list[str] = []
    groups: list[str] = []


class Agent(_Input):
    id: str
    kind: str | None = None
    owner: str | None = None


class Actor(_Input):
    human: Human
    agent: Agent


class DelegationHop(_Input):
    agent: str
    scopes: list[str] = []


class IntentRef(_Input):
    """`input.intent`. Pass ``prompt=...`` to have it hashed; the text itself is dropped."""

    id: str
    purpose: str = ""
    prompt_sha256: str | None = Field(default=None, pattern=_SHA256_HEX)

    @model_validator(mode="before")
    @classmethod
    def _hash_prompt(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "prompt" in data:
            data = dict(data)
            digest = prompt_sha256(data.pop("prompt"))
            if data.get("prompt_sha256") not in (None, digest):
                raise ValueError("prompt_sha256 does not match prompt")
            data["prompt_sha256"] = digest
        return data


class Target(_Input):
    system: str | None = None
    resource: str | None = None
    environment: str | None = None


class Action(_Input):
    """`input.action`; ``fingerprint`` is computed when omitted and checked when given."""

    tool: str
    operation: Operation
    target: Target | None = None
    parameters: dict[str, JsonValue] = {}
    fingerprint: str = ""

    @model_validator(mode="after")
    def _fingerprint(self) -> Action:
        # Over exactly the shape to_input() sends, so a recomputation from `input` agrees.
        target = None if self.target is None else self.target.model_dump(exclude_none=True)
        expected = action_fingerprint(
            {
                "tool": self.tool,
                "operation": self.operation,
                "target": target,
                "parameters": self.parameters,
            }
        )
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", expected)  # frozen: set once, here
        elif self.fingerprint != expected:
            raise ValueError("fingerprint does not match tool, operation, target and parameters")
        return self


class DataClass(_Input):
    sensitivity: Sensitivity
    categories: list[str] = []


class Approval(_Input):
    approval_id: str
    fingerprint: str
    approver: str
    expires_at_ns: int


class SessionState(_Input):
    """`input.session`, e.g. ``SessionBroker.to_input(session_id)``."""

    id: str
    intent: str
    human: str
    agent: str
    issued_at_ns: int
    expires_at_ns: int
    revoked: bool = False
    actions_used: int = 0
    tools_used: list[str] = []
    max_sensitivity_seen: Sensitivity | None = None
    approvals: list[Approval] = []


class BreakGlass(_Input):
    reason: str
    ticket: str
    requested_by: str


class Context(_Input):
    time_ns: int | None = None
    break_glass: BreakGlass | None = None


class AgentRequest(_Input):
    """The enriched request of DESIGN.md. Build it with `AgentRequest.build(...)`."""

    request_id: str
    actor: Actor
    delegation: list[DelegationHop] = []
    intent: IntentRef
    action: Action
    data: DataClass | None = None
    session: SessionState | None = None
    context: Context = Context()

    @classmethod
    def build(
        cls,
        *,
        human: str | Mapping[str, Any] | Human,
        agent: str | Mapping[str, Any] | Agent,
        intent: str,
        tool: str,
        operation: Operation,
        purpose: str = "",
        prompt: str | None = None,
        target: Mapping[str, Any] | Target | None = None,
        parameters: Mapping[str, Any] | None = None,
        sensitivity: Sensitivity | None = None,
        categories: Sequence[str] = (),
        session: Mapping[str, Any] | SessionState | None = None,
        delegation: Sequence[Mapping[str, Any] | DelegationHop] = (),
        break_glass: Mapping[str, Any] | BreakGlass | None = None,
        time_ns: int | None = None,
        request_id: str | None = None,
    ) -> AgentRequest:
        """A request with a fresh `request_id`, `context.time_ns` = now, the action's
        fingerprint and the prompt's hash filled in. `human` / `agent` may be bare ids."""
        intent_ref: dict[str, Any] = {"id": intent, "purpose": purpose}
        if prompt is not None:
            intent_ref["prompt"] = prompt
        return cls.model_validate(
            {
                "request_id": request_id or str(uuid.uuid4()),
                "actor": {
                    "human": {"id": human} if isinstance(human, str) else human,
                    "agent": {"id": agent} if isinstance(agent, str) else agent,
                },
                "delegation": list(delegation),
                "intent": intent_ref,
                "action": {
                    "tool": tool,
                    "operation": operation,
                    "target": target,
                    "parameters": dict(parameters or {}),
                },
                "data": None
                if sensitivity is None
                else {"sensitivity": sensitivity, "categories": list(categories)},
                "session": session,
                "context": {
                    "time_ns": time.time_ns() if time_ns is None else time_ns,
                    "break_glass": break_glass,
                },
            }
        )

    def to_input(self) -> dict[str, Any]:
        """The JSON document sent as OPA's `input`."""
        return self.model_dump(mode="json", exclude_none=True)


class Reason(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    message: str = ""


class Escalation(BaseModel):
    model_config = ConfigDict(frozen=True)

    approvers: list[str]
    approval_ttl_seconds: int


class Obligations(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_session_ttl_seconds: int = 0
    review_required: bool = False


class PolicyInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    revision: str = ""
    intent_revision: str | None = None


PDP_UNAVAILABLE = "pdp_unavailable"
PDP_ERROR = "pdp_error"


class Decision(BaseModel):
    """`data.aam.decision`, plus the `decision_id` of the answer (None for local clients and
    fail-closed decisions)."""

    model_config = ConfigDict(frozen=True)

    outcome: Outcome
    allow: bool
    intent: str | None = None
    reasons: list[Reason] = []
    escalation: Escalation | None = None
    obligations: Obligations = Obligations()
    policy: PolicyInfo = PolicyInfo()
    decision_id: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Decision:
        if self.allow != (self.outcome == "allow"):
            raise ValueError(f"allow={self.allow} contradicts outcome {self.outcome!r}")
        if (self.escalation is not None) != (self.outcome == "escalate"):
            raise ValueError("escalation must be set exactly when the outcome is 'escalate'")
        return self

    @classmethod
    def fail_closed(cls, code: str, message: str, intent: str | None = None) -> Decision:
        """The deny a client returns when it has no valid decision (`pdp_unavailable` or
        `pdp_error`); policy revision empty, so it is never mistaken for a policy's answer."""
        return cls(
            outcome="deny",
            allow=False,
            intent=intent,
            reasons=[Reason(code=code, message=message)],
        )

    @property
    def reason_codes(self) -> list[str]:
        return [reason.code for reason in self.reasons]

    @property
    def is_fail_closed(self) -> bool:
        """True for a deny made up by the client because the PDP gave no valid decision."""
        return self.outcome == "deny" and any(
            reason.code in (PDP_UNAVAILABLE, PDP_ERROR) for reason in self.reasons
        )
