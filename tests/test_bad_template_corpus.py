"""The bad-template corpus: each file under tests/data/intents/corpus holds one distinct mistake,
and the real `aam validate` names it with that file's name, line, column and field.

`corpus/expected.json` maps each file name to the problem it must produce: `line`, `column`,
`field` and `message` (a fragment of the text after `file:line:column: field: `).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run_aam

from aam_policy.intents import IntentValidationError, load_intents

CORPUS = Path(__file__).resolve().parent / "data" / "intents" / "corpus"
EXPECTED: dict[str, dict[str, Any]] = json.loads(
    (CORPUS / "expected.json").read_text(encoding="utf-8")
)
FILES = sorted(path.name for path in CORPUS.glob("*.yaml"))
_PROBLEM = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+): (?P<field>.*?): (?P<msg>.*)$")


@pytest.fixture(scope="module")
def validate_all() -> subprocess.CompletedProcess[str]:
    """One `aam validate` run over every corpus file (problems of all files are collected)."""
    return run_aam("validate", *(CORPUS / f for f in FILES), timeout=120)


def _problems_of(stderr: str, name: str) -> list[re.Match[str]]:
    matches = (_PROBLEM.match(line) for line in stderr.splitlines())
    return [m for m in matches if m is not None and m["file"] == str(CORPUS / name)]


def test_corpus_has_at_least_40_distinct_cases() -> None:
    assert len(FILES) >= 40
    assert set(FILES) == set(EXPECTED), "every corpus file needs an expectation, and only those"
    assert all(re.fullmatch(r"\d\d-[a-z0-9-]+\.yaml", name) for name in FILES)
    # distinct mistakes: no two files expect the same problem at the same place
    kinds = {(e["field"], e["message"]) for e in EXPECTED.values()}
    assert len(kinds) == len(EXPECTED)


def test_aam_validate_exits_2_and_counts_every_problem(
    validate_all: subprocess.CompletedProcess[str],
) -> None:
    assert validate_all.returncode == 2, validate_all.stdout
    assert "Traceback" not in validate_all.stderr
    assert f"{len(FILES)} problem(s) found" in validate_all.stderr
    assert "valid" not in validate_all.stdout


@pytest.mark.parametrize("name", FILES)
def test_aam_validate_names_file_line_and_message(
    name: str, validate_all: subprocess.CompletedProcess[str]
) -> None:
    want = EXPECTED[name]
    problems = _problems_of(validate_all.stderr, name)
    # exactly the one intended mistake: a corpus file with two would test two things at once
    assert len(problems) == 1, validate_all.stderr
    got = problems[0]
    assert (int(got["line"]), int(got["column"]), got["field"]) == (
        want["line"],
        want["column"],
        want["field"],
    ), got.group(0)
    assert want["message"] in got["msg"], got.group(0)


@pytest.mark.parametrize("name", FILES)
def test_every_corpus_file_is_refused_on_its_own(name: str) -> None:
    """Each file fails alone too (its problem does not depend on a neighbour in the run)."""
    with pytest.raises(IntentValidationError) as caught:
        load_intents([CORPUS / name])
    want = EXPECTED[name]
    texts = [str(problem) for problem in caught.value.problems]
    prefix = f"{CORPUS / name}:{want['line']}:{want['column']}: {want['field']}: "
    assert [t for t in texts if t.startswith(prefix) and want["message"] in t] == texts
