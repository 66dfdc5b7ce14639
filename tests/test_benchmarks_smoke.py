"""The benchmark generator produces valid intents and requests that decide as labelled.

No timing here: performance targets live in `python -m benchmarks`, never in unit tests.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("benchmarks._generate", reason="benchmarks/ is only in a source checkout")

from aam_policy.compiler import compile_bundle
from aam_policy.engine import RegorusEngine, load_policy
from aam_policy.intents import Intent
from benchmarks._generate import (
    SCENARIOS,
    all_scenarios,
    check_outcome,
    docs,
    generate_intents,
    generate_requests,
)

N = 20
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def generated():
    return generate_intents(N)


@pytest.fixture(scope="module")
def engine(generated, tmp_path_factory: pytest.TempPathFactory) -> RegorusEngine:
    out: Path = tmp_path_factory.mktemp("bench") / "bundle"
    compile_bundle(docs(generated), out)
    return RegorusEngine(load_policy([out]))


def test_generation_is_deterministic(generated) -> None:
    assert docs(generate_intents(N)) == docs(generated)
    assert [r.input for r in generate_requests(generated, 50)] == [
        r.input for r in generate_requests(generate_intents(N), 50)
    ]


def test_generated_intents_validate_and_are_realistic(generated) -> None:
    ids = set()
    for gen in generated:
        intent = Intent.model_validate(gen.doc)
        spec = intent.spec
        ids.add(intent.metadata.id)
        assert 4 <= len(spec.tools) <= 6
        assert any(tool.escalate for tool in spec.tools)
        assert spec.chaining
    assert len(ids) == N
    specs = [Intent.model_validate(g.doc).spec for g in generated]
    assert any(s.delegation for s in specs) and any(s.delegation is None for s in specs)
    assert any(s.break_glass for s in specs) and any(s.environments for s in specs)
    conditions = str([g.doc["spec"]["tools"] for g in generated])
    for shape in ("'all'", "'any'", "'not'"):
        assert shape in conditions


def test_every_scenario_decides_as_labelled(generated, engine: RegorusEngine) -> None:
    seen = collections.Counter()
    problems = []
    for gen in generated:
        for request in all_scenarios(gen):
            seen[request.scenario] += 1
            problem = check_outcome(request, engine.evaluate("aam/decision", request.input))
            if problem:
                problems.append(problem)
    assert problems == []
    assert set(seen) == set(SCENARIOS)


def test_request_mix_has_every_outcome(generated, engine: RegorusEngine) -> None:
    requests = generate_requests(generated, 200)
    outcomes = collections.Counter(r.outcome for r in requests)
    assert set(outcomes) == {"allow", "deny", "escalate"}
    problems = [
        p for r in requests if (p := check_outcome(r, engine.evaluate("aam/decision", r.input)))
    ]
    assert problems == []


def test_generated_examples_pass_as_rego_tests(engine: RegorusEngine) -> None:
    report = engine.run_tests()
    assert report.total >= 3 * N
    assert report.failed == 0


def test_instruction_counter_counts_checked_decisions() -> None:
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        pytest.skip("valgrind (with callgrind_control) is not on PATH")
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.instructions", "--intents", "10", "--decisions", "5"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr
    found = re.search(r"10 intents, 5 decisions \(default mix\): ([\d,]+) instructions", run.stdout)
    assert found, run.stdout
    assert int(found.group(1).replace(",", "")) > 100_000  # a decision is not free

    unknown = subprocess.run(
        [sys.executable, "-m", "benchmarks.instructions", "--scenario", "no-such-scenario"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert unknown.returncode == 2
    assert "no request has a scenario starting with 'no-such-scenario'" in unknown.stderr


def test_engine_floor_answers_with_a_real_entry(generated, engine: RegorusEngine) -> None:
    from benchmarks._floor import floor_p50_us

    inputs = [r.input for r in generate_requests(generated, 20)]
    entry = engine.policy.registry[inputs[0]["intent"]["id"]]
    # each floor policy raises unless it answered every input (the unpacked entry's key count)
    figures = floor_p50_us(entry, inputs, repeats=1)
    assert set(figures) == {"input_and_rule_p50_us", "entry_unpacked_p50_us"}
    assert all(value > 0 for value in figures.values())
