"""P8: `Guard.authorize` end to end (session broker + decision client + approvals + audit).

Real stores in a temporary directory (SQLite sessions/approvals, the audit store with its
default `synchronous=FULL`), the 1,000-intent bundle's registry, and the agent's signed token
(so every call verifies it, as in production). Each run opens fresh sessions across generated
intents (setup, not timed) and authorizes a mix of plain, within-limits and escalating actions
taken from the generated requests, `calls_per_session` per session so no session runs out of
budget. Timed: `Guard.authorize` only. Measured with the `DecisionClient` against the embedded
sidecar (the production shape, the target) and with a `LocalDecisionClient` (no HTTP).
"""

from __future__ import annotations

import collections
import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks._generate import build_request
from benchmarks._stats import Result, fmt_us, latency_stats, medians, time_calls

if TYPE_CHECKING:
    from benchmarks._measure import Workspace

WHAT = "Guard.authorize end to end (broker + client + audit)"
TARGET = "p50 <= 2 ms"
SCENARIOS = ("allow_read", "allow_read", "allow_within_limits", "escalate")
FAIL_CLOSED = {"pdp_error", "pdp_unavailable"}


def measure_guard(ws: Workspace) -> list[Result]:
    row = Result("P8", WHAT, target=TARGET)
    try:
        from aam_policy.guard import Guard  # noqa: F401
    except ImportError as exc:
        row.skipped = f"not available ({exc})"
        row.measured = "not available"
        return [row]
    from aam_policy.client import DecisionClient, LocalDecisionClient
    from aam_policy.engine import RegorusEngine, load_policy
    from benchmarks._measure import BIG, embedded_sidecar

    bundle = ws.bundle(BIG)
    outcomes: dict[str, collections.Counter[str]] = {}
    with (
        embedded_sidecar(bundle) as (url, _pid),
        DecisionClient(url, timeout=10.0, retries=0) as client,
    ):
        row.runs["sidecar"], outcomes["sidecar"] = _runs(ws, client)
    local = LocalDecisionClient(RegorusEngine(load_policy([bundle])))
    row.runs["local"], outcomes["local"] = _runs(ws, local)
    # the same with the audit store's synchronous=NORMAL: how much of it is fsync
    row.runs["local_audit_normal"], _ = _runs(ws, local, audit_sync="NORMAL")
    sidecar, in_process = medians(row.runs["sidecar"]), medians(row.runs["local"])
    row.figures = {f"{k}@sidecar": v for k, v in sidecar.items()}
    row.figures.update({f"{k}@local": v for k, v in in_process.items()})
    row.measured = (
        f"p50 {fmt_us(sidecar['p50_us'])} / p99 {fmt_us(sidecar['p99_us'])} (sidecar); "
        f"p50 {fmt_us(in_process['p50_us'])} (local)"
    )
    errors = sidecar["errors"] + in_process["errors"]
    row.passed = sidecar["p50_us"] <= 2000 and errors == 0
    normal = medians(row.runs["local_audit_normal"])
    row.figures.update({f"{k}@local_audit_normal": v for k, v in normal.items()})
    row.notes.append(
        f"local client with the audit store at synchronous=NORMAL: p50 {fmt_us(normal['p50_us'])}"
        f" (P2, the decision alone, is the in-process share)"
    )
    mix = ", ".join(f"{k} {v}" for k, v in sorted(outcomes["sidecar"].items()))
    row.notes.append(f"outcome mix per run (sidecar): {mix}")
    if errors:
        row.notes.append(f"{errors:.0f} fail-closed decisions (pdp_error/pdp_unavailable)")
    return [row]


def _authorizing(guard: Any, calls: list[tuple[str, dict[str, Any]]], results: list[Any]) -> Any:
    def call(i: int) -> None:
        token, kwargs = calls[i]
        results[i] = guard.authorize(token, **kwargs)

    return call


def _registry(bundle: Path) -> dict[str, Any]:
    """`data.aam.registry` of a compiled bundle directory (what the broker needs)."""
    registry = json.loads((bundle / "data.json").read_text(encoding="utf-8"))["aam"]["registry"]
    return dict(registry)


def _runs(
    ws: Workspace, client: Any, audit_sync: str = "FULL"
) -> tuple[list[dict[str, float]], collections.Counter[str]]:
    from aam_policy.audit import AuditStore
    from aam_policy.escalation import ApprovalQueue
    from aam_policy.guard import Guard
    from aam_policy.sessions import SessionBroker, SigningKeys
    from benchmarks._measure import BIG

    config = ws.config
    intents = ws.intents(BIG)
    registry = _registry(ws.bundle(BIG))
    calls_per_session = 10
    runs: list[dict[str, float]] = []
    mix: collections.Counter[str] = collections.Counter()
    for run in range(config.repeats + 1):  # run 0 is the warm-up
        root = Path(tempfile.mkdtemp(prefix="aam-bench-guard-", dir=ws.root))
        audit = AuditStore(root / "audit.db", synchronous=audit_sync)
        queue = ApprovalQueue(root / "sessions.db", audit=audit)
        broker = SessionBroker(
            root / "sessions.db",
            SigningKeys.generate(warn=False),
            registry,
            audit=audit,
            grants=queue,
        )
        guard = Guard(broker, client, queue, audit)
        rng = random.Random(run)
        calls: list[tuple[str, dict[str, Any]]] = []
        n = min(config.warmup, config.guard_calls) if run == 0 else config.guard_calls
        for start in range(0, n, calls_per_session):
            gen = intents[rng.randrange(len(intents))]
            actor = gen.base["actor"]
            opened = broker.open(
                actor["human"], actor["agent"], gen.id, purpose="benchmark", prompt="do the work"
            )
            for _ in range(min(calls_per_session, n - start)):
                request = build_request(gen, rng.choice(SCENARIOS), rng)
                assert request is not None
                action, data = request.input["action"], request.input["data"]
                calls.append(
                    (
                        opened.token,
                        {
                            "tool": action["tool"],
                            "operation": action["operation"],
                            "target": action["target"],
                            "parameters": action["parameters"],
                            "data": data,
                        },
                    )
                )
        results: list[Any] = [None] * len(calls)

        samples = time_calls(_authorizing(guard, calls, results), len(calls))
        audit.close()
        shutil.rmtree(root, ignore_errors=True)
        if run == 0:
            continue
        stats = latency_stats(samples)
        codes = [{r.code for r in auth.decision.reasons} for auth in results]
        stats["errors"] = float(sum(bool(c & FAIL_CLOSED) for c in codes))
        runs.append(stats)
        if run == 1:
            mix = collections.Counter(auth.outcome for auth in results)
    return runs, mix
