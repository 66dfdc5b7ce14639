"""run_tests / format_report: discovery, outcomes, locations, filters and the three formats."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from engine_helpers import BUNDLE, SUITE, tar_of_dir, write_tree

from aam_policy.engine import (
    PolicyLoadError,
    RegorusEngine,
    TestReport,
    TestResult,
    format_report,
    load_policy,
    run_tests,
)

SAMPLE = str(SUITE / "sample_test.rego")
HEADER = "package t\n\nimport rego.v1\n\n"


@pytest.fixture(scope="module")
def report() -> TestReport:
    return run_tests([SUITE], kind="regorus")


def _by_name(report: TestReport) -> dict[str, TestResult]:
    return {r.name: r for r in report.results}


def test_counts(report: TestReport) -> None:
    assert report.engine == "regorus"
    assert (report.total, report.passed, report.failed, report.errors, report.skipped) == (
        6,
        1,
        4,
        1,
        1,
    )
    assert not report.ok
    assert report.summary() == "1 passed, 4 failed, 1 skipped"


def test_each_outcome_and_location(report: TestReport) -> None:
    results = _by_name(report)
    # helper rules and functions named test_* are not test cases
    assert set(results) == {
        "test_passes",
        "test_fails",
        "test_undefined_fails",
        "test_errors",
        "todo_test_later",
        "test_prints_then_fails",
    }
    assert results["test_passes"].status == "pass"
    assert results["test_fails"].status == "fail"
    assert results["test_fails"].message == "undefined"
    assert results["test_undefined_fails"].status == "fail"
    assert results["test_errors"].status == "error"
    assert "conflict" in results["test_errors"].message
    assert results["todo_test_later"].status == "skip"
    prints = results["test_prints_then_fails"]
    assert prints.status == "fail"
    assert prints.output == f"{SAMPLE}:31: hello from a test\n"  # printed once, not twice
    assert results["test_fails"].location == f"{SAMPLE}:14"
    assert results["test_passes"].row == 10
    assert all(r.package == "suite.sample_test" for r in report.results)
    assert all(r.duration_ns >= 0 for r in report.results)
    # ordered by file and row
    assert [r.row for r in report.results] == sorted(r.row for r in report.results)


def test_text_format(report: TestReport) -> None:
    text = format_report(report, "text")
    lines = text.splitlines()
    assert lines[-1] == "1 passed, 4 failed, 1 skipped"
    fail_lines = [line for line in lines if line.startswith("FAIL ")]
    assert fail_lines[0] == f"FAIL {SAMPLE}:14: suite.sample_test.test_fails"
    assert f"FAIL {SAMPLE}:18: suite.sample_test.test_undefined_fails" in fail_lines
    assert any(
        line.startswith(f"FAIL {SAMPLE}:22: suite.sample_test.test_errors: ") for line in fail_lines
    )
    assert len(fail_lines) == 4
    assert f"    {SAMPLE}:31: hello from a test" in lines  # print output under its test


def test_text_summary_without_skips(tmp_path: Path) -> None:
    write_tree(tmp_path, {"t.rego": "package t\n\nimport rego.v1\n\ntest_a if true\n"})
    report = run_tests([tmp_path], kind="regorus")
    assert format_report(report) == "1 passed, 0 failed"
    assert report.ok


def test_json_format(report: TestReport) -> None:
    document = json.loads(format_report(report, "json"))
    assert document["engine"] == "regorus"
    assert document["summary"] == {
        "total": 6,
        "passed": 1,
        "failed": 4,
        "errors": 1,
        "skipped": 1,
        "duration_ns": report.duration_ns,
    }
    statuses = {t["name"]: t["status"] for t in document["tests"]}
    assert statuses["test_errors"] == "error"
    assert statuses["todo_test_later"] == "skip"
    first = document["tests"][0]
    assert set(first) == {
        "package",
        "name",
        "file",
        "row",
        "status",
        "duration_ns",
        "message",
        "output",
    }


def test_junit_format_parses(report: TestReport) -> None:
    xml = format_report(report, "junit")
    root = ET.fromstring(xml)
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == (
        "6",
        "3",
        "1",
        "1",
    )
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == "suite.sample_test"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["test_passes"].find("failure") is None
    assert cases["test_fails"].find("failure") is not None
    assert cases["test_fails"].get("file") == SAMPLE
    assert cases["test_fails"].get("line") == "14"
    assert cases["test_errors"].find("error") is not None
    assert cases["todo_test_later"].find("skipped") is not None
    assert "hello from a test" in cases["test_prints_then_fails"].findtext("system-out", "")


def test_junit_survives_control_characters(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {"t.rego": HEADER + 'test_a if {\n\tprint("bell\\u0007")\n\tfalse\n}\n'},
    )
    xml = format_report(run_tests([tmp_path], kind="regorus"), "junit")
    assert ET.fromstring(xml).find(".//system-out") is not None


def test_unknown_format(report: TestReport) -> None:
    with pytest.raises(ValueError, match="unknown report format"):
        format_report(report, "tap")


def test_run_filter(report: TestReport) -> None:
    only = run_tests([SUITE], kind="regorus", run="test_fails$|passes")
    assert sorted(r.name for r in only.results) == ["test_fails", "test_passes"]
    # matched against data.<package>.<name>, as opa test --run
    assert run_tests([SUITE], kind="regorus", run=r"^data\.suite\.sample_test\.test_p").total == 2
    assert run_tests([SUITE], kind="regorus", run="nothing-matches").total == 0


def test_bad_run_regex_is_a_clear_error() -> None:
    with pytest.raises(PolicyLoadError, match="invalid regular expression"):
        run_tests([SUITE], kind="regorus", run="(unclosed")


def test_bundle_tests_pass_from_dir_and_tarball(tmp_path: Path) -> None:
    from_dir = run_tests([BUNDLE], kind="regorus")
    assert (from_dir.passed, from_dir.failed) == (4, 0)
    tarball = tar_of_dir(BUNDLE, tmp_path / "bundle.tar.gz")
    from_tar = run_tests([tarball], kind="regorus")
    assert (from_tar.passed, from_tar.failed) == (4, 0)
    assert from_tar.results[0].file.startswith(f"{tarball}/aam/tests/")


def test_suite_and_bundle_together(tmp_path: Path) -> None:
    # the layout of `aam test rego build/bundle`: a source tree plus a bundle holding a copy
    copy = tmp_path / "bundle"
    write_tree(copy, {})
    for path in BUNDLE.rglob("*"):
        if path.is_file():
            target = copy / path.relative_to(BUNDLE)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    report = run_tests([BUNDLE, copy, SUITE], kind="regorus")
    assert report.total == 4 + 6  # the copied tests are not run twice
    assert report.passed == 5


def test_duplicate_test_names_are_an_error(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "t.rego": "package t\n\nimport rego.v1\n\n"
            "test_same if true\n\ntest_same if false\n\ntest_other if true\n"
        },
    )
    report = run_tests([tmp_path], kind="regorus")
    results = _by_name(report)
    assert results["test_same"].status == "error"
    assert "defined 2 times (lines 5, 7)" in results["test_same"].message
    assert results["test_other"].status == "pass"


def test_tests_run_without_input(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "t.rego": "package t\n\nimport rego.v1\n\n"
            "test_no_input if not input\n\n"
            'test_with_input if input.x == 1 with input as {"x": 1}\n'
        },
    )
    assert run_tests([tmp_path], kind="regorus").passed == 2


def test_engine_run_tests_method() -> None:
    engine = RegorusEngine(load_policy([SUITE]))
    assert engine.run_tests(run="test_passes").passed == 1


def test_no_tests(tmp_path: Path) -> None:
    write_tree(tmp_path, {"p.rego": "package p\n\nv := 1\n"})
    report = run_tests([tmp_path], kind="regorus")
    assert report.total == 0
    assert format_report(report) == "0 passed, 0 failed"


def test_report_classes_are_not_collected_by_pytest() -> None:
    assert TestReport.__test__ is False
    assert TestResult.__test__ is False
