"""Loading templates: YAML, then the JSON Schema, then the models; every problem collected.

Each problem names `file:line:column` and the field path, in words a policy author reads
without knowing JSON Schema or pydantic.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import pydantic
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaError
from jsonschema.exceptions import best_match

from aam_policy._workers import map_in_workers
from aam_policy.intents._models import CONDITION_TAGS, Intent
from aam_policy.intents._patterns import PATH_ROOTS, PATH_SEGMENT, VALUE_WANTED
from aam_policy.intents._schema import intent_schema
from aam_policy.intents._yaml import Document, Location, field_path, parse_documents

_SUFFIXES = (".yaml", ".yml")
_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}
_PATTERN_HINTS = {
    "intent id": "lowercase letters, digits and dashes",
    "tool name": "dotted lowercase names like crm.read_ticket",
    "approver": "role:<name> or user:<name>",
}
_SHAPE = "{field, op, value}, all:, any: or not:"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a template, where it is written."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        if not self.line:  # the file itself: missing, unreadable, empty
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}:{self.column}: {self.field}: {self.message}"


class IntentValidationError(ValueError):
    """Templates that do not validate; `problems` lists every one found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


@dataclass(frozen=True)
class LoadedIntent:
    """A validated intent and the file and line (of its document) it came from."""

    intent: Intent
    path: Path
    line: int


# --- schema errors in words -------------------------------------------------------------------


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(intent_schema())


# the self-referencing definitions (conditions nest) stay references
_RECURSIVE_DEFS = frozenset(
    {"condition", "fieldCondition", "allCondition", "anyCondition", "notCondition"}
)


@cache
def _gate() -> Draft202012Validator:
    """The same schema with every non-recursive `$ref` written out in place.

    It accepts exactly what `_validator()` accepts (a `$ref` to a local definition means that
    definition) and decides about a third faster, because jsonschema resolves each `$ref` it
    meets through its registry. It only says valid or not: the messages come from
    `_validator()`, whose error paths keep the references the explanations rely on.
    """
    schema = intent_schema()
    definitions = schema["$defs"]

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref is not None and len(node) == 1:
                name = ref.rsplit("/", 1)[1]
                if name not in _RECURSIVE_DEFS:
                    return inline(copy.deepcopy(definitions[name]))
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return Draft202012Validator(inline(schema))


def _describe(value: Any) -> str:
    if isinstance(value, dict | list):
        return _TYPE_WORDS["object" if isinstance(value, dict) else "array"]
    return "null" if value is None else repr(value)


def _words(schema_type: str | list[str]) -> str:
    types = [schema_type] if isinstance(schema_type, str) else schema_type
    return " or ".join(_TYPE_WORDS[t] for t in types)


def _field_path_message(value: str) -> str:
    segments = value.split(".")
    if segments[0] not in PATH_ROOTS:
        return f"field path {value!r} must start with one of {', '.join(PATH_ROOTS)}"
    bad = next((s for s in segments if not PATH_SEGMENT.fullmatch(s)), value)
    return f"field path {value!r} has an invalid segment {bad!r} (dotted identifiers only)"


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return _validator().schema["$defs"][ref.rsplit("/", 1)[1]] if ref else schema


def _fits(schema: dict[str, Any], instance: Any) -> bool:
    """Whether `instance` is of the kind of value `schema` describes (not that it is valid)."""
    schema = _resolve(schema)
    if "anyOf" in schema:
        return any(_fits(branch, instance) for branch in schema["anyOf"])
    if "enum" in schema or "const" in schema:
        return any(type(v) is type(instance) for v in schema.get("enum", [schema.get("const")]))
    types = schema.get("type")
    if types is None:
        return True
    return any(
        _validator().is_type(instance, t) for t in ([types] if isinstance(types, str) else types)
    )


def _branch(error: SchemaError) -> int | None:
    """Which alternative of an anyOf the author meant to write."""
    instance, branches = error.instance, error.validator_value
    if error.schema.get("title") == "condition":
        if not isinstance(instance, dict):
            return None
        shapes = [key for key in ("all", "any", "not", "field", "op") if key in instance]
        if not shapes:
            return None
        wanted = shapes[0] if shapes[0] in ("all", "any", "not") else "field"
        return next(i for i, b in enumerate(branches) if b["$ref"].endswith(f"/{wanted}Condition"))
    return next((i for i, b in enumerate(branches) if _fits(b, instance)), None)


