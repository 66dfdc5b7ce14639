"""Rebuild one session's causal chain from its audit events, and render it as a timeline.

Payload conventions (what each emitter puts in `AuditStore.append(type, session_id, payload,
actor)`; extra keys are kept and shown in `--json`, missing ones read as unknown):

``session.opened``  actor = the human
    ``{human, agent, intent, purpose, prompt: {sha256, excerpt}, expires_at_ns, ttl_seconds}``
    (pass the prompt text itself under ``prompt`` and the store digests it).
``decision``  actor = the human
    ``{decision_id, request_id, tool, operation, fingerprint, outcome: allow|deny|escalate,
    reasons: [{code, message}], revision, intent_revision}`` (+ ``approval_id`` when it
    escalated; ingested OPA decisions add ``source: "opa"``, ``path``, ``erased``).
``escalation.requested``  actor = the human whose agent needs it
    ``{approval_id, fingerprint, tool, approvers: [...], reason, expires_at_ns}``
``escalation.approved`` / ``escalation.denied`` / ``escalation.expired``  actor = the approver
    ``{approval_id, approver, why}`` (approved adds ``fingerprint``, ``grant_expires_at_ns``;
    expired has ``approver: null``).
``action.executed``  actor = the human
    ``{tool, operation, fingerprint, status: ok|error, result_summary}`` (+ ``decision_id``).
``session.teardown``  actor = who ended it (null for expiry)
    ``{reason, kind: completed|expired|revoked, actions_used, tools_used}``

Gaps the trace flags (`Trace.gaps`, kind -> meaning):

* ``missing_open`` — no ``session.opened`` event, or events recorded before it;
* ``duplicate_open`` — a second ``session.opened``;
* ``action_without_allow`` — ``action.executed`` with no earlier ``allow`` decision for the
  same fingerprint in this session;
* ``after_teardown`` — anything after ``session.teardown`` except a refused decision (deny /
  error / undefined) or an escalation being denied or expiring;
* ``escalation_unknown`` — an approval resolved that was never requested in this session;
* ``escalation_resolved_twice`` — a second resolution of one approval;
* ``tampered`` — an event whose content no longer matches its hash (run `aam audit verify`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, Field

from ._chain import canonical_json, event_hash
from ._models import AuditEvent

_REFUSED = frozenset({"deny", "error", "undefined", "unknown"})


class PromptDigest(BaseModel):
    sha256: str | None = None
    excerpt: str | None = None


class TraceReason(BaseModel):
    code: str
    message: str = ""


class TraceStep(BaseModel):
    """One audit event in the timeline, with a one-line human summary."""

    seq: int
    ts_ns: int
    type: str
    actor: str | None
    event_id: str
    summary: str
    payload: dict[str, Any]


class TraceDecision(BaseModel):
    seq: int
    ts_ns: int
    decision_id: str | None = None
    request_id: str | None = None
    source: str = "pep"
    tool: str | None = None
    operation: str | None = None
    fingerprint: str | None = None
    outcome: str
    reasons: list[TraceReason] = Field(default_factory=list)
    revision: str | None = None
    intent_revision: str | None = None
    approval_id: str | None = None


class TraceEscalation(BaseModel):
    approval_id: str
    status: str = "pending"  # pending | approved | denied | expired
    tool: str | None = None
    fingerprint: str | None = None
    approvers: list[str] = Field(default_factory=list)
    reason: str | None = None
    expires_at_ns: int | None = None
    requested_seq: int | None = None
    requested_ts_ns: int | None = None
    requested_by: str | None = None
    resolved_seq: int | None = None
    resolved_ts_ns: int | None = None
    resolved_by: str | None = None
    why: str | None = None


class TraceAction(BaseModel):
    seq: int
    ts_ns: int
    tool: str | None = None
    operation: str | None = None
    fingerprint: str | None = None
    status: str | None = None
    result_summary: str | None = None
    authorized_by_seq: int | None = None  # the allow decision it ran under


class TraceTeardown(BaseModel):
    seq: int
    ts_ns: int
    reason: str | None = None
    kind: str | None = None
    by: str | None = None


class TraceGap(BaseModel):
    seq: int | None
    kind: str
    message: str


class Trace(BaseModel):
    """person -> agent -> purpose and prompt -> decisions -> escalations -> actions -> teardown.

    `steps` holds every event of the session in causal (seq) order; `decisions`,
    `escalations` and `actions` are the same facts grouped; `gaps` lists what does not add up.
    A session with no events gives a trace with no steps (`found` is False).
    """

    session_id: str
    human: str | None = None
    agent: str | None = None
    intent: str | None = None
    purpose: str | None = None
    prompt: PromptDigest | None = None
    opened_at_ns: int | None = None
    expires_at_ns: int | None = None
    ttl_seconds: int | None = None
    steps: list[TraceStep] = Field(default_factory=list)
    decisions: list[TraceDecision] = Field(default_factory=list)
    escalations: list[TraceEscalation] = Field(default_factory=list)
    actions: list[TraceAction] = Field(default_factory=list)
    teardown: TraceTeardown | None = None
    gaps: list[TraceGap] = Field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.steps)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (what `aam trace --json` prints)."""
        return self.model_dump(mode="json")


