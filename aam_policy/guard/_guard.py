"""`Guard` / `AsyncGuard`: authorize, record, and run one agent tool call.

The state work (verify the session, build `input.session`, update the session, append to the
audit store, open the approval) is the same for both twins and lives in `_Core`. `AsyncGuard`
runs it in a worker thread, one hop before and one after the PDP call: the audit store commits
with `synchronous=FULL` by default, and an fsync per decision must not stall the event loop.
Every store keeps one connection per thread, so the worker thread is safe.

Per authorize: one session read (token verified, session row, its grants), the decision, one
session write transaction (`record_decision`, without re-reading grants), one audit append;
an escalation adds the approval request and its audit event. The session is never cached
between calls, so a revoke from anywhere is seen by the next authorize. Durability is the
stores' (chosen when they are built, or by `$AAM_AUDIT_DURABILITY` / `$AAM_STATE_DURABILITY`
through `aam`): with the defaults the audit append is the only fsync on the decision path.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from aam_policy.audit import AuditStore
from aam_policy.client import Action, AgentRequest, Decision, Reason, RequestLike
from aam_policy.escalation import ApprovalQueue
from aam_policy.sessions import (
    Session,
    SessionBroker,
    SessionExpired,
    SessionRevoked,
)

from ._errors import ActionDenied, EscalationPending
from ._models import Authorization

logger = logging.getLogger("aam_policy.guard")

SessionLike = Session | str
DataLike = Mapping[str, Any] | str | None


class SyncDecider(Protocol):
    """`DecisionClient` or `LocalDecisionClient`."""

    def decide(self, request: RequestLike) -> Decision: ...


class AsyncDecider(Protocol):
    """`AsyncDecisionClient` or `AsyncLocalDecisionClient`."""

    async def decide(self, request: RequestLike) -> Decision: ...


class _Core:
    """The state side of the guard: everything but the PDP call and the tool call."""

    def __init__(
        self,
        broker: SessionBroker,
        queue: ApprovalQueue,
        audit: AuditStore,
        clock: Callable[[], int],
    ) -> None:
        self.broker = broker
        self.queue = queue
        self.audit = audit
        self.clock = clock
        # Grants feed `input.session.approvals` only when the broker reads this queue.
        broker.set_grant_source(queue)

    def session_of(self, session: SessionLike) -> Session:
        """The stored session a `Session` or a token stands for, re-read from the store.

        A genuine token of an expired or ended session still gets a decision (policy denies
        it with `session_expired` / `session_revoked`, and the attempt is audited); a token
        that does not verify raises `TokenInvalid`: there is no session to decide for.
        """
        if isinstance(session, Session):
            return self.broker.get(session.id)
        if not isinstance(session, str):
            raise TypeError(f"expected a Session or a session token, not {type(session).__name__}")
        try:
            return self.broker.verify(session)
        except (SessionExpired, SessionRevoked):
            # verify() raises these only after the signature and claims checked out.
            return self.broker.get(self.broker.keys.verify(session)["sid"])

    def prepare(
        self,
        session: SessionLike,
        tool: str,
        operation: str,
        target: Mapping[str, Any] | None,
        parameters: Mapping[str, Any] | None,
        data: DataLike,
        delegation: Sequence[Mapping[str, Any]] | None,
        break_glass: Mapping[str, Any] | None,
    ) -> tuple[Session, dict[str, Any]]:
        """The enriched request, from the stored session state; never from the agent."""
        current = self.session_of(session)
        if isinstance(data, str):
            data = {"sensitivity": data}
        action = Action.model_validate(
            {
                "tool": tool,
                "operation": operation,
                "target": target,
                "parameters": dict(parameters or {}),
            }
        )
        request = AgentRequest.model_validate(
            {
                "request_id": str(uuid.uuid4()),
                "actor": {
                    "human": {
                        "id": current.human.id,
                        "roles": list(current.human.roles),
                        "groups": list(current.human.groups),
                    },
                    "agent": {
                        "id": current.agent.id,
                        "kind": current.agent.kind,
                        "owner": current.agent.owner,
                    },
                },
                "delegation": list(delegation or ()),
                "intent": {
                    "id": current.intent,
                    "purpose": current.purpose,
                    "prompt_sha256": current.prompt_sha256,
                },
                "action": action,
                "data": None if data is None else dict(data),
                # Only the grants bound to this very action: nothing else is the policy's business.
                # `current` was read from the store (with its grants) by this very call, so it
                # is not re-read here.
                "session": current.to_input(fingerprint=action.fingerprint),
                "context": {"time_ns": self.clock(), "break_glass": break_glass},
            }
        )
        return current, request.to_input()

    def finish(
        self, session: Session, request: dict[str, Any], decision: Decision
    ) -> Authorization:
        """Apply `decision` to the session, audit it, and open the approval it asks for."""
        action = request["action"]
        sensitivity = (request.get("data") or {}).get("sensitivity")
        try:
            # Only an allowed action counts against the budget and the chain history: a
            # refused one ran nothing and showed the agent no data.
            self.broker.record_decision(
                session.id, action["tool"], sensitivity, decision.allow, with_grants=False
            )
        except SessionRevoked:
            # Torn down between the decision and now: the action must not run.
            decision = Decision(
                outcome="deny",
                allow=False,
                intent=decision.intent,
                reasons=[Reason(code="session_revoked", message="the session ended meanwhile")],
                policy=decision.policy,
                decision_id=decision.decision_id,
            )
        payload: dict[str, Any] = {
            "request_id": request["request_id"],
            "intent": session.intent,
            "tool": action["tool"],
            "operation": action["operation"],
            "fingerprint": action["fingerprint"],
            "sensitivity": sensitivity,
            "outcome": decision.outcome,
            "reasons": [reason.model_dump() for reason in decision.reasons],
            "revision": decision.policy.revision,
            "intent_revision": decision.policy.intent_revision,
        }
        if decision.decision_id is not None:
            payload["decision_id"] = decision.decision_id
        if decision.obligations.review_required:
            payload["review_required"] = True
        # The decision is recorded before the approval it causes, so the trace reads in causal
        # order; the two share the action fingerprint.
        self.audit.append("decision", session.id, payload, actor=session.human.id)
        approval = None
        if decision.outcome == "escalate":
            approval = self.queue.request(decision, request)
        logger.info(
            "session %s: %s %s -> %s (%s)",
            session.id,
            action["tool"],
            action["operation"],
            decision.outcome,
            ", ".join(decision.reason_codes) or "-",
        )
        return Authorization(
            decision=decision, session_id=session.id, request=request, approval=approval
        )

    def record_result(self, authorization: Authorization, status: str, summary: str | None) -> None:
        if not authorization.allowed:
            raise ActionDenied(authorization)
        if status not in ("ok", "error"):
            raise ValueError("status must be 'ok' or 'error'")
        payload: dict[str, Any] = {
            "request_id": authorization.request_id,
            "tool": authorization.tool,
            "operation": authorization.operation,
            "fingerprint": authorization.fingerprint,
            "status": status,
            "result_summary": summary,
        }
        if authorization.decision.decision_id is not None:
            payload["decision_id"] = authorization.decision.decision_id
        human = authorization.request["actor"]["human"]["id"]
        self.audit.append("action.executed", authorization.session_id, payload, actor=human)

    def tool_kwargs(self, authorization: Authorization, credential: str | None) -> dict[str, Any]:
        """The tool's keyword arguments: its parameters, plus the released credential."""
        kwargs = dict(authorization.request["action"].get("parameters") or {})
        if credential is not None:
            if "credential" in kwargs:
                raise ValueError("a tool parameter named 'credential' clashes with the credential")
            # Released for this decided action only; it goes to the tool, never back out.
            kwargs["credential"] = self.broker.credential_for(
                authorization.session_id, credential, authorization.decision,
                authorization.request,
            )  # fmt: skip
        return kwargs


