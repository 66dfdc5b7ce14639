"""Running Rego tests (`test_*` rules) and reporting them as text, JSON or JUnit XML.

Semantics follow `opa test`: every rule named `test_*` (not a function) is a test case,
evaluated without input; it passes iff its value is `true`. Undefined or any other value is a
failure, a runtime error is an error (counted as failed), and `todo_test_*` rules are skipped.
"""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aam_policy.engine import _ast
from aam_policy.engine._engine import default_engine, rego_ref
from aam_policy.engine._policy import (
    PolicyLoadError,
    PolicySet,
    load_policy,
    split_regorus_error,
)

Status = Literal["pass", "fail", "error", "skip"]
FORMATS = ("text", "json", "junit")


@dataclass(frozen=True)
class TestResult:
    """One test case. `package` has no `data.` prefix ("aam.core_test")."""

    __test__ = False  # not a pytest test class

    package: str
    name: str
    file: str
    row: int
    status: Status
    duration_ns: int = 0
    message: str = ""
    output: str = ""

    @property
    def full_name(self) -> str:
        return f"{self.package}.{self.name}"

    @property
    def location(self) -> str:
        return f"{self.file}:{self.row}"


@dataclass(frozen=True)
class TestReport:
    """All test results of one run, ordered by file and row."""

    __test__ = False

    results: tuple[TestResult, ...]
    engine: str
    duration_ns: int = 0

    def _count(self, *statuses: str) -> int:
        return sum(1 for r in self.results if r.status in statuses)

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def passed(self) -> int:
        return self._count("pass")

    @property
    def failed(self) -> int:
        """Failures including errors: what makes `aam test` exit non-zero."""
        return self._count("fail", "error")

    @property
    def errors(self) -> int:
        return self._count("error")

    @property
    def skipped(self) -> int:
        return self._count("skip")

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def summary(self) -> str:
        """`N passed, M failed` (plus `, K skipped` when any were skipped)."""
        text = f"{self.passed} passed, {self.failed} failed"
        return text + (f", {self.skipped} skipped" if self.skipped else "")


def compile_run_filter(run: str | None) -> re.Pattern[str] | None:
    if run is None:
        return None
    try:
        return re.compile(run)
    except re.error as exc:
        # reported like a load error so the CLI answers with exit code 2, not a traceback
        raise PolicyLoadError(f"--run: invalid regular expression {run!r}: {exc}") from None


def run_tests(
    paths: Sequence[str | Path] | str | Path,
    kind: str = "auto",
    run: str | None = None,
) -> TestReport:
    """Load `paths` (see `load_policy`) and run their tests on the chosen engine."""
    compile_run_filter(run)  # fail on a bad regex before loading anything
    return default_engine(load_policy(paths), kind).run_tests(run=run)


# --- embedded engine ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Case:
    package: tuple[str, ...]
    name: str
    file: str
    row: int
    skip: bool
    rows: tuple[int, ...]  # every definition's line (more than one is reported as an error)


def discover_tests(asts: list[dict[str, Any]]) -> list[_Case]:
    """Test cases in regorus' AST JSON (one entry per module)."""
    found: dict[tuple[tuple[str, ...], str], list[tuple[str, int]]] = defaultdict(list)
    for entry in asts:
        module = entry.get("ast") or {}
        file = (entry.get("source") or {}).get("file", "")
        package = tuple(_ast.package_parts(module))
        for head in _ast.rule_heads(module):
            if head.kind != "Compr" or not head.simple:
                continue  # functions, sets, defaults and ref heads are never test cases
            if head.name.startswith(("test_", "todo_test_")):
                found[(package, head.name)].append((file, head.line))
    cases = []
    for (package, name), places in found.items():
        file, row = places[0]
        cases.append(
            _Case(
                package=package,
                name=name,
                file=file,
                row=row,
                skip=name.startswith("todo_test_"),
                rows=tuple(r for _, r in places),
            )
        )
    cases.sort(key=lambda c: (c.file, c.row, c.name))
    return cases