def build_trace(session_id: str, events: Sequence[AuditEvent]) -> Trace:
    """Rebuild a session's trace from its events (any order; they are sorted by seq)."""
    trace = Trace(session_id=session_id)
    ordered = sorted((e for e in events if e.session_id == session_id), key=lambda e: e.seq)
    escalations: dict[str, TraceEscalation] = {}
    allows: dict[str, int] = {}  # fingerprint -> seq of the latest allow decision
    opened_seq: int | None = None
    teardown_seq: int | None = None

    def gap(seq: int | None, kind: str, message: str) -> None:
        trace.gaps.append(TraceGap(seq=seq, kind=kind, message=message))

    for event in ordered:
        p = event.payload
        seq = event.seq
        trace.steps.append(
            TraceStep(
                seq=seq,
                ts_ns=event.ts_ns,
                type=event.type,
                actor=event.actor,
                event_id=event.event_id,
                summary=_describe(event, color=False),
                payload=p,
            )
        )
        if not _hash_ok(event):
            gap(seq, "tampered", f"event {seq} ({event.type}) does not match its hash — edited")
        if teardown_seq is not None and not _fine_after_teardown(event):
            gap(seq, "after_teardown", f"{event.type} at #{seq} after teardown at #{teardown_seq}")

        if event.type == "session.opened":
            if opened_seq is not None:
                gap(
                    seq,
                    "duplicate_open",
                    f"session opened again at #{seq} (first at #{opened_seq})",
                )
                continue
            if trace.steps[0].seq != seq:
                gap(
                    seq, "missing_open", f"events were recorded before the session opened at #{seq}"
                )
            opened_seq = seq
            prompt = p.get("prompt")
            trace.human = _s(p.get("human")) or event.actor
            trace.agent = _s(p.get("agent"))
            trace.intent = _s(p.get("intent"))
            trace.purpose = _s(p.get("purpose"))
            if isinstance(prompt, dict):
                trace.prompt = PromptDigest(
                    sha256=_s(prompt.get("sha256")), excerpt=_s(prompt.get("excerpt"))
                )
            trace.opened_at_ns = event.ts_ns
            trace.expires_at_ns = _i(p.get("expires_at_ns"))
            trace.ttl_seconds = _i(p.get("ttl_seconds"))
        elif event.type == "decision":
            decision = TraceDecision(
                seq=seq,
                ts_ns=event.ts_ns,
                decision_id=_s(p.get("decision_id")),
                request_id=_s(p.get("request_id")),
                source=_s(p.get("source")) or "pep",
                tool=_s(p.get("tool")),
                operation=_s(p.get("operation")),
                fingerprint=_s(p.get("fingerprint")),
                outcome=_s(p.get("outcome")) or "unknown",
                reasons=_reasons(p.get("reasons")),
                revision=_s(p.get("revision")),
                intent_revision=_s(p.get("intent_revision")),
                approval_id=_s(p.get("approval_id")),
            )
            trace.decisions.append(decision)
            if decision.outcome == "allow" and decision.fingerprint:
                allows[decision.fingerprint] = seq
            if trace.intent is None:
                trace.intent = _s(p.get("intent"))
        elif event.type == "escalation.requested":
            approval_id = _s(p.get("approval_id")) or f"#{seq}"
            escalation = TraceEscalation(
                approval_id=approval_id,
                tool=_s(p.get("tool")),
                fingerprint=_s(p.get("fingerprint")),
                approvers=[str(a) for a in p.get("approvers") or [] if a is not None],
                reason=_s(p.get("reason")),
                expires_at_ns=_i(p.get("expires_at_ns")),
                requested_seq=seq,
                requested_ts_ns=event.ts_ns,
                requested_by=event.actor,
            )
            escalations[approval_id] = escalation
            trace.escalations.append(escalation)
        elif event.type.startswith("escalation."):
            approval_id = _s(p.get("approval_id")) or f"#{seq}"
            escalation = escalations.get(approval_id)
            if escalation is None:
                gap(
                    seq,
                    "escalation_unknown",
                    f"{event.type} at #{seq} for approval "
                    f"{approval_id}, which was never requested in this session",
                )
                escalation = TraceEscalation(approval_id=approval_id)
                escalations[approval_id] = escalation
                trace.escalations.append(escalation)
            elif escalation.status != "pending":
                gap(
                    seq,
                    "escalation_resolved_twice",
                    f"approval {approval_id} {event.type[11:]}"
                    f" at #{seq} after it was already {escalation.status}",
                )
                continue
            escalation.status = event.type.split(".", 1)[1]
            escalation.resolved_seq = seq
            escalation.resolved_ts_ns = event.ts_ns
            escalation.resolved_by = _s(p.get("approver")) or event.actor
            escalation.why = _s(p.get("why"))
        elif event.type == "action.executed":
            fingerprint = _s(p.get("fingerprint"))
            authorized = allows.get(fingerprint) if fingerprint else None
            trace.actions.append(
                TraceAction(
                    seq=seq,
                    ts_ns=event.ts_ns,
                    tool=_s(p.get("tool")),
                    operation=_s(p.get("operation")),
                    fingerprint=fingerprint,
                    status=_s(p.get("status")),
                    result_summary=_s(p.get("result_summary")),
                    authorized_by_seq=authorized,
                )
            )
            if authorized is None:
                what = f"fingerprint {fingerprint[:12]}" if fingerprint else "no fingerprint"
                gap(
                    seq,
                    "action_without_allow",
                    f"action {_s(p.get('tool')) or '?'} at #{seq} "
                    f"has no earlier allow decision ({what})",
                )
        elif event.type == "session.teardown" and teardown_seq is None:
            teardown_seq = seq
            trace.teardown = TraceTeardown(
                seq=seq,
                ts_ns=event.ts_ns,
                reason=_s(p.get("reason")),
                kind=_s(p.get("kind")),
                by=event.actor,
            )
    if ordered and opened_seq is None:
        gap(None, "missing_open", "no session.opened event: who opened the session is unknown")
        trace.human = next((e.actor for e in ordered if e.actor), None)
    return trace


