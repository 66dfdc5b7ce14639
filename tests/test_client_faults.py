"""Fail-closed: a dead, absent, slow or babbling PDP yields a deny within timeout + 50 ms, never
an exception; `fail_mode="raise"` raises the documented `DecisionError` subclasses instead.

The bad peers are real: the sidecar process (killed with SIGKILL), a free port with nothing
listening, and a stdlib HTTP server on 127.0.0.1 that answers late or with garbage.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Iterator

import pytest
from client_helpers import (
    SECRET_MARKER,
    STANDIN_BUNDLE,
    Answer,
    fake_pdp,
    free_port,
    raw,
    respond,
    standin_request,
)

from aam_policy.client import (
    AsyncDecisionClient,
    Decision,
    DecisionClient,
    DecisionError,
    PDPError,
    PDPUnavailable,
)
from aam_policy.sidecar import SidecarProcess

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 0.25
BOUND = TIMEOUT + 0.05  # the fail-closed correctness bound
REQUEST = standin_request(tool="payments.refund", operation="write", amount=500).to_input()


def _timed_decide(client: DecisionClient) -> tuple[Decision, float]:
    start = time.monotonic()
    decision = client.decide(REQUEST)
    return decision, time.monotonic() - start


def _timed_adecide(url: str, **options: object) -> tuple[Decision, float]:
    async def run() -> tuple[Decision, float]:
        async with AsyncDecisionClient(url, timeout=TIMEOUT, **options) as pdp:  # type: ignore[arg-type]
            start = time.monotonic()
            decision = await pdp.decide(REQUEST)
            return decision, time.monotonic() - start

    return asyncio.run(run())


def _assert_denied(decision: Decision, code: str) -> None:
    assert decision.outcome == "deny" and decision.allow is False
    assert decision.reason_codes == [code] and decision.is_fail_closed
    assert decision.policy.revision == "" and decision.decision_id is None
    assert decision.intent == "demo-intent"


@pytest.fixture
def sidecar() -> Iterator[SidecarProcess]:
    with SidecarProcess(STANDIN_BUNDLE) as process:
        yield process


def test_sidecar_killed_mid_run(sidecar: SidecarProcess) -> None:
    with DecisionClient(sidecar.url, timeout=TIMEOUT) as pdp:
        assert pdp.decide(REQUEST).outcome == "escalate"  # a pooled keep-alive connection now
        os.kill(sidecar.pid, signal.SIGKILL)
        sidecar.wait(10)
        for _ in range(3):
            decision, elapsed = _timed_decide(pdp)
            _assert_denied(decision, "pdp_unavailable")
            assert elapsed < BOUND


def test_sidecar_killed_mid_run_async(sidecar: SidecarProcess) -> None:
    async def run() -> list[tuple[Decision, float]]:
        async with AsyncDecisionClient(sidecar.url, timeout=TIMEOUT) as pdp:
            first = await pdp.decide_many([REQUEST] * 4)
            assert [d.outcome for d in first] == ["escalate"] * 4
            os.kill(sidecar.pid, signal.SIGKILL)
            await asyncio.to_thread(sidecar.wait, 10)
            results = []
            for _ in range(2):
                start = time.monotonic()
                decisions = await pdp.decide_many([REQUEST] * 4)
                elapsed = time.monotonic() - start
                results += [(d, elapsed) for d in decisions]
            return results

    for decision, elapsed in asyncio.run(run()):
        _assert_denied(decision, "pdp_unavailable")
        assert elapsed < BOUND


def test_nothing_listening() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with DecisionClient(url, timeout=TIMEOUT) as pdp:
        decision, elapsed = _timed_decide(pdp)
    _assert_denied(decision, "pdp_unavailable")
    assert "after 3 attempts" in decision.reasons[0].message  # 2 retries on connect errors
    assert elapsed < BOUND
    decision, elapsed = _timed_adecide(url, retries=0)
    _assert_denied(decision, "pdp_unavailable")
    assert "after 1 attempt:" in decision.reasons[0].message
    assert elapsed < BOUND


def test_slower_than_the_timeout_is_not_retried() -> None:
    with fake_pdp(respond(200, '{"result": {}}', delay=1.0)) as pdp_server:
        with DecisionClient(pdp_server.url, timeout=TIMEOUT) as pdp:
            decision, elapsed = _timed_decide(pdp)
        _assert_denied(decision, "pdp_unavailable")
        assert TIMEOUT - 0.01 <= elapsed < BOUND
        decision, elapsed = _timed_adecide(pdp_server.url)
        _assert_denied(decision, "pdp_unavailable")
        assert TIMEOUT - 0.01 <= elapsed < BOUND
        assert pdp_server.hits == 2


ESCALATE_NO_DETAILS = '{"result": {"outcome": "escalate", "allow": false}}'
BAD_ANSWERS: dict[str, tuple[Answer, str]] = {
    "not-json": (respond(200, "<html>hello</html>"), "pdp_error"),
    "empty-body": (respond(200, b""), "pdp_error"),
    "json-array": (respond(200, "[1, 2]"), "pdp_error"),
    "undefined": (respond(200, '{"decision_id": "d1"}'), "pdp_error"),
    "empty-object": (respond(200, "{}"), "pdp_error"),
    "result-string": (respond(200, '{"result": "allow"}'), "pdp_error"),
    "allow-contradicts-outcome": (
        respond(200, '{"result": {"outcome": "allow", "allow": false}}'),
        "pdp_error",
    ),
    "allow-true-on-deny": (
        respond(200, '{"result": {"outcome": "deny", "allow": true}}'),
        "pdp_error",
    ),
    "escalate-without-details": (respond(200, ESCALATE_NO_DETAILS), "pdp_error"),
    "http-500": (respond(500, '{"code": "internal_error", "message": "boom"}'), "pdp_error"),
    "http-503-garbage": (respond(503, "\x00\xff garbage"), "pdp_error"),
    "http-400": (respond(400, '{"code": "invalid_parameter", "message": "x"}'), "pdp_error"),
    "bad-gzip": (respond(200, "{}", headers={"Content-Encoding": "gzip"}), "pdp_error"),
    "not-http": (raw(b"\x16\x03\x01 garbage, not HTTP\r\n\r\n"), "pdp_unavailable"),
}


@pytest.mark.parametrize("name", list(BAD_ANSWERS))
def test_bad_answers_fail_closed_once(name: str) -> None:
    answer, code = BAD_ANSWERS[name]
    with fake_pdp(answer) as pdp_server:
        with DecisionClient(pdp_server.url, timeout=TIMEOUT) as pdp:
            decision, elapsed = _timed_decide(pdp)
        _assert_denied(decision, code)
        assert elapsed < BOUND
        decision, elapsed = _timed_adecide(pdp_server.url)
        _assert_denied(decision, code)
        assert elapsed < BOUND
        assert pdp_server.hits == 2  # an answer, however bad, is never retried


def test_raise_mode_raises_documented_types() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    pdp = DecisionClient(url, timeout=TIMEOUT, fail_mode="raise")
    with pdp, pytest.raises(PDPUnavailable) as unavailable:
        pdp.decide(REQUEST)
    assert unavailable.value.code == "pdp_unavailable"
    assert isinstance(unavailable.value, DecisionError)

    with fake_pdp(respond(500, '{"code": "internal_error", "message": "boom"}')) as server:
        pdp = DecisionClient(server.url, timeout=TIMEOUT, fail_mode="raise")
        with pdp, pytest.raises(PDPError) as error:
            pdp.decide(REQUEST)
        assert error.value.status_code == 500 and error.value.code == "pdp_error"
        assert "internal_error" in error.value.message and "boom" not in error.value.message

        async def run() -> None:
            async with AsyncDecisionClient(server.url, fail_mode="raise") as apdp:
                await apdp.decide(REQUEST)

        with pytest.raises(PDPError):
            asyncio.run(run())

    with fake_pdp(respond(200, "{}", delay=1.0)) as server:
        pdp = DecisionClient(server.url, timeout=TIMEOUT, fail_mode="raise")
        with pdp, pytest.raises(PDPUnavailable, match="no answer within 250 ms"):
            pdp.decide(REQUEST)


def test_no_exception_escapes_and_logs_hold_no_input(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="aam_policy.client")
    url = f"http://127.0.0.1:{free_port()}"
    with DecisionClient(url, timeout=TIMEOUT) as pdp:
        unserialisable = {**REQUEST, "action": {"tool": "x", "parameters": {"f": object()}}}
        decisions = pdp.decide_many([REQUEST, unserialisable, {}])
        assert pdp.is_allowed(REQUEST) is False
    assert [d.reason_codes for d in decisions] == [
        ["pdp_unavailable"],
        ["pdp_error"],
        ["pdp_unavailable"],
    ]
    warnings = [r for r in caplog.records if r.name == "aam_policy.client"]
    assert len(warnings) == 4 and all(r.levelno == logging.WARNING for r in warnings)
    text = "\n".join(r.getMessage() for r in warnings)
    assert REQUEST["request_id"] in text
    assert SECRET_MARKER not in text and "answer ticket 42" not in text


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        DecisionClient(fail_mode="open")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DecisionClient(timeout=0)
    for url in ("127.0.0.1:8181", "http://[::1", "ftp://127.0.0.1"):
        with pytest.raises(ValueError):
            DecisionClient(url)
    with pytest.raises(ValueError):
        AsyncDecisionClient(max_concurrency=0)