def run_regorus_tests(policy: PolicySet, run: str | None = None) -> TestReport:
    from aam_policy.engine._regorus import UNDEFINED_JSON, build_engine

    pattern = compile_run_filter(run)
    base = build_engine(policy, tests=True)
    cases = discover_tests(json.loads(base.get_ast_as_json()))
    results: list[TestResult] = []
    started = time.perf_counter_ns()
    for case in cases:
        package = ".".join(case.package)
        query = rego_ref((*case.package, case.name))
        if pattern is not None and not pattern.search(f"data.{package}.{case.name}"):
            continue
        common = {"package": package, "name": case.name, "file": case.file, "row": case.row}
        if case.skip:
            results.append(TestResult(status="skip", message="todo", **common))
            continue
        if len(case.rows) > 1:
            # opa runs each body separately; evaluated as one rule a passing body would hide a
            # failing one, so a reused name is an error rather than a silent pass.
            rows = ", ".join(str(r) for r in case.rows)
            results.append(
                TestResult(
                    status="error",
                    message=f"test name defined {len(case.rows)} times (lines {rows}); "
                    "give each test a unique name",
                    **common,
                )
            )
            continue
        engine = base.clone()  # a pristine engine: no input, no prints of earlier tests
        engine.set_gather_prints(True)
        t0 = time.perf_counter_ns()
        status: Status
        try:
            # one evaluation only (a second would repeat the test's print output)
            raw = engine.eval_rule_as_json(query)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # RuntimeError from Rego, or a pyo3 panic
            path, line, column, message = split_regorus_error(str(exc))
            where = f"{path}:{line}:{column}: " if path else ""
            status, message = "error", f"{where}{message}"
        else:
            if raw == "true":
                status, message = "pass", ""
            elif raw == UNDEFINED_JSON:
                status, message = "fail", "undefined"
            else:
                status, message = "fail", f"value is {' '.join(raw.split())}, not true"
        duration = time.perf_counter_ns() - t0
        output = "".join(f"{printed}\n" for printed in engine.take_prints())
        results.append(
            TestResult(
                status=status, duration_ns=duration, message=message, output=output, **common
            )
        )
    return TestReport(
        tuple(results), engine="regorus", duration_ns=time.perf_counter_ns() - started
    )


# --- formats --------------------------------------------------------------------------------


def format_report(report: TestReport, fmt: str = "text") -> str:
    """`text`: one `FAIL path:row: package.test` line per failing test, then the summary;
    `json`: summary and every result; `junit`: JUnit XML (one testsuite per package)."""
    if fmt == "text":
        return _text(report)
    if fmt == "json":
        return _json(report)
    if fmt == "junit":
        return _junit(report)
    raise ValueError(f"unknown report format {fmt!r} (expected one of {', '.join(FORMATS)})")


def _text(report: TestReport) -> str:
    lines = []
    for r in report.results:
        if r.status not in ("fail", "error"):
            continue
        detail = f": {r.message}" if r.status == "error" else ""
        lines.append(f"FAIL {r.location}: {r.full_name}{detail}")
        lines.extend(f"    {line}" for line in r.output.splitlines())
    lines.append(report.summary())
    return "\n".join(lines)


def _json(report: TestReport) -> str:
    document = {
        "engine": report.engine,
        "summary": {
            "total": report.total,
            "passed": report.passed,
            "failed": report.failed,
            "errors": report.errors,
            "skipped": report.skipped,
            "duration_ns": report.duration_ns,
        },
        "tests": [
            {
                "package": r.package,
                "name": r.name,
                "file": r.file,
                "row": r.row,
                "status": r.status,
                "duration_ns": r.duration_ns,
                "message": r.message,
                "output": r.output,
            }
            for r in report.results
        ],
    }
    return json.dumps(document, indent=2)


_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml(text: str) -> str:
    """XML 1.0 cannot carry most control characters, even escaped; print output might."""
    return _XML_INVALID.sub("\ufffd", text)


def _seconds(ns: int) -> str:
    return f"{ns / 1e9:.6f}"


def _junit(report: TestReport) -> str:
    suites: dict[str, list[TestResult]] = defaultdict(list)
    for r in report.results:
        suites[r.package].append(r)
    root = ET.Element(
        "testsuites",
        name="aam test",
        tests=str(report.total),
        failures=str(report.failed - report.errors),
        errors=str(report.errors),
        skipped=str(report.skipped),
        time=_seconds(report.duration_ns),
    )
    for package in sorted(suites):
        cases = suites[package]
        suite = ET.SubElement(
            root,
            "testsuite",
            name=package,
            tests=str(len(cases)),
            failures=str(sum(r.status == "fail" for r in cases)),
            errors=str(sum(r.status == "error" for r in cases)),
            skipped=str(sum(r.status == "skip" for r in cases)),
            time=_seconds(sum(r.duration_ns for r in cases)),
        )
        for r in cases:
            case = ET.SubElement(
                suite,
                "testcase",
                name=r.name,
                classname=package,
                file=r.file,
                line=str(r.row),
                time=_seconds(r.duration_ns),
            )
            if r.status == "fail":
                ET.SubElement(case, "failure", message=_xml(r.message), type="fail").text = _xml(
                    f"{r.location}: {r.full_name}: {r.message}"
                )
            elif r.status == "error":
                ET.SubElement(case, "error", message=_xml(r.message), type="error").text = _xml(
                    f"{r.location}: {r.full_name}: {r.message}"
                )
            elif r.status == "skip":
                ET.SubElement(case, "skipped", message=r.message or "todo")
            if r.output:
                ET.SubElement(case, "system-out").text = _xml(r.output)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)
