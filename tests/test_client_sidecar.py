"""DecisionClient, AsyncDecisionClient and opa-python-client against the real sidecar process:
allow, deny and escalate round-trip with reasons, escalation and obligations intact."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_helpers import Case, decision_bundle, standin_request
from opa_client import OpaClient

from aam_policy.client import (
    AgentRequest,
    AsyncDecisionClient,
    Decision,
    DecisionClient,
    LocalDecisionClient,
)
from aam_policy.engine import RegorusEngine, load_policy
from aam_policy.sidecar import SidecarProcess

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Case]]:
    return decision_bundle(tmp_path_factory.mktemp("client-bundle"))


@pytest.fixture(scope="module")
def cases(bundle: tuple[Path, list[Case]]) -> list[Case]:
    return bundle[1]


@pytest.fixture(scope="module")
def expected(bundle: tuple[Path, list[Case]]) -> dict[str, Decision]:
    """What the policy itself says, evaluated in-process: the reference for "intact"."""
    engine = RegorusEngine(load_policy([bundle[0]]))
    return {
        case.name: Decision.model_validate(engine.evaluate("aam/decision", case.input))
        for case in bundle[1]
    }


@pytest.fixture(scope="module")
def sidecar(bundle: tuple[Path, list[Case]]) -> Iterator[SidecarProcess]:
    with SidecarProcess(bundle[0]) as process:
        yield process


def _check(case: Case, decision: Decision, expected: dict[str, Decision]) -> None:
    assert decision.outcome == case.outcome, case.name
    assert isinstance(decision.decision_id, str) and decision.decision_id, case.name
    assert decision.model_copy(update={"decision_id": None}) == expected[case.name], case.name
    assert decision.policy.revision and not decision.is_fail_closed
    if case.outcome == "escalate":
        assert decision.escalation is not None and decision.escalation.approvers
    if case.outcome != "allow":
        assert decision.reasons, case.name


def test_cases_cover_every_outcome(cases: list[Case]) -> None:
    assert {case.outcome for case in cases} == {"allow", "deny", "escalate"}


def test_sync_client_round_trip(
    sidecar: SidecarProcess, cases: list[Case], expected: dict[str, Decision]
) -> None:
    with DecisionClient(sidecar.url, fail_mode="raise") as pdp:
        for case in cases:
            _check(case, pdp.decide(case.input), expected)
            assert pdp.is_allowed(case.input) is (case.outcome == "allow")
        many = pdp.decide_many(case.input for case in cases)
    assert [d.outcome for d in many] == [case.outcome for case in cases]
    assert len({d.decision_id for d in many}) == len(cases)


def test_async_client_round_trip(
    sidecar: SidecarProcess, cases: list[Case], expected: dict[str, Decision]
) -> None:
    async def run() -> tuple[list[Decision], Decision, bool]:
        async with AsyncDecisionClient(sidecar.url, fail_mode="raise", max_concurrency=4) as pdp:
            many = await pdp.decide_many([case.input for case in cases] * 3)
            return many, await pdp.decide(cases[0].input), await pdp.is_allowed(cases[0].input)

    many, single, allowed = asyncio.run(run())
    for case, decision in zip(cases * 3, many, strict=True):
        _check(case, decision, expected)
    _check(cases[0], single, expected)
    assert allowed is (cases[0].outcome == "allow")


def test_opa_python_client_sees_the_same_decisions(
    sidecar: SidecarProcess, cases: list[Case], expected: dict[str, Decision]
) -> None:
    assert sidecar.port is not None
    with OpaClient(host="127.0.0.1", port=sidecar.port, timeout=5) as opa:
        for case in cases:
            answer = opa.query_rule(case.input, "aam", "decision")
            decision = Decision.model_validate(
                {**answer["result"], "decision_id": answer["decision_id"]}
            )
            _check(case, decision, expected)


def test_local_client_matches_the_sidecar(
    bundle: tuple[Path, list[Case]], cases: list[Case], sidecar: SidecarProcess
) -> None:
    local = LocalDecisionClient(bundle[0], fail_mode="raise")
    with DecisionClient(sidecar.url, fail_mode="raise") as pdp:
        for case in cases:
            remote = pdp.decide(case.input).model_copy(update={"decision_id": None})
            assert local.decide(case.input) == remote, case.name


def test_agent_request_is_sent_as_its_input(sidecar: SidecarProcess) -> None:
    # A request built with the builder decides like its dict form (stand-in intents are not
    # in the fixture bundle, so compare the two forms rather than a fixed outcome).
    request = standin_request(tool="payments.refund", operation="write", amount=500)
    assert isinstance(request, AgentRequest)
    with DecisionClient(sidecar.url, fail_mode="raise") as pdp:
        built, plain = pdp.decide(request), pdp.decide(request.to_input())
    assert built.model_copy(update={"decision_id": None}) == plain.model_copy(
        update={"decision_id": None}
    )
