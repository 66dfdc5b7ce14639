"""YAML to plain values, remembering where every value and key came from.

pyyaml's own constructors forget positions and silently keep the last of two equal keys, so
documents are composed into nodes and converted here instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from aam_policy.intents._patterns import SURROGATE

Location = tuple[str | int, ...]
Mark = tuple[int, int]  # 1-based line and column

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"


def field_path(location: Location) -> str:
    """`spec.tools[1].operations[0]` for ("spec", "tools", 1, "operations", 0)."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


@dataclass
class Document:
    """One YAML document: its value and the marks of its nodes (values) and keys."""

    value: Any
    start: Mark
    values: dict[Location, Mark] = field(default_factory=dict)
    keys: dict[Location, Mark] = field(default_factory=dict)

    def mark(self, location: Location, *, key: bool = False) -> Mark:
        """Where `location` (or its key) is written, else its nearest written ancestor."""
        if key and location in self.keys:
            return self.keys[location]
        while location not in self.values and location:
            location = location[:-1]
        return self.values.get(location, self.start)


@dataclass
class YamlProblem:
    mark: Mark
    location: Location | None  # None: a syntax error, no field to name
    message: str


def _mark(node: Node) -> Mark:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Converter:
    def __init__(self, loader: yaml.SafeLoader, document: Document) -> None:
        self.loader = loader
        self.document = document
        self.problems: list[YamlProblem] = []
        self.seen: set[int] = set()

    def fail(self, node: Node, location: Location | None, message: str) -> None:
        self.problems.append(YamlProblem(_mark(node), location, message))

    def scalar(self, node: ScalarNode, location: Location) -> Any:
        if node.tag == _TIMESTAMP:
            return node.value  # dates stay text: requests and fields are JSON, not datetimes
        try:
            value = self.loader.construct_object(node)
        except yaml.MarkedYAMLError as exc:
            self.fail(node, None, str(exc.problem))
            return None
        if isinstance(value, str) and SURROGATE.search(value):
            self.fail(node, location, f"{value!r} is not valid Unicode")
        return value

    def convert(self, node: Node, location: Location) -> Any:
        # a node reached twice is an alias: refused, so a template reads line by line and an
        # alias bomb or a cycle cannot blow up
        if id(node) in self.seen:
            anchor = _mark(node)[0]
            mark = self.document.keys.get(location, _mark(node))  # the alias has no node
            message = f"aliases are not supported; write the value out (anchor on line {anchor})"
            self.problems.append(YamlProblem(mark, location, message))
            return None
        self.seen.add(id(node))
        self.document.values[location] = _mark(node)
        if isinstance(node, ScalarNode):
            return self.scalar(node, location)
        if isinstance(node, SequenceNode):
            return [self.convert(item, (*location, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, MappingNode)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                self.fail(key_node, None, "merge keys (<<) are not supported")
                continue
            if not isinstance(key_node, ScalarNode):
                self.fail(key_node, location, "a key must be a plain string")
                continue
            key = self.scalar(key_node, location)
            if not isinstance(key, str):
                # YAML 1.1 reads yes/no/on/off as booleans, and 200 as a number
                self.fail(key_node, location, f"key {key!r} must be a string (quote it)")
                continue
            here = (*location, key)
            if key in out:
                first = self.document.keys[here][0]
                self.fail(key_node, location, f"duplicate key {key!r} (first on line {first})")
                continue
            self.document.keys[here] = _mark(key_node)
            out[key] = self.convert(value_node, here)
        return out


# libyaml composes ~15x faster than pure-Python pyyaml; the pure-Python parser words and
# places syntax errors the way our messages (and tests) expect, so it reparses only a text
# that libyaml rejects.
_FAST_LOADER: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)


def parse_documents(text: str) -> Iterator[tuple[Document | None, list[YamlProblem]]]:
    """Each document of `text` with its problems; a syntax error ends the stream (as a
    `None` document with that one problem)."""
    if _FAST_LOADER is not None:
        loader = _FAST_LOADER(text)
        try:
            nodes = []
            while loader.check_node():
                nodes.append(loader.get_node())
        except (yaml.YAMLError, RecursionError):
            nodes = None
        if nodes is not None:
            try:
                for node in nodes:
                    yield _document(loader, node)
            except RecursionError:
                yield None, [YamlProblem((1, 1), None, "the document nests too deeply")]
            finally:
                loader.dispose()
            return
        loader.dispose()
    yield from _parse_slowly(text)


def _document(loader: yaml.SafeLoader, node: Node) -> tuple[Document, list[YamlProblem]]:
    document = Document(None, _mark(node))
    converter = _Converter(loader, document)
    document.value = converter.convert(node, ())
    return document, converter.problems


def _parse_slowly(text: str) -> Iterator[tuple[Document | None, list[YamlProblem]]]:
    loader = yaml.SafeLoader(text)
    try:
        while loader.check_node():
            yield _document(loader, loader.get_node())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = ": ".join(filter(None, [exc.context, exc.problem]))
        yield None, [YamlProblem(where, None, message)]
    except RecursionError:
        yield None, [YamlProblem((1, 1), None, "the document nests too deeply")]
    finally:
        loader.dispose()
