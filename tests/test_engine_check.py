"""check_paths (`aam check`) and capabilities.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine_helpers import BUNDLE, REPO, SUITE, tar_with, write_tree

from aam_policy.engine import (
    CheckProblem,
    PolicyLoadError,
    RegorusEngine,
    allowed_builtins,
    capabilities_file,
    check_paths,
    load_policy,
)

HEADER = "package t\n\nimport rego.v1\n\n"

# One call per allowed builtin: proves the embedded engine implements each of them.
SAMPLES = {
    "abs": "abs(-1) == 1",
    "and": "{1, 2} & {2} == {2}",
    "array.concat": "array.concat([1], [2]) == [1, 2]",
    "array.reverse": "array.reverse([1, 2]) == [2, 1]",
    "array.slice": "array.slice([1, 2, 3], 0, 1) == [1]",
    "assign": "x := 1",
    "ceil": "ceil(1.2) == 2",
    "concat": 'concat(",", ["a", "b"]) == "a,b"',
    "contains": 'contains("abc", "b")',
    "count": "count([1, 2]) == 2",
    "div": "4 / 2 == 2",
    "endswith": 'endswith("abc", "c")',
    "eq": "x = 1",
    "equal": "1 == 1",
    "floor": "floor(1.5) == 1",
    "format_int": 'format_int(255, 16) == "ff"',
    "glob.match": 'glob.match("a*", [], "abc")',
    "gt": "2 > 1",
    "gte": "2 >= 2",
    "indexof": 'indexof("abc", "c") == 2',
    "internal.member_2": "1 in [1]",
    "internal.member_3": "0, 1 in [1]",
    "internal.print": 'print("x")',
    "intersection": "intersection({{1, 2}, {2}}) == {2}",
    "is_array": "is_array([])",
    "is_boolean": "is_boolean(false)",
    "is_null": "is_null(null)",
    "is_number": "is_number(1)",
    "is_object": "is_object({})",
    "is_set": "is_set(set())",
    "is_string": 'is_string("")',
    "json.is_valid": 'json.is_valid("{}")',
    "json.marshal": 'json.marshal([1]) == "[1]"',
    "json.unmarshal": 'json.unmarshal("[1]") == [1]',
    "lower": 'lower("A") == "a"',
    "lt": "1 < 2",
    "lte": "2 <= 2",
    "max": "max([1, 2]) == 2",
    "min": "min([1, 2]) == 1",
    "minus": "3 - 1 == 2",
    "mul": "2 * 3 == 6",
    "neq": "1 != 2",
    "numbers.range": "numbers.range(1, 3) == [1, 2, 3]",
    "object.filter": 'object.filter({"a": 1, "b": 2}, ["a"]) == {"a": 1}',
    "object.get": 'object.get({"a": {"b": 1}}, ["a", "b"], 0) == 1',
    "object.keys": 'object.keys({"a": 1}) == {"a"}',
    "object.remove": 'object.remove({"a": 1, "b": 2}, ["a"]) == {"b": 2}',
    "object.union": 'object.union({"a": 1}, {"b": 2}) == {"a": 1, "b": 2}',
    "object.union_n": 'object.union_n([{"a": 1}, {"b": 2}]) == {"a": 1, "b": 2}',
    "or": "{1} | {2} == {1, 2}",
    "plus": "1 + 2 == 3",
    "print": 'print("x", 1)',
    "product": "product([2, 3]) == 6",
    "regex.is_valid": 'regex.is_valid("a.*")',
    "regex.match": 'regex.match("^a.c$", "abc")',
    "rem": "5 % 2 == 1",
    "replace": 'replace("abc", "b", "x") == "axc"',
    "round": "round(1.5) == 2",
    "sort": "sort([2, 1]) == [1, 2]",
    "split": 'split("a,b", ",") == ["a", "b"]',
    "sprintf": 'sprintf("%v-%s", [1, "a"]) == "1-a"',
    "startswith": 'startswith("abc", "a")',
    "strings.count": 'strings.count("aaa", "a") == 3',
    "substring": 'substring("abc", 1, 1) == "b"',
    "sum": "sum([1, 2]) == 3",
    "time.now_ns": "time.now_ns() > 0",
    "time.parse_duration_ns": 'time.parse_duration_ns("1s") == 1000000000',
    "time.parse_rfc3339_ns": 'time.parse_rfc3339_ns("1970-01-01T00:00:01Z") == 1000000000',
    "to_number": 'to_number("1.5") == 1.5',
    "trim": 'trim("xax", "x") == "a"',
    "trim_left": 'trim_left("xxa", "x") == "a"',
    "trim_prefix": 'trim_prefix("abc", "a") == "bc"',
    "trim_right": 'trim_right("axx", "x") == "a"',
    "trim_space": 'trim_space(" a ") == "a"',
    "trim_suffix": 'trim_suffix("abc", "c") == "ab"',
    "type_name": 'type_name(1) == "number"',
    "union": "union({{1}, {2}}) == {1, 2}",
    "upper": 'upper("a") == "A"',
    "walk": "walk([1], [path, value])",
}


def test_capabilities_file_is_opa_format() -> None:
    document = json.loads(capabilities_file().read_text())
    assert set(document) == {"builtins", "features", "future_keywords"}
    assert "rego_v1" in document["features"]
    names = [b["name"] for b in document["builtins"]]
    assert names == sorted(names) and len(names) == len(set(names))
    for builtin in document["builtins"]:
        assert builtin["decl"]["type"] == "function"
    infix = {b["name"]: b.get("infix") for b in document["builtins"] if "infix" in b}
    assert infix["equal"] == "==" and infix["internal.member_2"] == "in"


def test_capabilities_exclude_what_the_embedded_engine_lacks() -> None:
    allowed = allowed_builtins()
    for name in ("crypto.sha256", "io.jwt.decode", "io.jwt.verify_rs256", "http.send"):
        assert name not in allowed
    assert "opa.runtime" not in allowed  # nondeterministic, engine specific


def test_every_allowed_builtin_has_a_sample() -> None:
    assert set(SAMPLES) == set(allowed_builtins())


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_embedded_engine_implements_allowed_builtin(tmp_path: Path, name: str) -> None:
    write_tree(tmp_path, {"t.rego": f"{HEADER}ok if {{\n\t{SAMPLES[name]}\n}}\n"})
    assert RegorusEngine(load_policy([tmp_path])).evaluate("t/ok") is True
    # and `aam check` accepts it
    assert check_paths([tmp_path], use_opa=False) == []


@pytest.mark.parametrize(
    ("call", "name"),
    [
        ('crypto.sha256("x")', "crypto.sha256"),
        ('http.send({"method": "get", "url": "http://127.0.0.1"})', "http.send"),
        ('io.jwt.decode("a.b.c")', "io.jwt.decode"),
        ("opa.runtime()", "opa.runtime"),
        ('net.cidr_contains("10.0.0.0/8", "10.1.1.1")', "net.cidr_contains"),
    ],
)
def test_check_rejects_builtins_outside_capabilities(tmp_path: Path, call: str, name: str) -> None:
    write_tree(tmp_path, {"t.rego": f"{HEADER}# comment\nv := {call}\n"})
    problems = check_paths([tmp_path], use_opa=False)
    assert len(problems) == 1
    problem = problems[0]
    assert isinstance(problem, CheckProblem)
    assert (problem.path, problem.line, problem.column) == (str(tmp_path / "t.rego"), 6, 6)
    assert problem.code == "capability_error"
    assert name in problem.message and "capabilities.json" in problem.message
    assert str(problem).startswith(f"{tmp_path / 't.rego'}:6:6: builtin {name} is not allowed")


def test_check_reports_a_syntax_error_with_location(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "good.rego": f"{HEADER}v := 1\n",
            "broken.rego": "package broken\n\nallow if {\n  input.x ==\n}\n",
        },
    )
    problems = check_paths([tmp_path], use_opa=False)
    assert [str(p) for p in problems] == [f"{tmp_path / 'broken.rego'}:5:1: expecting expression"]
    assert problems[0].code == "rego_parse_error"


def test_check_reports_every_broken_module(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "a.rego": "package a\n\nx := [\n",
            "b.rego": "package b\n\nallow { true }\n",
            "c.rego": f"{HEADER}h := crypto.md5(input.x)\n",
        },
    )
    problems = check_paths([tmp_path], use_opa=False)
    assert [(Path(p.path).name, p.line) for p in problems] == [
        ("a.rego", 4),
        ("b.rego", 3),
        ("c.rego", 5),
    ]


def test_check_resolves_user_functions(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "lib.rego": "package lib\n\nimport rego.v1\n\ndouble(x) := x * 2\n",
            "use.rego": HEADER
            + "import data.lib\nimport data.lib as l2\n\n"
            + "local(x) := x\n\n"
            + "a := lib.double(1)\n\nb := l2.double(2)\n\nc := data.lib.double(3)\n\n"
            + "d := local(4)\n\ne := lib.triple(5)\n\nf := nosuch(6)\n",
        },
    )
    problems = check_paths([tmp_path], use_opa=False)
    assert [(p.line, p.code, p.message) for p in problems] == [
        (18, "undefined_function", "undefined function data.lib.triple"),
        (
            20,
            "undefined_function",
            "unknown function nosuch: neither an allowed builtin nor defined by the loaded policy",
        ),
    ]


def test_check_accepts_the_test_bundle_and_suite() -> None:
    assert check_paths([BUNDLE, SUITE], use_opa=False) == []


@pytest.mark.skipif(
    not list((REPO / "rego" / "aam" / "core").glob("*.rego")),
    reason="the core library is not written yet",
)
def test_check_accepts_the_core_library() -> None:
    assert check_paths([REPO / "rego"], use_opa=False) == []


def test_check_tarball_and_load_errors(tmp_path: Path) -> None:
    tarball = tar_with(tmp_path / "b.tar.gz", [("t.rego", f"{HEADER}v := crypto.sha1(1)\n")])
    problems = check_paths([tarball], use_opa=False)
    assert [p.path for p in problems] == [f"{tarball}/t.rego"]
    with pytest.raises(PolicyLoadError):
        check_paths([tmp_path / "missing"], use_opa=False)
