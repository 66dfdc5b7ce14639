"""OpaEngine: the real `opa` binary agrees with the embedded engine (skipped without opa)."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import BUNDLE, REQUESTS, SUITE, tar_of_dir, write_tree

from aam_policy.engine import (
    EvaluationError,
    OpaEngine,
    RegorusEngine,
    check_paths,
    default_engine,
    load_policy,
    opa_binary,
    run_tests,
)

pytestmark = pytest.mark.skipif(opa_binary() is None, reason="opa is not on PATH")


@pytest.fixture(scope="module")
def opa() -> OpaEngine:
    return OpaEngine(load_policy([BUNDLE]))


def test_auto_picks_opa(opa: OpaEngine) -> None:
    assert isinstance(default_engine(opa.policy), OpaEngine)
    assert opa.kind == "opa"
    assert opa.revision == "test-revision-1"


def test_opa_and_regorus_agree_on_decisions(opa: OpaEngine) -> None:
    embedded = RegorusEngine(opa.policy)
    for payload in REQUESTS:
        assert opa.evaluate("aam/decision", payload) == embedded.evaluate("aam/decision", payload)


def test_opa_undefined_and_data(opa: OpaEngine) -> None:
    assert opa.evaluate("aam/no_such_rule", {}) is None
    assert opa.evaluate("aam/registry/demo-intent/owner") == "team-test"


def test_opa_runtime_error(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {"e.rego": "package e\n\nimport rego.v1\n\nv := 1 if input.x\n\nv := 2 if input.x\n"},
    )
    engine = OpaEngine(load_policy([tmp_path]))
    with pytest.raises(EvaluationError, match=r"e\.rego"):
        engine.evaluate("e/v", {"x": True})


def test_opa_test_runner_matches_regorus() -> None:
    via_opa = run_tests([SUITE], kind="opa")
    via_regorus = run_tests([SUITE], kind="regorus")
    assert via_opa.engine == "opa"
    assert (via_opa.passed, via_opa.failed, via_opa.errors, via_opa.skipped) == (
        via_regorus.passed,
        via_regorus.failed,
        via_regorus.errors,
        via_regorus.skipped,
    )
    opa_rows = {(r.name, r.file, r.row, r.status) for r in via_opa.results}
    regorus_rows = {(r.name, r.file, r.row, r.status) for r in via_regorus.results}
    assert opa_rows == regorus_rows  # locations map back to the original files
    prints = next(r for r in via_opa.results if r.name == "test_prints_then_fails")
    assert "hello from a test" in prints.output


def test_opa_runs_bundle_tests_from_tarball(tmp_path: Path) -> None:
    tarball = tar_of_dir(BUNDLE, tmp_path / "bundle.tar.gz", prefix="/")
    report = run_tests([tarball], kind="opa", run="refund")
    assert (report.passed, report.failed) == (2, 0)
    assert all(r.file.startswith(f"{tarball}/") for r in report.results)


def test_opa_check_agrees(tmp_path: Path) -> None:
    assert check_paths([BUNDLE, SUITE], use_opa=True) == []
    write_tree(tmp_path, {"t.rego": 'package t\n\nimport rego.v1\n\nv := crypto.sha256("x")\n'})
    problems = check_paths([tmp_path], use_opa=True)
    assert any(p.message.startswith("opa:") and "crypto.sha256" in p.message for p in problems)
    assert any(p.code == "capability_error" for p in problems)
