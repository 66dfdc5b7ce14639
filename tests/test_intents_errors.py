"""Bad templates: each problem names file:line:column and the field, through the API and
through the real `aam validate` command."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import run_aam

from aam_policy.intents import IntentValidationError, Problem, load_intent_text, load_intents

DATA = Path(__file__).resolve().parent / "data" / "intents"
BAD = DATA / "bad"

# file (under tests/data/intents), line, column, field, words the message must contain
CASES = [
    ("bad/unknown_field.yaml", 12, 7, "spec.tools[0]", "unknown field 'opertions'"),
    (
        "bad/unknown_field_in_expect.yaml",
        20,
        32,
        "spec.examples[0].expect",
        "unknown field 'reason'",
    ),
    ("bad/bad_id.yaml", 4, 7, "metadata.id", "'Bad_Id' must match ^[a-z][a-z0-9-]{0,62}$"),
    ("bad/bad_id_newline.yaml", 4, 7, "metadata.id", "'bad-example\\n' must match"),
    ("bad/bad_duration.yaml", 9, 22, "spec.session.max_ttl", "'10x' is not a duration like 90s"),
    ("bad/zero_duration.yaml", 9, 22, "spec.session.max_ttl", "'0s' is not a duration"),
    (
        "bad/bad_path_root.yaml",
        15,
        25,
        "spec.tools[0].escalate[0].when.field",
        "field path 'request.amount' must start with one of actor, action",
    ),
    (
        "bad/bad_path_segment.yaml",
        15,
        25,
        "spec.tools[0].escalate[0].when.field",
        "has an invalid segment '2x'",
    ),
    (
        "bad/unknown_op.yaml",
        15,
        55,
        "spec.tools[0].escalate[0].when.op",
        "'between' is not one of eq, ne, gt",
    ),
    (
        "bad/gt_on_string.yaml",
        15,
        66,
        "spec.tools[0].escalate[0].when.value",
        "op 'gt' needs a number, got 'lots'",
    ),
    (
        "bad/in_not_a_list.yaml",
        15,
        66,
        "spec.tools[0].escalate[0].when.value",
        "op 'in' needs a non-empty list",
    ),
    (
        "bad/exists_with_string.yaml",
        15,
        70,
        "spec.tools[0].escalate[0].when.value",
        "op 'exists' needs true or false, got 'yes'",
    ),
    (
        "bad/nested_not_bad_op.yaml",
        15,
        67,
        "spec.tools[0].escalate[0].when.not.not.op",
        "'bigger' is not one of",
    ),
    (
        "bad/condition_shape.yaml",
        15,
        17,
        "spec.tools[0].escalate[0].when",
        "must be a condition: {field, op, value}, all:, any: or not:",
    ),
    (
        "bad/bad_approver.yaml",
        16,
        23,
        "spec.tools[0].escalate[0].approvers[0]",
        "'payments-lead' must match ^(role|user):",
    ),
    ("bad/bad_operation.yaml", 12, 20, "spec.tools[0].operations[0]", "'fly' is not one of read"),
    ("bad/bad_sensitivity.yaml", 13, 24, "spec.tools[0].max_sensitivity", "'secret' is not one"),
    ("bad/duplicate_tool.yaml", 17, 14, "spec.tools[1].name", "duplicate tool 'crm.read_ticket'"),
    ("bad/empty_tools.yaml", 10, 10, "spec.tools", "must not be empty"),
    ("bad/missing_agents.yaml", 8, 5, "spec.principals.agents", "required field is missing"),
    ("bad/wrong_api_version.yaml", 1, 13, "apiVersion", "must be 'aam/v1', got 'aam/v2'"),
    ("bad/bad_outcome.yaml", 20, 15, "spec.examples[0].expect", "'permit' is not one of allow"),
    (
        "bad/bad_reason_code.yaml",
        20,
        41,
        "spec.examples[0].expect.reasons[0]",
        "'drift' is not one of no_intent",
    ),
    ("bad/duplicate_key.yaml", 6, 3, "metadata", "duplicate key 'owner' (first on line 5)"),
    ("bad/bad_yaml.yaml", 10, 8, "(yaml)", "expected ',' or '}'"),
    (
        "bad/alias.yaml",
        18,
        11,
        "spec.tools[0].escalate[1].approvers",
        "aliases are not supported",
    ),
    (
        "bad/duplicate_id_multidoc.yaml",
        25,
        7,
        "metadata.id",
        "duplicate intent id 'bad-example' (first in {dir}/bad/duplicate_id_multidoc.yaml:4:7)",
    ),
    (
        "duplicate_id/b.yml",
        4,
        7,
        "metadata.id",
        "duplicate intent id 'bad-example' (first in {dir}/duplicate_id/a.yaml:4:7)",
    ),
]


def _inputs(name: str) -> Path:
    """The path to load: the duplicate-id pair is loaded as its directory."""
    path = DATA / name
    return path.parent if path.parent.name == "duplicate_id" else path


def _expected(name: str, line: int, column: int, field: str, words: str) -> tuple[str, str]:
    words = words.replace("{dir}", str(DATA))
    return f"{DATA / name}:{line}:{column}: {field}: ", words


def test_every_bad_file_has_a_case() -> None:
    named = {name for name, *_ in CASES}
    assert {f"bad/{path.name}" for path in BAD.glob("*.yaml")} <= named
    assert len(CASES) >= 15


@pytest.mark.parametrize(("name", "line", "column", "field", "words"), CASES)
def test_problem_names_file_line_and_field(
    name: str, line: int, column: int, field: str, words: str
) -> None:
    with pytest.raises(IntentValidationError) as caught:
        load_intents([_inputs(name)])
    prefix, words = _expected(name, line, column, field, words)
    matching = [str(p) for p in caught.value.problems if str(p).startswith(prefix)]
    assert matching, [str(p) for p in caught.value.problems]
    assert any(words in text for text in matching), matching


@pytest.mark.parametrize(("name", "line", "column", "field", "words"), CASES)
def test_aam_validate_exits_2_with_the_problem(
    name: str, line: int, column: int, field: str, words: str
) -> None:
    result = run_aam("validate", _inputs(name))
    assert result.returncode == 2, result.stdout
    prefix, words = _expected(name, line, column, field, words)
    lines = [text for text in result.stderr.splitlines() if text.startswith(prefix)]
    assert any(words in text for text in lines), result.stderr
    assert "problem(s) found" in result.stderr


def test_all_problems_are_reported_not_just_the_first() -> None:
    text = (BAD / "unknown_field.yaml").read_text().replace("internal", "secret")
    with pytest.raises(IntentValidationError) as caught:
        load_intent_text(text, "two.yaml")
    fields = [problem.field for problem in caught.value.problems]
    assert "spec.tools[0]" in fields
    assert "spec.tools[0].max_sensitivity" in fields


def test_problems_of_several_files_are_collected() -> None:
    result = run_aam("validate", BAD / "bad_id.yaml", BAD / "bad_operation.yaml")
    assert result.returncode == 2
    assert "bad_id.yaml:4:7: metadata.id" in result.stderr
    assert "bad_operation.yaml:12:20: spec.tools[0].operations[0]" in result.stderr


def test_a_missing_file_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(IntentValidationError) as caught:
        load_intents([tmp_path / "nope.yaml"])
    assert caught.value.problems == [
        Problem(str(tmp_path / "nope.yaml"), 0, 0, "", "no such file or directory")
    ]
    assert str(caught.value.problems[0]) == f"{tmp_path / 'nope.yaml'}: no such file or directory"


def test_a_file_without_an_intent_is_a_problem() -> None:
    with pytest.raises(IntentValidationError, match=r"^empty\.yaml: holds no intent$"):
        load_intent_text("# nothing here yet\n", "empty.yaml")


def test_values_json_cannot_hold_are_refused() -> None:
    text = (BAD / "bad_id.yaml").read_text().replace("Bad_Id", "ok-id")
    text = text.replace("operation: read}}", "operation: read}, on: 1}")
    with pytest.raises(IntentValidationError) as caught:
        load_intent_text(text, "keys.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "keys.yaml:19:67: spec.examples[0].request: key True must be a string (quote it)"
    ]


def test_an_infinite_number_is_refused_by_the_model() -> None:
    text = (BAD / "gt_on_string.yaml").read_text().replace("value: lots", "value: .inf")
    with pytest.raises(IntentValidationError) as caught:
        load_intent_text(text, "inf.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "inf.yaml:15:66: spec.tools[0].escalate[0].when.value: op 'gt' needs a number, got inf"
    ]


def test_aam_compile_with_an_invalid_template_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    tarball = tmp_path / "bundle.tar.gz"
    result = run_aam("compile", BAD / "bad_operation.yaml", "-o", out, "--tarball", tarball)
    assert result.returncode == 2
    assert "spec.tools[0].operations[0]" in result.stderr
    assert "nothing written" in result.stderr
    assert not out.exists()
    assert not tarball.exists()


def test_a_directory_without_templates_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(IntentValidationError, match=r"holds no \*\.yaml file"):
        load_intents([tmp_path])


def test_a_request_must_be_json() -> None:
    text = (BAD / "bad_id.yaml").read_text().replace("Bad_Id", "ok-id")
    text = text.replace("operation: read}}", "operation: read, amount: [1, .nan]}}")
    with pytest.raises(IntentValidationError) as caught:
        load_intent_text(text, "nan.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "nan.yaml:19:78: spec.examples[0].request.action.amount[1]: not a JSON value: nan"
    ]


def test_aam_compile_in_worker_processes_writes_the_same_bundle(tmp_path: Path) -> None:
    fixtures = DATA.parent.parent.parent / "fixtures" / "intents"
    sources = tmp_path / "intents"
    sources.mkdir()
    template = (fixtures / "support.yaml").read_text()
    for index in range(70):  # enough files for the worker pool
        ident = f"support-{index:03d}"
        (sources / f"{ident}.yaml").write_text(
            template.replace("id: resolve-support-ticket", f"id: {ident}")
        )
    bundles = []
    for jobs in ("1", "2"):
        out = tmp_path / f"bundle-{jobs}"
        result = run_aam("compile", sources, "-o", out, "--jobs", jobs)
        assert result.returncode == 0, result.stderr
        assert "compiled 70 intent(s)" in result.stdout
        bundles.append({p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()})
    assert bundles[0] == bundles[1]


def test_a_negative_job_count_is_refused() -> None:
    result = run_aam("validate", BAD / "bad_id.yaml", "--jobs", "-1")
    assert result.returncode == 2
    assert "expected a whole number >= 0, got '-1'" in result.stderr
