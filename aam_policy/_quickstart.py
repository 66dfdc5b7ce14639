"""`aam quickstart`: one scripted agent session, end to end, on the embedded engine.

Compiles the fixture intents, starts the sidecar as a child process on a free loopback port,
opens a JIT session for an analytics agent (intent `analyze-customer-data`) and plays:

1. an allowed warehouse query, run with a brokered credential the agent never sees;
2. intent drift (a tool outside the intent) -> deny;
3. restricted data for a tool whose ceiling is confidential -> deny;
4. a query on restricted personal data -> escalate; the analyst's own approval is refused, the
   privacy officer approves, the identical retry is allowed;
5. an export after restricted data was read -> deny by the intent's chaining rule;
6. teardown, then one more attempt with the agent's token -> deny.

Then it prints the reconstructed trace, verifies the audit chain, checks that neither the
credential nor the prompt reached any file or log, and prints expected vs actual per step.
The analyst intent is used because it is the fixture whose chaining rule blocks a tool that is
*in* the intent, so the block is `chain_blocked` alone rather than drift as well.

Exit status: 0 when every step came out as expected, 1 otherwise, 2 when it cannot start.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aam_policy

INTENT = "analyze-customer-data"
HUMAN = {"id": "dana@example.com", "roles": ["data-analyst"]}
AGENT = {"id": "spiffe://example.org/agents/analyst-bot", "kind": "assistant", "owner": "team-ai"}
APPROVER = {"id": "priya@example.com", "roles": ["privacy-officer"]}
PURPOSE = "Which customer segments churned last quarter?"
# Stands in for the user's prompt: only its hash and a masked excerpt may be stored.
PROMPT = (
    "Find which customer segments churned last quarter and why; the complaint list is in "
    "ticket 4471 from jane.doe@example.com. Export a summary for the board."
)
WAREHOUSE = {"system": "snowflake", "resource": "db/customers", "environment": "production"}
EXPORT_TO = "s3://analytics-internal/churn/summary.csv"
PII_QUERY = "select email, iban, churned_at from customers where churned"


@dataclass
class Step:
    name: str
    expected: str  # an outcome, optionally "outcome:reason_code"
    actual: str = "-"
    detail: str = ""

    @property
    def ok(self) -> bool:
        outcome, _, code = self.expected.partition(":")
        got, _, codes = self.actual.partition(":")
        return got == outcome and (not code or code in codes.split(","))


class _Out:
    def __init__(self, color: bool) -> None:
        self.color = color

    def paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def outcome(self, text: str) -> str:
        code = {"allow": "1;32", "approved": "1;32", "completed": "1;35"}.get(text, "1;31")
        if text == "escalate":
            code = "1;33"
        return self.paint(text.upper(), code)

    def head(self, text: str) -> None:
        print("\n" + self.paint(text, "1"))


def default_intents_dir() -> Path:
    """`fixtures/intents` of the checkout this package runs from."""
    return Path(aam_policy.__file__).resolve().parents[1] / "fixtures" / "intents"


def run(intents: Path | None = None, keep: Path | None = None, color: bool | None = None) -> int:
    """Play the quickstart; returns the exit status. `keep`: write everything there and keep it
    (default: a temporary directory, removed afterwards)."""
    started = time.monotonic()
    if color is None:
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    source = intents or default_intents_dir()
    if not source.is_dir():
        print(
            f"aam quickstart: {source} not found — run it from a checkout of aam-policy "
            "(pip install -e .) or pass --intents DIR",
            file=sys.stderr,
        )
        return 2
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        return _play(source, keep, _Out(color), started, kept=True)
    with tempfile.TemporaryDirectory(prefix="aam-quickstart-") as tmp:
        return _play(source, Path(tmp), _Out(color), started, kept=False)


def _play(source: Path, work: Path, out: _Out, started: float, *, kept: bool) -> int:
    from aam_policy.compiler import compile_bundle
    from aam_policy.engine import load_policy
    from aam_policy.intents import IntentValidationError, load_intents
    from aam_policy.sidecar import SidecarError, SidecarProcess

    print(out.paint("aam quickstart", "1") + " — one agent session, decided by policy, end to end")
    try:
        loaded = load_intents([source])
    except IntentValidationError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        return 2
    bundle_dir = work / "bundle"
    bundle = compile_bundle([item.intent for item in loaded], bundle_dir)
    registry = load_policy([bundle_dir]).registry
    if INTENT not in registry:
        print(f"aam quickstart: {source} has no intent {INTENT!r}", file=sys.stderr)
        return 2
    print(f"  compiled  {len(loaded)} intents from {source} (revision {bundle.revision[:12]})")
    sidecar = SidecarProcess(
        bundle_dir,
        args=[
            "--no-watch",
            "--log-level",
            "WARNING",
            "--decision-log",
            str(work / "decisions.jsonl"),
        ],
        log_file=work / "sidecar.log",
    )

    def ready() -> str:
        starting.result()
        print(f"  sidecar   {sidecar.url} (pid {sidecar.pid}, embedded engine)")
        return sidecar.url

    with ThreadPoolExecutor(max_workers=1) as pool:
        # The child imports and loads the bundle while this process opens state and session.
        starting = pool.submit(sidecar.start)
        try:
            steps, secret, session_id, state = _script(ready, registry, work, out)
        except SidecarError as exc:
            print(f"aam quickstart: {exc}", file=sys.stderr)
            return 2
        finally:
            with contextlib.suppress(Exception):
                starting.result()
            sidecar.close()
    print(f"  sidecar   stopped (pid {sidecar.pid})")
    failed = _report(steps, secret, session_id, state, work, out, time.monotonic() - started)
    if kept:
        print(f"  state kept in {work}: aam trace {session_id} --db {state.audit_db}")
    return 1 if failed else 0


def _script(
    ready: Callable[[], str], registry: dict[str, Any], work: Path, out: _Out
) -> tuple[list[Step], str, str, Any]:
    from aam_policy._state import StateDir
    from aam_policy.client import DecisionClient
    from aam_policy.escalation import EscalationError
    from aam_policy.guard import ActionDenied, EscalationPending, Guard

    # An empty environment: the demo must not pick up the operator's keys or audit db.
    state = StateDir(work / "state", environ={})
    audit = state.open_audit()
    queue = state.open_queue(audit)
    broker = state.open_broker(registry, queue=queue, audit=audit)
    secret = "demo-wh-" + secrets.token_hex(16)  # made up per run; must never be stored
    broker.register_credential("warehouse", secret, tools=["warehouse.query", "reports.export"])
    opened = broker.open(HUMAN, AGENT, INTENT, ttl=300, purpose=PURPOSE, prompt=PROMPT)
    token = opened.token  # what the agent holds: no downstream credential in it
    print(
        f"  session   {opened.session.id} for {HUMAN['id']} via {AGENT['id']}"
        f" (intent {INTENT}, ttl {opened.session.ttl_seconds}s)"
    )
    url = ready()
    seen: list[str] = []

    def query_warehouse(sql: str, credential: str) -> dict[str, Any]:
        # A real tool would connect with the credential; this one proves it got it.
        seen.append(credential)
        return {"rows": 3 if "count" in sql else 42}

    def export_report(rows: int, destination: str, credential: str) -> dict[str, Any]:
        seen.append(credential)
        return {"written": rows, "to": destination}

    steps: list[Step] = []
    with DecisionClient(url, timeout=2.0) as pdp:
        guard = Guard(broker, pdp, queue, audit)

        def attempt(name: str, expected: str, tool_fn: Callable[..., Any], **call: Any) -> None:
            step = Step(name, expected)
            try:
                result = guard.run(
                    token, tool_fn, credential="warehouse",
                    summarize=lambda r: ", ".join(f"{k}={v}" for k, v in sorted(r.items())),
                    **call,
                )  # fmt: skip
                # run() returns the tool's result; the decision's reasons are in the audit.
                step.actual = "allow:" + ",".join(_last_decision_codes(audit, opened.session.id))
                step.detail = f"ran with the brokered credential -> {result}"
            except EscalationPending as pending:
                step.actual = "escalate:" + ",".join(pending.reason_codes)
                approvers = pending.authorization.approval.approvers  # type: ignore[union-attr]
                step.detail = f"approval {pending.approval_id} -> {', '.join(approvers)}"
            except ActionDenied as denied:
                step.actual = "deny:" + ",".join(denied.reason_codes)
                step.detail = "; ".join(r.message for r in denied.authorization.decision.reasons)
            _show(step, f"{call['tool']} {call['operation']}", out)
            steps.append(step)

        out.head("The agent works (every call goes through the guard)")
        attempt(
            "allowed read", "allow", query_warehouse, tool="warehouse.query", operation="read",
            target=WAREHOUSE, parameters={"sql": "select segment, count(*) from churn group by 1"},
            data={"sensitivity": "internal", "categories": []},
        )  # fmt: skip
        attempt(
            "intent drift", "deny:tool_not_in_intent", export_report, tool="files.share_link",
            operation="write", parameters={"rows": 1, "destination": "https://share.example/x"},
            data="internal",
        )  # fmt: skip
        attempt(
            "over the data ceiling", "deny:sensitivity_exceeds_ceiling", export_report,
            tool="reports.export", operation="write",
            parameters={"rows": 40, "destination": EXPORT_TO},
            data={"sensitivity": "restricted", "categories": ["pii"]},
        )  # fmt: skip
        pii = {
            "tool": "warehouse.query", "operation": "read", "target": WAREHOUSE,
            "parameters": {"sql": PII_QUERY},
            "data": {"sensitivity": "restricted", "categories": ["pii", "financial"]},
        }  # fmt: skip
        attempt("restricted personal data", "escalate:escalation_required", query_warehouse, **pii)
        pending = queue.list(status="pending", session_id=opened.session.id)

        out.head("A human decides")
        for name, who, expected, why in (
            ("self-approval", HUMAN, "refused", "I need this for the board"),
            ("eligible approver", APPROVER, "approved", "aggregate churn analysis, DPIA-17"),
        ):
            step = Step(name, expected)
            try:
                approval = queue.approve(pending[0].id, who, why=why)
                step.actual = approval.status
                step.detail = f"grant bound to this session and this exact query ({why})"
            except (EscalationError, IndexError) as exc:
                step.actual = "refused"
                step.detail = f"{type(exc).__name__}: {exc}"
            _show(step, f"{who['id']} ({', '.join(who['roles'])})", out)
            steps.append(step)

        out.head("The agent retries, then tries to move the data out")
        attempt("retry after approval", "allow:approval_granted", query_warehouse, **pii)
        attempt(
            "chained-tool block", "deny:chain_blocked", export_report, tool="reports.export",
            operation="write", parameters={"rows": 40, "destination": EXPORT_TO},
            data={"sensitivity": "confidential", "categories": []},
        )  # fmt: skip

        out.head("The session ends")
        ended = broker.teardown(opened.session.id, "task complete", actor=HUMAN["id"])
        step = Step("teardown", "completed", ended.end_kind or "-")
        step.detail = f"{ended.actions_used} action(s) used, tools {', '.join(ended.tools_used)}"
        _show(step, "session", out)
        steps.append(step)
        attempt(
            "after teardown", "deny:session_revoked", query_warehouse, tool="warehouse.query",
            operation="read", target=WAREHOUSE, parameters={"sql": "select count(*) from churn"},
            data="internal",
        )  # fmt: skip
    # Every allowed run got the credential; the agent-facing results never held it.
    steps.append(
        Step("credential reached the tool", "yes", "yes" if set(seen) == {secret} else "no")
    )
    audit.close()
    return steps, secret, opened.session.id, state


def _last_decision_codes(audit: Any, session_id: str) -> list[str]:
    decisions = [e for e in audit.events(session_id=session_id) if e.type == "decision"]
    return [str(r.get("code")) for r in decisions[-1].payload.get("reasons") or []]


def _show(step: Step, what: str, out: _Out) -> None:
    outcome, _, codes = step.actual.partition(":")
    mark = out.paint("✓", "32") if step.ok else out.paint("✗ expected " + step.expected, "1;31")
    print(f"  {step.name:<26} {what:<34} {out.outcome(outcome):<10} {codes} {mark}")
    if step.detail:
        print("  " + " " * 27 + out.paint(step.detail, "2"))


def _report(
    steps: list[Step],
    secret: str,
    session_id: str,
    state: Any,
    work: Path,
    out: _Out,
    elapsed: float,
) -> bool:
    """Print trace, verify, leak check and summary; True when anything failed."""
    from aam_policy.audit import AuditStore, render_trace

    with AuditStore(state.audit_db) as store:
        trace = store.trace(session_id)
        verified = store.verify()
    text = render_trace(trace, color=out.color)
    out.head("Trace (aam trace)")
    print(text, end="")
    out.head("Audit chain (aam audit verify)")
    print(f"  {verified}")

    # Everything the run wrote: state files (WAL included), sidecar log and decision log.
    leaks = [
        path.name
        for path in sorted(p for p in work.rglob("*") if p.is_file())
        if any(needle in path.read_bytes() for needle in (secret.encode(), PROMPT.encode()))
    ]
    if secret in text or PROMPT in text:
        leaks.append("trace")
    out.head("Secrets")
    print(
        "  credential and prompt found in: "
        + (out.paint(", ".join(leaks), "1;31") if leaks else "nothing (state, audit, logs, trace)")
    )
    checks = [
        Step("trace has no gaps", "yes", "no" if trace.gaps else "yes"),
        Step("audit chain verifies", "yes", "yes" if verified.ok else "no"),
        Step("no credential or prompt stored", "yes", "no" if leaks else "yes"),
    ]
    out.head("Summary")
    for step in [*steps, *checks]:
        mark = out.paint("ok", "32") if step.ok else out.paint("MISMATCH", "1;31")
        print(f"  {step.name:<32} expected {step.expected:<36} got {step.actual:<36} {mark}")
    failed = [s for s in [*steps, *checks] if not s.ok]
    print()
    if failed:
        print(out.paint(f"{len(failed)} step(s) differ from the script", "1;31"))
    else:
        print(out.paint(f"all {len(steps) + len(checks)} checks as expected", "1;32")
              + f" in {elapsed:.1f}s")  # fmt: skip
    return bool(failed)
