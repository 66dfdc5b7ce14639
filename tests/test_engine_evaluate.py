"""RegorusEngine.evaluate: values, undefined, paths, intent dispatch, errors, threads."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import BUNDLE, REQUESTS, request, tar_of_dir, write_tree

from aam_policy.engine import (
    Engine,
    EngineUnavailable,
    EvaluationError,
    OpaEngine,
    RegorusEngine,
    default_engine,
    load_policy,
    opa_binary,
)


@pytest.fixture(scope="module")
def engine() -> RegorusEngine:
    return RegorusEngine(load_policy([BUNDLE]))


def test_engine_satisfies_protocol(engine: RegorusEngine) -> None:
    assert isinstance(engine, Engine)
    assert engine.kind == "regorus"
    assert engine.revision == "test-revision-1"


def test_decision_values(engine: RegorusEngine) -> None:
    allow = engine.evaluate("aam/decision", request())
    assert allow["outcome"] == "allow"
    assert allow["allow"] is True
    assert allow["reasons"] == []
    assert allow["policy"] == {"revision": "test-revision-1", "intent_revision": "rev-demo"}

    escalate = engine.evaluate("aam/decision", request(parameters={"amount": 500}))
    assert escalate["outcome"] == "escalate"
    assert escalate["escalation"] == {
        "approvers": ["role:payments-lead"],
        "approval_ttl_seconds": 900,
    }

    deny = engine.evaluate("aam/decision", request(tool="email.send_external"))
    assert [r["code"] for r in deny["reasons"]] == ["tool_not_in_intent"]


@pytest.mark.parametrize("payload", REQUESTS, ids=lambda r: json.dumps(r)[:60])
def test_python_dispatch_equals_rego_dispatch(engine: RegorusEngine, payload: dict) -> None:
    # "aam/decision" goes straight to the intent's package; data.aam.decision dispatches in
    # Rego. Both must give the same document for every request.
    via_python = engine.evaluate("aam/decision", payload)
    via_rego = engine.evaluate("data.aam.decision", payload)
    assert via_python == via_rego
    assert via_python is not None


def test_dispatch_table_only_lists_existing_packages(tmp_path: Path) -> None:
    # a registry entry whose module is missing falls back to data.aam.decision
    root = tmp_path / "b"
    write_tree(root, {})
    for path in BUNDLE.rglob("*"):
        if path.is_file() and path.name != "other_intent.rego":
            target = root / path.relative_to(BUNDLE)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    engine = RegorusEngine(load_policy([root]))
    payload = request("other-intent", tool="deploy.rollout", operation="execute")
    # no query is invented for the missing package: the answer is data.aam.decision's
    expected = engine.evaluate("data.aam.decision", payload)
    assert expected["outcome"] == "allow"  # the stand-in core's fallback, no escalation rules
    assert engine.evaluate("aam/decision", payload) == expected


@pytest.mark.parametrize(
    "path",
    ["aam/decision", "/aam/decision", "aam/decision/", "data.aam.decision", " aam/decision "],
)
def test_path_forms(engine: RegorusEngine, path: str) -> None:
    assert engine.evaluate(path, request())["outcome"] == "allow"


def test_undefined_is_none(engine: RegorusEngine) -> None:
    assert engine.evaluate("aam/no_such_rule", request()) is None
    assert engine.evaluate("aam/intents/demo_intent/cond_1_0_0", request()) is None
    assert engine.evaluate("nothing/here/at/all", {}) is None


def test_data_documents_and_quoted_keys(engine: RegorusEngine) -> None:
    assert engine.evaluate("aam/registry/demo-intent/owner") == "team-test"
    assert engine.evaluate("aam/bundle") == {"revision": "test-revision-1"}
    assert engine.evaluate(
        "aam/intents/demo_intent/cond_1_0_0", request(parameters={"amount": 101})
    )


def test_sets_come_back_as_sorted_lists(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "s.rego": "package s\n\nimport rego.v1\n\n"
            'objs contains {"k": x} if some x in input.xs\n\n'
            "nums contains x if some x in input.xs\n\n"
            "nul := null\n\n"
            'weird := "<undefined>"\n'
        },
    )
    engine = RegorusEngine(load_policy([tmp_path]))
    payload = {"xs": [3, 1, 2, 1]}
    assert engine.evaluate("s/objs", payload) == [{"k": 1}, {"k": 2}, {"k": 3}]
    assert engine.evaluate("s/nums", payload) == [1, 2, 3]
    assert engine.evaluate("s/nul", payload) is None
    assert engine.evaluate("s/weird", payload) == "<undefined>"
    # the whole package document is a query, not a rule
    assert engine.evaluate("s", payload)["nums"] == [1, 2, 3]


def test_without_input_input_is_undefined(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {"i.rego": "package i\n\nimport rego.v1\n\ndefault has := false\n\nhas if input\n"},
    )
    engine = RegorusEngine(load_policy([tmp_path]))
    assert engine.evaluate("i/has", {"x": 1}) is True
    assert engine.evaluate("i/has") is False  # not left over from the previous call
    assert engine.evaluate("i/has", {}) is True


def test_alternating_inputs_on_one_thread(engine: RegorusEngine) -> None:
    fresh = [RegorusEngine(load_policy([BUNDLE])).evaluate("aam/decision", r) for r in REQUESTS]
    for _ in range(3):
        assert [engine.evaluate("aam/decision", r) for r in REQUESTS] == fresh


def test_runtime_error_raises_evaluation_error(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "e.rego": "package e\n\nimport rego.v1\n\n"
            "v := 1 if input.x\n\nv := 2 if input.x\n\nok := 1\n"
        },
    )
    engine = RegorusEngine(load_policy([tmp_path]))
    with pytest.raises(EvaluationError) as caught:
        engine.evaluate("e/v", {"x": True})
    assert "e.rego:7" in str(caught.value)
    assert "conflict" in str(caught.value)
    # the engine keeps working after an error
    assert engine.evaluate("e/ok", {"x": True}) == 1
    assert engine.evaluate("e/v", {"x": False}) is None


def test_bad_input_and_bad_path(engine: RegorusEngine) -> None:
    with pytest.raises(EvaluationError, match="not a JSON document"):
        engine.evaluate("aam/decision", {"when": object()})
    with pytest.raises(ValueError, match="invalid rule path"):
        engine.evaluate("data.aam.decision; true", {})
    # a REST-style path cannot inject Rego: the segment becomes a quoted key
    assert engine.evaluate('aam/decision"] with input as {}', {}) is None


def test_tarball_engine_matches_directory_engine(tmp_path: Path, engine: RegorusEngine) -> None:
    tarball = tar_of_dir(BUNDLE, tmp_path / "bundle.tar.gz", prefix="/")
    from_tar = RegorusEngine(load_policy([tarball]))
    for payload in REQUESTS:
        assert from_tar.evaluate("aam/decision", payload) == engine.evaluate(
            "aam/decision", payload
        )


def test_concurrent_threads_get_their_own_answers(engine: RegorusEngine) -> None:
    expected = [engine.evaluate("aam/decision", r) for r in REQUESTS]
    errors: list[str] = []
    start = threading.Barrier(8)

    def worker(offset: int) -> None:
        start.wait()
        for i in range(300):
            k = (i + offset) % len(REQUESTS)
            got = engine.evaluate("aam/decision", REQUESTS[k])
            if got != expected[k]:
                errors.append(f"thread {offset} request {k}: {got!r}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_engine_built_on_one_thread_used_on_another(engine: RegorusEngine) -> None:
    # regorus objects are bound to their thread; the engine must hide that
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(engine.evaluate("aam/decision", {})))
    thread.start()
    thread.join()
    assert results and results[0]["reasons"][0]["code"] == "no_intent"


def test_default_engine_kinds(engine: RegorusEngine) -> None:
    policy = engine.policy
    assert isinstance(default_engine(policy, "regorus"), RegorusEngine)
    auto = default_engine(policy)
    assert isinstance(auto, OpaEngine if opa_binary() else RegorusEngine)
    with pytest.raises(ValueError, match="unknown engine"):
        default_engine(policy, "wasm")


@pytest.mark.skipif(opa_binary() is not None, reason="opa is on PATH")
def test_opa_engine_unavailable_without_binary(engine: RegorusEngine) -> None:
    with pytest.raises(EngineUnavailable, match="not on PATH"):
        default_engine(engine.policy, "opa")


def test_replaced_engine_is_dropped_on_its_own_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # regorus objects dropped on a foreign thread are leaked by pyo3 with an unraisable
    # "dropped on another thread" error; a reloaded bundle must not do that.
    unraisable: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: unraisable.append(str(info.exc_value)))
    policy = load_policy([BUNDLE])
    engine: RegorusEngine | None = RegorusEngine(policy)
    used, release = threading.Event(), threading.Event()

    def worker() -> None:
        assert engine is not None
        engine.evaluate("aam/decision", request())
        used.set()
        release.wait()
        # the next engine built on this thread purges the old one, here
        RegorusEngine(policy).evaluate("aam/decision", request())

    thread = threading.Thread(target=worker)
    thread.start()
    used.wait()
    engine = None  # the "reload": the old engine is released on the main thread
    gc.collect()
    release.set()
    thread.join()
    gc.collect()
    assert unraisable == []


_ERROR_PROBE = """
import os, sys
from aam_policy.engine._regorus import new_engine
engine = new_engine()
engine.add_policy("a.rego", "package a\\nimport rego.v1\\nx := 1\\n")
try:
    engine.eval_rule_as_json("data.nowhere")
except RuntimeError as exc:
    print(os.environ["RUST_LIB_BACKTRACE"], "backtrace" in str(exc).lower())
"""


@pytest.mark.parametrize(
    ("lib_backtrace", "expected"),
    [(None, "0 False"), ("1", "1 True")],  # an explicit setting is left alone
)
def test_regorus_errors_carry_no_rust_backtrace_unless_asked(
    lib_backtrace: str | None, expected: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RUST_LIB_BACKTRACE"}
    env["RUST_BACKTRACE"] = "1"  # as on machines where developers set it
    if lib_backtrace is not None:
        env["RUST_LIB_BACKTRACE"] = lib_backtrace
    done = subprocess.run(
        [sys.executable, "-c", _ERROR_PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected
