"""Text -> Rego building blocks: string literals, value literals, refs, globs.

Every literal is checked by evaluating it in the embedded engine: the Rego value must equal the
Python value exactly, whatever the text holds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from compiler_helpers import intent, rule, tool

from aam_policy.compiler import CompileError, compile_bundle
from aam_policy.compiler._rego import (
    glob_regex,
    glob_test,
    input_ref,
    package_name,
    rego_block,
    rego_inline,
    rego_string,
)
from aam_policy.engine import RegorusEngine, load_policy

HOSTILE = [
    "",
    'plain "quoted" text',
    "back\\slash \\u0041 \\n not an escape",
    "new\nline\r\nand\ttab",
    '"} else := true {',
    "} else := true if { true",
    "import data.secrets\npackage evil",
    "# not a comment\n# still not",
    "`raw string` and 'single'",
    "h\u00e9llo w\u00f6rld \u4f60\u597d",
    "emoji \U0001f600 \U0001f469\u200d\U0001f4bb flag \U0001f1e9\U0001f1ea",
    "bidi \u202egnp.exe\u202c and \u2066isolate\u2069",
    "separators \u2028 \u2029 nbsp\u00a0 bom\ufeff zwsp\u200b",
    "controls \x00 \x01 \x1b[31m \x7f \x85 \x9f",
    "tag chars \U000e0041\U000e007f",
    "max bmp \uffff and astral \U0010ffff",
    "{{ jinja }} {% if %} {# comment #}",
]


def _evaluate_literals(tmp_path: Path, literals: list[str]) -> list[Any]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    lines = ["package t", "", "import rego.v1", ""]
    lines += [f"v{i} := {literal}" for i, literal in enumerate(literals)]
    (tmp_path / "t.rego").write_text("\n".join(lines) + "\n", encoding="utf-8")
    engine = RegorusEngine(load_policy([tmp_path]))
    return [engine.evaluate(f"data.t.v{i}") for i in range(len(literals))]


def test_strings_round_trip_through_rego(tmp_path: Path) -> None:
    literals = [rego_string(text) for text in HOSTILE]
    assert _evaluate_literals(tmp_path, literals) == HOSTILE


@pytest.mark.parametrize("text", HOSTILE)
def test_string_literals_are_one_line_of_visible_ascii_or_plain_unicode(text: str) -> None:
    literal = rego_string(text)
    assert "\n" not in literal and "\r" not in literal
    assert literal.startswith('"') and literal.endswith('"')
    # no raw control, format, bidi or separator character survives: a reviewer sees escapes
    assert not re.search(
        "[\x00-\x1f\x7f-\x9f\u00a0\u00ad\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]", literal
    )
    assert json.loads(literal) == text  # and it is plain JSON, as OPA reads it


def test_readable_unicode_stays_readable() -> None:
    assert rego_string("h\u00e9llo \U0001f600") == '"h\u00e9llo \U0001f600"'
    assert rego_string("\u202e") == '"\\u202e"'
    assert rego_string("\U000e0041") == '"\\udb40\\udc41"'  # astral: a surrogate pair


def test_lone_surrogates_are_rejected() -> None:
    with pytest.raises(CompileError, match="surrogate"):
        rego_string("broken \ud800 text")


def test_values_round_trip_through_rego(tmp_path: Path) -> None:
    values: list[Any] = [
        None,
        True,
        False,
        0,
        -17,
        2**63 + 1,
        3.25,
        1e-07,
        1.5e20,
        [],
        {},
        ["a", 1, None, [True, {"k": "v"}]],
        {"z": 1, "a": {"nested": ['"} else {', "\n"]}, "": "empty key", "k\u00e9y": []},
    ]
    inline = _evaluate_literals(tmp_path / "inline", [rego_inline(v) for v in values])
    assert inline == values
    block = _evaluate_literals(tmp_path / "block", [rego_block(v) for v in values])
    assert block == values


def test_non_json_values_are_rejected() -> None:
    for bad in (float("nan"), float("inf"), {1: "int key"}, object(), b"bytes"):
        with pytest.raises(CompileError):
            rego_inline(bad)


def test_block_layout_is_opa_fmt_style() -> None:
    value = {"b": [1, 2], "a": {"x": [{"k": 1}], "y": {}}, "c": []}
    assert rego_block(value, 1) == (
        "{\n"
        '\t\t"a": {\n'
        '\t\t\t"x": [\n'
        "\t\t\t\t{\n"
        '\t\t\t\t\t"k": 1,\n'
        "\t\t\t\t},\n"
        "\t\t\t],\n"
        '\t\t\t"y": {},\n'
        "\t\t},\n"
        '\t\t"b": [1, 2],\n'
        '\t\t"c": [],\n'
        "\t}"
    )


def test_refs_from_validated_paths() -> None:
    assert input_ref("action.parameters.amount") == "input.action.parameters.amount"
    assert input_ref("context.break_glass") == "input.context.break_glass"
    # keywords are emitted as a quoted key of an already-validated identifier
    assert input_ref("action.parameters.if") == 'input.action.parameters["if"]'
    assert input_ref("data.else.import") == 'input.data["else"]["import"]'
    assert input_ref("delegation") == "input.delegation"  # a bare root is a path too


@pytest.mark.parametrize(
    "path",
    [
        "input.action",  # not a permitted root
        "request.amount",
        "action..amount",
        "action.parameters.amount]",
        'action.parameters["x"]',
        "action.parameters.x y",
        "action.parameters.1st",
        "action.parameters.amount\n} else := true {",
        "action.paramètres",
        "",
        None,
        42,
    ],
)
def test_bad_paths_raise(path: Any) -> None:
    with pytest.raises(CompileError):
        input_ref(path)


@pytest.mark.parametrize(
    "ident", ["Upper", "9lives", "has_underscore", "a" * 64, "x\n", "x y", "", "é", None]
)
def test_bad_intent_ids_raise(ident: Any) -> None:
    with pytest.raises(CompileError):
        package_name(ident)


def test_package_names() -> None:
    assert package_name("resolve-support-ticket") == "resolve_support_ticket"
    assert package_name("a") == "a"


GLOBS = [
    (
        "*@example.com",
        ["bob@example.com", "@example.com", "a\nb@example.com"],
        ["bob@example.org", "bob@exampleXcom", "bob@example.com.evil"],
    ),
    ("registry.example.com/*", ["registry.example.com/a:1"], ["registryXexample.com/a", "x"]),
    ("s3://bucket/*/data-?.csv", ["s3://bucket/x/y/data-?.csv"], ["s3://bucket/x/data-1.csv"]),
    ("a+b(c)|d[e]{2}^$\\", ["a+b(c)|d[e]{2}^$\\"], ["aab(c)|d[e]{2}^$\\", "ab"]),
    ("<tag> #1 & -~%/'\"`", ["<tag> #1 & -~%/'\"`"], ["<tag> #1 & -~%/'\"` "]),
    ("**", ["", "anything"], []),
    ("exact", ["exact"], ["exactly", "inexact", "EXACT"]),
    ("caf\u00e9 *\U0001f600", ["caf\u00e9 x\U0001f600"], ["cafe x\U0001f600"]),
]


@pytest.mark.parametrize(("glob", "hits", "misses"), GLOBS)
def test_globs_become_anchored_regexes(
    tmp_path: Path, glob: str, hits: list[str], misses: list[str]
) -> None:
    pattern = glob_regex(glob)
    for text in hits:
        assert re.match(pattern, text), (glob, text)
    for text in misses:
        assert not re.match(pattern, text), (glob, text)
    # the same pattern in regorus (Rust regex) agrees with Python's re
    literals = [f"regex.match({rego_string(pattern)}, {rego_string(t)})" for t in hits + misses]
    results = _evaluate_literals(tmp_path, literals)
    assert results == [True] * len(hits) + [False] * len(misses)


@pytest.mark.parametrize(
    ("glob", "test"),
    [
        ("exact", ("equals", "exact")),
        ("registry.example.com/*", ("prefix", "registry.example.com/")),
        ("a**", ("prefix", "a")),
        ("*@example.com", ("suffix", "@example.com")),
        ("**/secrets/*", ("infix", "/secrets/")),
        ("*", ("any", "")),
        ("a*b", ("regex", "(?s)^a.*b$")),
        ("*a*b*", ("regex", "(?s)^.*a.*b.*$")),
        ("s3://b/*/x.csv", ("regex", "(?s)^s3://b/.*/x\\.csv$")),
    ],
)
def test_common_glob_shapes_use_string_builtins(glob: str, test: tuple[str, str]) -> None:
    assert glob_test(glob) == test


def test_compiled_module_tests_a_prefix_glob_without_regex(tmp_path: Path) -> None:
    when = {"field": "action.parameters.image", "op": "matches", "value": "registry.example.com/*"}
    compile_bundle([intent(tools=[tool("t.x", escalate=[rule(when)])])], tmp_path / "bundle")
    module = (tmp_path / "bundle" / "aam" / "intents" / "demo_intent.rego").read_text()
    assert 'startswith(input.action.parameters.image, "registry.example.com/")' in module
    assert "regex.match" not in module


def test_glob_escapes_only_portable_metacharacters() -> None:
    # `<`, `>` are word boundaries in Rust regex when escaped: they must stay bare
    assert glob_regex("<a>") == "(?s)^<a>$"
    assert glob_regex("a.b*c") == "(?s)^a\\.b.*c$"
