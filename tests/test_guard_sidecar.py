"""Guard and AsyncGuard against the real sidecar process, with real SQLite files: the whole
session flow, and no credential or prompt in any log, audit row, state row, trace or
decision-log line."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_guard import ALICE, BOB, CRM, INTENTS, PROMPT, REFUND, STRIPE, make_world

from aam_policy.audit import render_trace
from aam_policy.client import AsyncDecisionClient, DecisionClient
from aam_policy.compiler import compile_bundle
from aam_policy.guard import ActionDenied, AsyncGuard, EscalationPending
from aam_policy.intents import load_intents
from aam_policy.sidecar import SidecarProcess

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("guard-sidecar-bundle") / "bundle"
    compile_bundle([item.intent for item in load_intents([INTENTS])], out)
    return out


@pytest.fixture(scope="module")
def sidecar(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    logs = tmp_path_factory.mktemp("guard-sidecar")
    process = SidecarProcess(
        bundle,
        args=["--no-watch", "--log-level", "DEBUG", "--decision-log", str(logs / "d.jsonl")],
        log_file=logs / "sidecar.log",
    )
    with process:
        yield process


def _file_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())


def test_a_session_through_the_sidecar_leaves_no_secret_anywhere(
    tmp_path: Path, sidecar: SidecarProcess, bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "pw-" + secrets.token_hex(24)
    state = tmp_path / "state"
    state.mkdir()
    with DecisionClient(sidecar.url, timeout=5.0) as pdp:
        world = make_world(state, bundle, lambda: pdp)
        world.broker.register_credential(
            "stripe", secret, tools=["crm.read_ticket", "payments.refund"]
        )
        opened = world.open()
        got: list[str] = []

        def tool(credential: str, **parameters: Any) -> str:
            got.append(credential)
            return f"done {sorted(parameters)}"

        def run(**call: Any) -> Any:
            return world.guard.run(opened.token, tool, credential="stripe", **call)

        assert (
            run(
                tool="crm.read_ticket",
                operation="read",
                target=CRM,
                parameters={"ticket": 42},
                data="confidential",
            )
            == "done ['ticket']"
        )
        with pytest.raises(ActionDenied):
            run(tool="email.send_external", operation="write", target=CRM, data="internal")
        refund = {
            "tool": "payments.refund",
            "operation": "write",
            "target": STRIPE,
            "parameters": REFUND,
            "data": "confidential",
        }
        with pytest.raises(EscalationPending) as pending:
            run(**refund)
        world.queue.approve(pending.value.approval_id, BOB, why="double charge")
        run(**refund)
        world.broker.teardown(opened.session.id, "done", actor=ALICE["id"])
        with pytest.raises(ActionDenied) as after:
            run(tool="crm.read_ticket", operation="read", target=CRM, data="internal")
        assert after.value.reason_codes == ["session_revoked"]
    assert got == [secret, secret]

    trace = world.audit.trace(opened.session.id)
    assert [s.type for s in trace.steps] == [
        "session.opened",
        "decision",
        "action.executed",
        "decision",
        "decision",
        "escalation.requested",
        "escalation.approved",
        "decision",
        "action.executed",
        "session.teardown",
        "decision",
    ]
    assert trace.gaps == [] and world.audit.verify().ok
    # Decisions carry the sidecar's decision_id: its decision log maps onto the same events.
    assert all(d.decision_id for d in trace.decisions)
    sidecar.stop()
    log_lines = (sidecar.log_path.parent / "d.jsonl").read_text().splitlines()
    logged = [json.loads(line) for line in log_lines]
    assert {e["decision_id"] for e in logged} >= {d.decision_id for d in trace.decisions}
    assert world.audit.ingest_decision_logs(logged) == 0  # nothing new: one decision, one event

    haystacks = {
        "log records": caplog.text.encode()
        + repr([(r.msg, r.args) for r in caplog.records]).encode(),
        "state files": _file_bytes(state),
        "trace": render_trace(trace).encode() + json.dumps(trace.to_json()).encode(),
        "sidecar logs": _file_bytes(sidecar.log_path.parent),
    }
    assert caplog.records and haystacks["sidecar logs"]
    for where, data in haystacks.items():
        assert secret.encode() not in data, where
        assert PROMPT.encode() not in data, where


def test_async_guard_runs_the_same_flow(tmp_path: Path, bundle: Path) -> None:
    # A sidecar of its own: the module's one was stopped to read its decision log.
    secret = "pw-" + secrets.token_hex(24)

    async def scenario(url: str) -> list[str]:
        async with AsyncDecisionClient(url, timeout=5.0) as pdp:
            world = make_world(tmp_path, bundle, lambda: pdp, AsyncGuard)
            world.broker.register_credential("stripe", secret, tools=["payments.refund"])
            opened = world.open()
            got: list[str] = []

            async def refund_tool(amount: int, currency: str, credential: str) -> str:
                got.append(credential)
                await asyncio.sleep(0)
                return f"refunded {amount} {currency}"

            call = {
                "tool": "payments.refund",
                "operation": "write",
                "target": STRIPE,
                "parameters": REFUND,
                "data": "confidential",
                "credential": "stripe",
            }
            read = await world.guard.authorize(
                opened.token, "crm.read_ticket", "read", CRM, data="confidential"
            )
            assert read.allowed
            await world.guard.record_result(read, "ok", "ticket 42")
            with pytest.raises(EscalationPending) as pending:
                await world.guard.run(opened.token, refund_tool, **call)
            world.queue.approve(pending.value.approval_id, BOB, why="ok")
            assert await world.guard.run(opened.token, refund_tool, **call) == "refunded 500 EUR"
            world.broker.revoke(opened.session.id, reason="done")
            denied = await world.guard.authorize(
                opened.token, "crm.read_ticket", "read", CRM, data="confidential"
            )
            assert denied.decision.reason_codes == ["session_revoked"]
            trace = world.audit.trace(opened.session.id)
            assert trace.gaps == [] and [a.status for a in trace.actions] == ["ok", "ok"]
            assert [d.outcome for d in trace.decisions] == ["allow", "escalate", "allow", "deny"]
            world.audit.close()
            return got

    with SidecarProcess(bundle, args=["--no-watch"]) as process:
        assert asyncio.run(scenario(process.url)) == [secret]
    assert secret.encode() not in _file_bytes(tmp_path)