def _at(root: Any, location: Location) -> Any:
    for part in location:
        root = root[part]
    return root


class _Finding(NamedTuple):
    location: Location
    message: str
    key: str | None = None  # the problem is this key of `location`, not a value


def _explain(error: SchemaError, root: Any) -> Iterator[_Finding]:
    """What one schema error means, in the author's words."""
    location: Location = tuple(error.absolute_path)
    instance, schema, kind = error.instance, error.schema, error.validator
    title = schema.get("title")
    if kind == "anyOf":
        index = _branch(error)
        if index is None:
            if title == "condition":
                yield _Finding(location, f"must be a condition: {_SHAPE}")
            else:
                yield _Finding(location, (best_match(error.context) or error).message)
            return
        for sub in error.context or []:
            if sub.relative_schema_path[0] == index:
                yield from _explain(sub, root)
        return
    if "then" in error.absolute_schema_path and "value" in location:
        # a condition's value of the wrong kind for its op
        at = len(location) - location[::-1].index("value")
        leaf = _at(root, location[: at - 1])
        op, value = leaf["op"], leaf["value"]
        yield _Finding(location[:at], f"op {op!r} needs {VALUE_WANTED[op]}, got {value!r}")
        return
    if title == "duration":
        yield _Finding(location, f"{instance!r} is not a duration like 90s, 10m or 1h")
    elif kind == "additionalProperties":
        for key in instance:
            if key not in schema.get("properties", {}):
                yield _Finding(location, f"unknown field {key!r}", key)
    elif kind == "required":
        for key in error.validator_value:
            if key not in instance:
                yield _Finding((*location, key), "required field is missing")
    elif kind == "enum":
        choices = ", ".join(str(v) for v in error.validator_value)
        yield _Finding(location, f"{_describe(instance)} is not one of {choices}")
    elif kind == "const":
        yield _Finding(location, f"must be {error.validator_value!r}, got {_describe(instance)}")
    elif kind == "type":
        wanted = _words(error.validator_value)
        yield _Finding(location, f"must be {wanted}, got {_describe(instance)}")
    elif kind == "pattern" and title == "field path":
        yield _Finding(location, _field_path_message(instance))
    elif kind == "pattern":
        hint = _PATTERN_HINTS.get(title or "")
        message = f"{instance!r} must match {error.validator_value}"
        yield _Finding(location, f"{message} ({hint})" if hint else message)
    elif kind in ("minItems", "minLength") and error.validator_value == 1:
        yield _Finding(location, "must not be empty")
    elif kind == "minimum":
        yield _Finding(location, f"must be at least {error.validator_value}, got {instance!r}")
    elif kind == "minProperties":
        names = " or ".join(schema.get("properties", {}))
        yield _Finding(location, f"needs {names}")
    else:
        yield _Finding(location, error.message)


# --- documents to intents ---------------------------------------------------------------------


def _model_location(loc: tuple[str | int, ...]) -> Location:
    """pydantic's `loc` without the union tags it inserts (they are not in the document)."""
    return tuple(part for part in loc if part not in CONDITION_TAGS)


class _File:
    """The problems of one file, in its own coordinates."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.problems: list[Problem] = []

    def add(
        self, document: Document, location: Location, message: str, key: str | None = None
    ) -> None:
        """A problem with the field at `location`, or with its `key` (pointing at the key)."""
        if key is None:
            line, column = document.mark(location)
        else:
            line, column = document.mark((*location, key), key=True)
        self.problems.append(Problem(self.name, line, column, field_path(location), message))

    def load(self, text: str) -> list[tuple[Intent, Document]]:
        """The valid intents of the file's text; problems are kept in `self.problems`."""
        found: list[tuple[Intent, Document]] = []
        documents = 0
        for document, problems in parse_documents(text):
            for problem in problems:
                field = "(yaml)" if problem.location is None else field_path(problem.location)
                self.problems.append(Problem(self.name, *problem.mark, field, problem.message))
            if document is None or document.value is None:
                continue  # a syntax error, or an empty document (after a trailing `---`)
            documents += 1
            # a value the YAML step refused is missing: the schema would only echo that
            intent = None if problems else self.validate(document)
            if intent is not None:
                found.append((intent, document))
        if not documents and not self.problems:
            self.problems.append(Problem(self.name, 0, 0, "", "holds no intent"))
        return found

    def validate(self, document: Document) -> Intent | None:
        """The schema first (it can say where and what), then the models' own checks."""
        before = len(self.problems)
        try:
            valid = _gate().is_valid(document.value)
            errors = [] if valid else list(_validator().iter_errors(document.value))
        except RecursionError:
            self.add(document, (), "nests too deeply")
            return None
        for error in errors:
            for finding in _explain(error, document.value):
                self.add(document, *finding)
        if len(self.problems) > before:
            return None  # the models would only repeat the schema's findings, less clearly
        try:
            return Intent.model_validate(document.value)
        except pydantic.ValidationError as exc:
            for detail in exc.errors(include_url=False):
                location = _model_location(detail["loc"])
                self.add(document, location, detail["msg"].removeprefix("Value error, "))
        return None


