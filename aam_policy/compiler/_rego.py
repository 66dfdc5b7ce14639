"""Text -> Rego: literal encoding, validated refs, glob -> regex, conditions -> helper rules.

Every value that came from a template reaches Rego through `rego_string` / `rego_inline` /
`rego_block` (JSON encoding); ids and field paths are validated against their patterns and
emitted as code, never escaped. Nothing here concatenates untrusted text into Rego any other
way.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from aam_policy.compiler._errors import CompileError
from aam_policy.compiler._validate import INTENT_ID, check_field_path, is_number

# Rego keywords and literals: a path segment spelled like one is emitted as `["if"]`, since
# OPA and regorus disagree across versions on keywords after a dot.
_KEYWORDS = frozenset(
    [
        "as",
        "contains",
        "default",
        "else",
        "every",
        "false",
        "if",
        "import",
        "in",
        "not",
        "null",
        "package",
        "some",
        "true",
        "with",
    ]
)

# Characters JSON leaves raw that must not appear raw in source a human reviews: C1 controls,
# DEL, invisible/format characters, bidi overrides (Trojan Source), line/paragraph separators,
# exotic spaces and tag characters. Written as escapes they keep their value and become visible.
# An explicit list (not unicodedata categories) so the output does not depend on the Python
# version's Unicode database.
_ESCAPE = re.compile(
    "[\x7f-\x9f\u00a0\u00ad\u061c\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f"
    "\u3000\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]"
)
_SURROGATE = re.compile("[\ud800-\udfff]")

# Regex metacharacters escaped when a glob becomes a regex. Only these: Go RE2 accepts a
# backslash before any ASCII punctuation, but Rust's regex gives `\<`, `\>` (word boundaries)
# and others a meaning, so escaping more would change the pattern on one engine.
_REGEX_META = frozenset("\\.+*?()|[]{}^$")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code > 0xFFFF:  # JSON escapes astral characters as a UTF-16 surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


# One encoder each, built once: json.dumps with options builds a new encoder per call, which
# dominated compiling a large bundle (hundreds of thousands of literals).
_JSON_TEXT = json.JSONEncoder(ensure_ascii=False).encode
_JSON_NUMBER = json.JSONEncoder(allow_nan=False).encode


@lru_cache(maxsize=4096)  # keys and tool names repeat across a bundle's literals
def _string_literal(text: str) -> str:
    if _SURROGATE.search(text):
        raise CompileError(f"string {text!r} holds a lone UTF-16 surrogate (not valid Unicode)")
    return _ESCAPE.sub(_escape_char, _JSON_TEXT(text))


def rego_string(text: Any) -> str:
    """A Rego string literal with exactly the value `text` (JSON string encoding)."""
    if not isinstance(text, str):
        raise CompileError(f"expected a string, got {type(text).__name__}: {text!r}")
    return _string_literal(text)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return rego_string(value)
    if is_number(value):
        return _JSON_NUMBER(value)  # finite: is_number said so
    raise CompileError(f"not a JSON value: {value!r}")


def rego_inline(value: Any) -> str:
    """A JSON value as a one-line Rego literal (`{"a": [1, 2]}`), object keys sorted."""
    if isinstance(value, dict):
        items = (f"{rego_string(k)}: {rego_inline(value[k])}" for k in _sorted_keys(value))
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(rego_inline(item) for item in value) + "]"
    return _scalar(value)


_COMPACT_JSON = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def compact_json(value: Any) -> str:
    """A JSON value as canonical one-line JSON text (sorted keys, no spaces), for a Rego string
    literal that `json.unmarshal` reads back."""
    try:
        return _COMPACT_JSON(value)
    except (TypeError, ValueError) as exc:
        raise CompileError(f"not a JSON value: {exc}") from None


def rego_block(value: Any, depth: int = 0) -> str:
    """A JSON value as a Rego literal laid out like `opa fmt`: one member per line, tabs,
    trailing commas. `depth` is the indentation of the line the literal starts on."""
    inner = "\t" * (depth + 1)
    if isinstance(value, dict) and value:
        lines = [
            f"{inner}{rego_string(k)}: {rego_block(value[k], depth + 1)},\n"
            for k in _sorted_keys(value)
        ]
        return "{\n" + "".join(lines) + "\t" * depth + "}"
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        lines = [f"{inner}{rego_block(item, depth + 1)},\n" for item in value]
        return "[\n" + "".join(lines) + "\t" * depth + "]"
    return rego_inline(value)


def _sorted_keys(value: dict[Any, Any]) -> list[str]:
    if not all(isinstance(k, str) for k in value):
        raise CompileError(f"object keys must be strings: {sorted(map(repr, value))}")
    return sorted(value)


def input_ref(path: Any) -> str:
    """`input.action.parameters.amount` for a validated field path."""
    segments = check_field_path(path, "condition")
    out = "input"
    for segment in segments:
        out += f'["{segment}"]' if segment in _KEYWORDS else f".{segment}"
    return out


def package_name(intent_id: Any) -> str:
    """The Rego package key of an intent id (`-` -> `_`; injective since ids have no `_`)."""
    if not isinstance(intent_id, str) or not INTENT_ID.fullmatch(intent_id):
        raise CompileError(f"intent id {intent_id!r} does not match {INTENT_ID.pattern}")
    return intent_id.replace("-", "_")


def glob_regex(glob: str) -> str:
    """An anchored regex, valid for Go RE2 and Rust regex, matching what the glob matches:
    `*` is any run of characters (newlines included), everything else is literal."""
    out = ["(?s)^"]
    for char in glob:
        if char == "*":
            if out[-1] != ".*":
                out.append(".*")
        elif char in _REGEX_META:
            out.append("\\" + char)
        else:
            out.append(char)
    out.append("$")
    return "".join(out)


def glob_test(glob: str) -> tuple[str, str]:
    """How a glob is tested: ("equals" | "prefix" | "suffix" | "infix", text), ("any", "") or
    ("regex", anchored pattern). The common shapes (`a`, `a*`, `*a`, `*a*`) get plain string
    builtins, which the embedded engine runs in a fifth of the instructions of a `regex.match`
    (counted with callgrind)."""
    parts = glob.split("*")
    if len(parts) == 1:
        return "equals", glob
    head, middle, tail = parts[0], [part for part in parts[1:-1] if part], parts[-1]
    if not middle and not (head and tail):
        if head:
            return "prefix", head
        return ("suffix", tail) if tail else ("any", "")
    if len(middle) == 1 and not head and not tail:
        return "infix", middle[0]
    return "regex", glob_regex(glob)


# --- conditions -> helper rules ---------------------------------------------------------------


@dataclass
class Helper:
    """One helper rule: `name if { ... }` once per body (several bodies = `any`)."""

    name: str
    where: str
    bodies: list[list[dict[str, Any]]] = field(default_factory=list)


def leaf_line(cond: dict[str, Any]) -> dict[str, Any]:
    """A field condition as the template renders it (`intent.rego.j2`, macro `leaf`)."""
    line = {"kind": "leaf", "op": cond["op"], "ref": input_ref(cond["field"])}
    line["value"] = cond["value"]
    if cond["op"] == "matches":
        line["test"], line["text"] = glob_test(cond["value"])
    return line


class ConditionCompiler:
    """Compiles one escalate rule's `when` into the lines of that rule's body, plus helper rules
    named `<prefix>_<n>` (numbered as created, innermost first) for what one body cannot hold.

    Semantics: a field condition on a missing field is false, so `not` of it is true, except
    `exists: false`, which is `not (field exists)`. `all` is one body, `any` one body per
    branch, `not` negates a helper rule. Field conditions inside `all` / `any` are inlined, and
    so is a `when` that is one body: the embedded engine pays a scan of the modules for every
    rule it evaluates through a reference.
    """

    def __init__(self, prefix: str, where: str) -> None:
        self.prefix = prefix
        self.where = where
        self.helpers: list[Helper] = []

    def compile(self, cond: dict[str, Any]) -> list[dict[str, Any]]:
        bodies = self._bodies(cond, self.where)
        if len(bodies) == 1:
            return bodies[0]
        return [{"kind": "ref", "name": self._add(self.where, bodies)}]

    def _helper(self, cond: dict[str, Any], where: str) -> str:
        return self._add(where, self._bodies(cond, where))

    def _add(self, where: str, bodies: list[list[dict[str, Any]]]) -> str:
        helper = Helper(f"{self.prefix}_{len(self.helpers)}", where, bodies)
        self.helpers.append(helper)
        return helper.name

    def _bodies(self, cond: dict[str, Any], where: str) -> list[list[dict[str, Any]]]:
        if "all" in cond:
            return [
                [
                    line
                    for i, child in enumerate(cond["all"])
                    for line in self._inline(child, f"{where}.all[{i}]")
                ]
            ]
        if "any" in cond:
            return [self._inline(child, f"{where}.any[{i}]") for i, child in enumerate(cond["any"])]
        if "not" in cond:
            return [[{"kind": "not", "name": self._helper(cond["not"], f"{where}.not")}]]
        if cond["op"] == "exists" and cond["value"] is False:
            present = self._helper({**cond, "value": True}, f"{where} (field present)")
            return [[{"kind": "not", "name": present}]]
        return [[leaf_line(cond)]]

    def _inline(self, cond: dict[str, Any], where: str) -> list[dict[str, Any]]:
        if "op" in cond and not (cond["op"] == "exists" and cond["value"] is False):
            return [leaf_line(cond)]
        return [{"kind": "ref", "name": self._helper(cond, where)}]
