"""The engine over a real compiled bundle: fixtures/intents -> compiler -> RegorusEngine."""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import REPO

from aam_policy.engine import RegorusEngine, check_paths, load_policy, run_tests

try:
    from aam_policy.compiler import baseline_request, compile_bundle
    from aam_policy.intents import load_intents
except ImportError:  # pragma: no cover - until the compiler exists
    pytest.skip("the compiler is not available yet", allow_module_level=True)

FIXTURES = REPO / "fixtures" / "intents"
if not list(FIXTURES.glob("*.y*ml")):  # pragma: no cover
    pytest.skip("no fixture intents yet", allow_module_level=True)


def _merge(base: Any, patch: Any) -> Any:
    """Examples are partial requests: dicts merge recursively, anything else replaces."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base.get(key), value) if key in base else value
        return merged
    return copy.deepcopy(patch)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Any]]:
    out = tmp_path_factory.mktemp("compiled")
    intents = [item.intent for item in load_intents([FIXTURES])]
    compile_bundle(intents, out / "bundle", tarball=out / "bundle.tar.gz")
    return out / "bundle", out / "bundle.tar.gz", intents


@pytest.fixture(scope="module")
def cases(compiled: tuple[Path, Path, list[Any]]) -> list[tuple[str, dict[str, Any], str]]:
    """(label, request, expected outcome) for every example of every fixture intent."""
    _, _, intents = compiled
    found = []
    for intent in intents:
        dumped = intent.model_dump(mode="json", by_alias=True)
        base = baseline_request(intent)
        for example in dumped["spec"]["examples"]:
            request = _merge(base, example["request"])
            found.append((example["name"], request, example["expect"]["outcome"]))
        # and a request for an intent the bundle does not know
        found.append(("unknown intent", _merge(base, {"intent": {"id": "no-such"}}), "deny"))
    return found


@pytest.fixture(scope="module")
def engine(compiled: tuple[Path, Path, list[Any]]) -> RegorusEngine:
    return RegorusEngine(load_policy([compiled[0]]))


def test_core_and_generated_tests_pass(compiled: tuple[Path, Path, list[Any]]) -> None:
    # the `aam test rego build/bundle` layout: the core is loaded once although both hold it
    report = run_tests([REPO / "rego", compiled[0]], kind="regorus")
    failing = [
        f"{r.location}: {r.full_name}: {r.message}"
        for r in report.results
        if r.status in ("fail", "error")
    ]
    assert failing == []
    assert report.passed > 0


def test_python_dispatch_equals_data_aam_decision(
    engine: RegorusEngine, cases: list[tuple[str, dict[str, Any], str]]
) -> None:
    assert len(cases) >= 5
    for label, request, expected in cases:
        fast = engine.evaluate("aam/decision", request)
        slow = engine.evaluate("data.aam.decision", request)
        assert fast == slow, label
        assert fast["outcome"] == expected, label
        assert fast["policy"]["revision"] == engine.revision


def test_tarball_and_directory_agree(
    compiled: tuple[Path, Path, list[Any]],
    engine: RegorusEngine,
    cases: list[tuple[str, dict[str, Any], str]],
) -> None:
    from_tar = RegorusEngine(load_policy([compiled[1]]))
    assert from_tar.revision == engine.revision != ""
    for label, request, _ in cases:
        assert from_tar.evaluate("aam/decision", request) == engine.evaluate(
            "aam/decision", request
        ), label


def test_compiled_bundle_passes_check(compiled: tuple[Path, Path, list[Any]]) -> None:
    assert check_paths([compiled[0]], use_opa=False) == []


def test_concurrent_decisions_on_real_bundle(
    engine: RegorusEngine, cases: list[tuple[str, dict[str, Any], str]]
) -> None:
    expected = [engine.evaluate("aam/decision", request) for _, request, _ in cases]
    wrong: list[str] = []

    def worker(offset: int) -> None:
        for i in range(100):
            k = (i + offset) % len(cases)
            if engine.evaluate("aam/decision", cases[k][1]) != expected[k]:
                wrong.append(cases[k][0])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
