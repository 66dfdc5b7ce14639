"""LocalDecisionClient / AsyncLocalDecisionClient: the client interface over the embedded
engine, failing closed on engine errors and undefined or malformed results."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from client_helpers import SECRET_MARKER, STANDIN_BUNDLE, standin_cases, standin_request

from aam_policy.client import (
    AsyncLocalDecisionClient,
    Decision,
    Evaluator,
    LocalDecisionClient,
    PDPError,
)
from aam_policy.engine import RegorusEngine, load_policy

CASES = standin_cases()


@pytest.fixture(scope="module")
def engine() -> RegorusEngine:
    return RegorusEngine(load_policy([STANDIN_BUNDLE]))


class _Stub:
    """An Evaluator returning a canned result, or raising."""

    def __init__(self, result: Any = None, error: Exception | None = None) -> None:
        self.result, self.error = result, error

    def evaluate(self, path: str, input: Any = None) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


def test_decides_like_the_engine(engine: RegorusEngine) -> None:
    from_path = LocalDecisionClient(STANDIN_BUNDLE, fail_mode="raise")
    from_engine = LocalDecisionClient(engine, fail_mode="raise")
    assert isinstance(engine, Evaluator)
    for case in CASES:
        expected = Decision.model_validate(engine.evaluate("aam/decision", case.input))
        assert expected.outcome == case.outcome, case.name
        assert from_path.decide(case.input) == expected == from_engine.decide(case.input)
        assert from_engine.is_allowed(case.input) is (case.outcome == "allow")
    assert [d.outcome for d in from_engine.decide_many(c.input for c in CASES)] == [
        c.outcome for c in CASES
    ]
    request = standin_request(tool="payments.refund", operation="write", amount=500)
    decision = from_engine.decide(request)
    assert decision.outcome == "escalate" and decision.decision_id is None
    assert decision.escalation is not None
    assert decision.escalation.approvers == ["role:payments-lead"]


def test_undefined_and_malformed_results_fail_closed(engine: RegorusEngine) -> None:
    request = CASES[0].input
    undefined = LocalDecisionClient(engine, path="aam/no_such_rule")
    assert undefined.decide(request).reason_codes == ["pdp_error"]
    malformed = LocalDecisionClient(_Stub({"outcome": "allow", "allow": False}))
    decision = malformed.decide(request)
    assert decision.outcome == "deny" and decision.reason_codes == ["pdp_error"]
    assert "malformed decision" in decision.reasons[0].message
    with pytest.raises(PDPError, match="undefined decision"):
        LocalDecisionClient(engine, path="aam/no_such_rule", fail_mode="raise").decide(request)


def test_engine_errors_fail_closed_without_leaking_input(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aam_policy.client")
    failing = _Stub(error=RuntimeError(f"type error near {SECRET_MARKER}"))
    decision = LocalDecisionClient(failing).decide(CASES[0].input)
    assert decision.reason_codes == ["pdp_error"] and decision.intent == "demo-intent"
    assert SECRET_MARKER not in decision.reasons[0].message
    assert SECRET_MARKER not in caplog.text and "pdp_error" in caplog.text
    with pytest.raises(PDPError) as raised:
        LocalDecisionClient(failing, fail_mode="raise").decide(CASES[0].input)
    assert isinstance(raised.value.__cause__, RuntimeError)  # details stay on the cause


def test_async_twin(engine: RegorusEngine) -> None:
    async def run() -> tuple[list[Decision], Decision, bool]:
        async with AsyncLocalDecisionClient(engine) as pdp:
            many = await pdp.decide_many([c.input for c in CASES])
            return many, await pdp.decide(CASES[0].input), await pdp.is_allowed(CASES[0].input)

    many, single, allowed = asyncio.run(run())
    assert [d.outcome for d in many] == [c.outcome for c in CASES]
    assert single.outcome == CASES[0].outcome and allowed is (CASES[0].outcome == "allow")