class _FileResult(NamedTuple):
    """What one file holds: its valid intents (with where each id is written) and problems."""

    name: str
    intents: list[tuple[Intent, int, int, int]]  # intent, document line, id line, id column
    problems: list[Problem]


def _check_text(text: str, name: str) -> _FileResult:
    file = _File(name)
    intents = []
    for intent, document in file.load(text):
        line, column = document.mark(("metadata", "id"))
        intents.append((intent, document.start[0], line, column))
    return _FileResult(name, intents, file.problems)


def _check_file(path: Path) -> _FileResult:
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _FileResult(name, [], [Problem(name, 0, 0, "", "no such file or directory")])
    except (OSError, UnicodeDecodeError) as exc:
        return _FileResult(name, [], [Problem(name, 0, 0, "", f"cannot be read: {exc}")])
    return _check_text(text, name)


class _Loader:
    """Takes the files' results in order; intent ids must be unique across all of them."""

    def __init__(self) -> None:
        self.loaded: list[LoadedIntent] = []
        self.problems: list[Problem] = []
        self.first: dict[str, str] = {}  # intent id -> where it was defined first

    def add(self, result: _FileResult) -> None:
        problems = list(result.problems)
        for intent, start, line, column in result.intents:
            ident = intent.metadata.id
            if ident in self.first:
                message = f"duplicate intent id {ident!r} (first in {self.first[ident]})"
                problems.append(Problem(result.name, line, column, "metadata.id", message))
                continue
            self.first[ident] = f"{result.name}:{line}:{column}"
            self.loaded.append(LoadedIntent(intent, Path(result.name), start))
        # one error may explain several fields, and two errors the same one
        self.problems.extend(dict.fromkeys(sorted(problems, key=lambda p: (p.line, p.column))))

    def result(self) -> list[LoadedIntent]:
        if self.problems:
            raise IntentValidationError(self.problems)
        return self.loaded


def load_intents(paths: Sequence[str | Path], *, jobs: int = 1) -> list[LoadedIntent]:
    """Every intent in `paths` (files, or directories searched recursively for `*.yaml` and
    `*.yml`, in sorted order), validated.

    `jobs` > 1 checks the files in that many worker processes (the CLI passes the usable
    CPUs); the result, problems included, is the same in the same order.

    Raises IntentValidationError listing every problem in every file.
    """
    loader = _Loader()
    seen: set[Path] = set()
    # in the order given: a directory without templates is reported where it was named
    batches: list[Problem | list[Path]] = []
    for given in map(Path, paths):
        files = [given]
        if given.is_dir():
            files = sorted(p for p in given.rglob("*") if p.suffix in _SUFFIXES and p.is_file())
            if not files:
                batches.append(Problem(str(given), 0, 0, "", "holds no *.yaml file"))
        fresh = []
        for path in files:
            if path.resolve() not in seen:  # a file named twice is loaded once
                seen.add(path.resolve())
                fresh.append(path)
        batches.append(fresh)
    all_files = [path for batch in batches if isinstance(batch, list) for path in batch]
    results = map_in_workers(_check_file, all_files, jobs)
    for batch in batches:
        if isinstance(batch, Problem):
            loader.problems.append(batch)
        else:
            for _ in batch:
                loader.add(next(results))
    return loader.result()


def load_intent_text(text: str, filename: str = "<string>") -> list[LoadedIntent]:
    """The intents of one YAML text (one or more documents), validated as if read from
    `filename`."""
    loader = _Loader()
    loader.add(_check_text(text, filename))
    return loader.result()