def _fine_after_teardown(event: AuditEvent) -> bool:
    if event.type == "decision":
        return event.payload.get("outcome") in _REFUSED
    return event.type in ("escalation.denied", "escalation.expired")


def _hash_ok(event: AuditEvent) -> bool:
    try:
        payload_json = canonical_json(event.payload)
    except (TypeError, ValueError):
        return False
    return event.hash == event_hash(
        event.seq,
        event.event_id,
        event.ts_ns,
        event.type,
        event.session_id,
        event.actor,
        payload_json,
        event.prev_hash,
    )


def _s(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _i(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _reasons(value: Any) -> list[TraceReason]:
    out = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict):
            out.append(
                TraceReason(code=str(item.get("code", "")), message=str(item.get("message") or ""))
            )
        elif isinstance(item, str):
            out.append(TraceReason(code=item))
    return out


# --- rendering -----------------------------------------------------------------------------------

_RESET = "\033[0m"
_STYLES = {
    "bold": "\033[1m",
    "dim": "\033[2m",
    "red": "\033[31m",
    "green": "\033[32m",
    "yellow": "\033[33m",
    "blue": "\033[34m",
    "magenta": "\033[35m",
    "cyan": "\033[36m",
}
_OUTCOME_STYLE = {"allow": "green", "deny": "red", "escalate": "yellow"}
_RESOLUTION_STYLE = {"approved": "green", "denied": "red", "expired": "yellow", "pending": "yellow"}


def _paint(text: str, style: str, color: bool) -> str:
    if not color or not text:
        return text
    return "".join(_STYLES[s] for s in style.split()) + text + _RESET


def _time(ts_ns: int | None, date: bool = False) -> str:
    if ts_ns is None:
        return "?"
    moment = datetime.fromtimestamp(ts_ns / 1e9, tz=timezone.utc)
    text = moment.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")
    return f"{text}.{(ts_ns // 1_000_000) % 1000:03d}" + (" UTC" if date else "")


def _short(digest: str | None, n: int = 12) -> str:
    if not digest:
        return "?"
    return digest if len(digest) <= n else digest[:n] + "…"


def _describe(event: AuditEvent, color: bool) -> str:
    """One line (or a few) saying what an event means."""
    p = event.payload
    kind = event.type
    if kind == "session.opened":
        ttl = _i(p.get("ttl_seconds"))
        return f"{p.get('human') or event.actor or '?'} opened it for {p.get('agent') or '?'}" + (
            f" (intent {p['intent']}, ttl {ttl}s)" if p.get("intent") and ttl is not None else ""
        )
    if kind == "decision":
        outcome = str(p.get("outcome") or "unknown")
        label = _paint(outcome.upper(), f"bold {_OUTCOME_STYLE.get(outcome, 'red')}", color)
        line = f"{label} {p.get('tool') or '?'} {p.get('operation') or ''}".rstrip()
        extras = []
        if p.get("revision"):
            extras.append(f"policy {_short(_s(p.get('revision')), 12)}")
        if p.get("intent_revision"):
            extras.append(f"intent {_short(_s(p.get('intent_revision')), 12)}")
        if p.get("source") == "opa":
            extras.append("via OPA log")
        if extras:
            line += _paint(" · " + " · ".join(extras), "dim", color)
        for reason in _reasons(p.get("reasons")):
            text = f"{reason.code}: {reason.message}" if reason.message else reason.code
            line += "\n" + _paint(f"↳ {text}", "dim", color)
        return line
    if kind == "escalation.requested":
        approvers = ", ".join(str(a) for a in p.get("approvers") or []) or "?"
        line = f"{p.get('approval_id') or '?'} for {p.get('tool') or '?'} → {approvers}"
        if p.get("reason"):
            line += f": {p['reason']}"
        return line
    if kind.startswith("escalation."):
        status = kind.split(".", 1)[1]
        who = p.get("approver") or event.actor
        line = f"{p.get('approval_id') or '?'} " + _paint(
            status.upper(), f"bold {_RESOLUTION_STYLE.get(status, 'yellow')}", color
        )
        if who:
            line += f" by {who}"
        if p.get("why"):
            line += f": {p['why']}"
        return line
    if kind == "action.executed":
        status = str(p.get("status") or "?")
        line = f"{p.get('tool') or '?'} {p.get('operation') or ''}".rstrip()
        line += " → " + _paint(status, "green" if status == "ok" else "red", color)
        if p.get("result_summary"):
            line += f": {p['result_summary']}"
        return line
    if kind == "session.teardown":
        line = str(p.get("reason") or "ended")
        if p.get("kind") and p["kind"] != line:
            line = f"{p['kind']}: {line}"
        if event.actor:
            line += f" (by {event.actor})"
        return line
    return canonical_json(p)


def render_trace(trace: Trace, color: bool = False) -> str:
    """A readable timeline of `trace`. ANSI colour only when `color` is True."""
    bold = "bold"
    lines = [
        _paint(f"Session {trace.session_id}", bold, color)
        + (f" — intent {trace.intent}" if trace.intent else "")
    ]
    if not trace.found:
        lines.append("  no audit events for this session")
        return "\n".join(lines) + "\n"
    prompt = trace.prompt
    header = [
        ("person", trace.human or "?"),
        ("agent", trace.agent or "?"),
        ("purpose", trace.purpose or "?"),
        (
            "prompt",
            f"sha256 {_short(prompt.sha256, 16)}"
            + (f'  "{prompt.excerpt}"' if prompt.excerpt else "")
            if prompt
            else "?",
        ),
    ]
    if trace.opened_at_ns is not None:
        window = f"opened {_time(trace.opened_at_ns, date=True)}"
        if trace.ttl_seconds is not None:
            window += f" · ttl {trace.ttl_seconds}s"
        if trace.expires_at_ns is not None:
            window += f" · expires {_time(trace.expires_at_ns, date=True)}"
        header.append(("session", window))
    for key, value in header:
        lines.append(f"  {_paint(f'{key:<8}', 'cyan', color)} {value}")
    lines.append("")
    type_width = max(len(step.type) for step in trace.steps)
    seq_width = max(len(str(step.seq)) for step in trace.steps)
    indent = " " * (2 + seq_width + 2 + 12 + 2 + type_width + 2)
    for step in trace.steps:
        event = AuditEvent.model_construct(
            seq=step.seq,
            event_id=step.event_id,
            ts_ns=step.ts_ns,
            type=step.type,
            session_id=trace.session_id,
            actor=step.actor,
            payload=step.payload,
            prev_hash="",
            hash="",
        )
        text = _describe(event, color).replace("\n", "\n" + indent)
        style = "magenta" if step.type.startswith("session.") else "blue"
        lines.append(
            f"  {step.seq:>{seq_width}}  {_time(step.ts_ns)}  "
            f"{_paint(f'{step.type:<{type_width}}', style, color)}  {text}"
        )
    lines.append("")
    lines.append(f"  {_paint('summary ', 'cyan', color)} {_summary(trace)}")
    if trace.gaps:
        lines.append(
            f"  {_paint('gaps    ', 'cyan', color)} "
            + _paint(f"{len(trace.gaps)}", "bold red", color)
        )
        for g in trace.gaps:
            where = f"#{g.seq} " if g.seq is not None else ""
            lines.append("    " + _paint(f"! {where}{g.kind}: {g.message}", "red", color))
    else:
        lines.append(f"  {_paint('gaps    ', 'cyan', color)} none")
    return "\n".join(lines) + "\n"


def _summary(trace: Trace) -> str:
    counts: dict[str, int] = {}
    for d in trace.decisions:
        counts[d.outcome] = counts.get(d.outcome, 0) + 1
    parts = [
        f"{len(trace.decisions)} decision(s)"
        + (" (" + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + ")" if counts else "")
    ]
    statuses: dict[str, int] = {}
    for e in trace.escalations:
        statuses[e.status] = statuses.get(e.status, 0) + 1
    parts.append(
        f"{len(trace.escalations)} escalation(s)"
        + (
            " (" + ", ".join(f"{n} {k}" for k, n in sorted(statuses.items())) + ")"
            if statuses
            else ""
        )
    )
    parts.append(f"{len(trace.actions)} action(s)")
    parts.append("torn down" if trace.teardown else "still open")
    return " · ".join(parts)