def _refusal(authorization: Authorization) -> Exception:
    if authorization.approval is not None:
        return EscalationPending(authorization)
    return ActionDenied(authorization)


def _failure_summary(exc: BaseException) -> str:
    # The exception's type only: its message may quote arguments or the credential.
    return f"raised {type(exc).__name__}"


class Guard:
    """The enforcement point: every agent tool call goes through `authorize` or `run`.

    ```python
    guard = Guard(broker, DecisionClient(sidecar_url), queue, audit)
    auth = guard.authorize(token, "crm.read_ticket", "read", parameters={"id": 42},
                           data="confidential")
    if auth.allowed: ...                                  # auth.approval on "escalate"
    ticket = guard.run(token, read_ticket, tool="crm.read_ticket", operation="read",
                       parameters={"id": 42}, data="confidential", credential="crm")
    ```

    The guard makes the broker read approval grants from `queue`. `clock` (ns) is the
    enforcement point's *now*, sent as `context.time_ns`; give the broker and the queue the
    same clock.
    """

    def __init__(
        self,
        broker: SessionBroker,
        client: SyncDecider,
        queue: ApprovalQueue,
        audit: AuditStore,
        *,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.client = client
        self._core = _Core(broker, queue, audit, clock)

    @property
    def broker(self) -> SessionBroker:
        return self._core.broker

    def __repr__(self) -> str:
        return f"Guard(client={self.client!r}, broker={self._core.broker!r})"

    def authorize(
        self,
        session: SessionLike,
        tool: str,
        operation: str,
        target: Mapping[str, Any] | None = None,
        parameters: Mapping[str, Any] | None = None,
        data: DataLike = None,
        *,
        delegation: Sequence[Mapping[str, Any]] | None = None,
        break_glass: Mapping[str, Any] | None = None,
    ) -> Authorization:
        """Decide one action for `session` (a `Session` or its token) and record it.

        `data` is the data class the action touches: ``{"sensitivity", "categories"}`` or just
        the sensitivity. On `escalate` the returned authorization carries the approval request
        (the same one while it is pending); retry the identical action once it is approved.
        Raises `TokenInvalid` for a token that does not verify.
        """
        current, request = self._core.prepare(
            session, tool, operation, target, parameters, data, delegation, break_glass
        )
        return self._core.finish(current, request, self.client.decide(request))

    def record_result(
        self, authorization: Authorization, status: str = "ok", summary: str | None = None
    ) -> None:
        """Record that an allowed action ran (`action.executed`); `summary` is redacted.

        Raises `ActionDenied` for an authorization that did not allow the action.
        """
        self._core.record_result(authorization, status, summary)

    def run(
        self,
        session: SessionLike,
        tool_callable: Callable[..., Any],
        *,
        tool: str,
        operation: str,
        target: Mapping[str, Any] | None = None,
        parameters: Mapping[str, Any] | None = None,
        data: DataLike = None,
        credential: str | None = None,
        delegation: Sequence[Mapping[str, Any]] | None = None,
        break_glass: Mapping[str, Any] | None = None,
        summarize: Callable[[Any], str] | None = None,
    ) -> Any:
        """Authorize, then call ``tool_callable(**parameters)`` only when allowed.

        With `credential` (a name registered with the broker) the tool also gets
        ``credential=<value>``, released for this action alone; it is never returned or
        logged. The result is recorded (``summarize(result)`` as its summary, or the exception
        type when the tool raises, which is re-raised). Raises `ActionDenied` or
        `EscalationPending` (with `approval_id`) when the tool did not run.
        """
        authorization = self.authorize(
            session, tool, operation, target, parameters, data,
            delegation=delegation, break_glass=break_glass,
        )  # fmt: skip
        if not authorization.allowed:
            raise _refusal(authorization)
        kwargs = self._core.tool_kwargs(authorization, credential)
        try:
            result = tool_callable(**kwargs)
        except Exception as exc:
            self._core.record_result(authorization, "error", _failure_summary(exc))
            raise
        self._core.record_result(authorization, "ok", summarize(result) if summarize else None)
        return result


class AsyncGuard:
    """`Guard` for asyncio, over an `AsyncDecisionClient` (or `AsyncLocalDecisionClient`).

    ```python
    guard = AsyncGuard(broker, AsyncDecisionClient(url), queue, audit)
    auth = await guard.authorize(token, "crm.read_ticket", "read", data="confidential")
    rows = await guard.run(token, query, tool="warehouse.query", operation="read", ...)
    ```

    The SQLite work runs in a worker thread (see the module docstring); `run` awaits the tool
    when it returns an awaitable.
    """

    def __init__(
        self,
        broker: SessionBroker,
        client: AsyncDecider,
        queue: ApprovalQueue,
        audit: AuditStore,
        *,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.client = client
        self._core = _Core(broker, queue, audit, clock)

    @property
    def broker(self) -> SessionBroker:
        return self._core.broker

    def __repr__(self) -> str:
        return f"AsyncGuard(client={self.client!r}, broker={self._core.broker!r})"

    async def authorize(
        self,
        session: SessionLike,
        tool: str,
        operation: str,
        target: Mapping[str, Any] | None = None,
        parameters: Mapping[str, Any] | None = None,
        data: DataLike = None,
        *,
        delegation: Sequence[Mapping[str, Any]] | None = None,
        break_glass: Mapping[str, Any] | None = None,
    ) -> Authorization:
        """See `Guard.authorize`."""
        current, request = await asyncio.to_thread(
            self._core.prepare,
            session, tool, operation, target, parameters, data, delegation, break_glass,
        )  # fmt: skip
        decision = await self.client.decide(request)
        return await asyncio.to_thread(self._core.finish, current, request, decision)

    async def record_result(
        self, authorization: Authorization, status: str = "ok", summary: str | None = None
    ) -> None:
        """See `Guard.record_result`."""
        await asyncio.to_thread(self._core.record_result, authorization, status, summary)

    async def run(
        self,
        session: SessionLike,
        tool_callable: Callable[..., Any | Awaitable[Any]],
        *,
        tool: str,
        operation: str,
        target: Mapping[str, Any] | None = None,
        parameters: Mapping[str, Any] | None = None,
        data: DataLike = None,
        credential: str | None = None,
        delegation: Sequence[Mapping[str, Any]] | None = None,
        break_glass: Mapping[str, Any] | None = None,
        summarize: Callable[[Any], str] | None = None,
    ) -> Any:
        """See `Guard.run`; a coroutine tool is awaited."""
        authorization = await self.authorize(
            session, tool, operation, target, parameters, data,
            delegation=delegation, break_glass=break_glass,
        )  # fmt: skip
        if not authorization.allowed:
            raise _refusal(authorization)
        kwargs = await asyncio.to_thread(self._core.tool_kwargs, authorization, credential)
        try:
            result = tool_callable(**kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            await self.record_result(authorization, "error", _failure_summary(exc))
            raise
        await self.record_result(authorization, "ok", summarize(result) if summarize else None)
        return result
