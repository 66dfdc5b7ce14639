"""Shared builders for the compiler tests (not a test module).

Intents are hand-built in the normalized dict shape of `Intent.model_dump(mode="json",
by_alias=True)` (see the internal spec), so these tests do not depend on the YAML loader.
"""

from __future__ import annotations

import copy
import json
import weakref
from pathlib import Path
from typing import Any

from aam_policy.compiler import compile_bundle, merge_request
from aam_policy.engine import RegorusEngine, load_policy
from aam_policy.engine._regorus import build_engine

REPO = Path(__file__).resolve().parent.parent
FIXTURE_INTENTS = REPO / "fixtures" / "intents"
FIXTURE_REQUESTS = REPO / "fixtures" / "requests"

AGENT = "spiffe://example.org/agents/demo-bot"


def tool(
    name: str,
    operations: list[str] | None = None,
    max_sensitivity: str = "confidential",
    escalate: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "operations": operations or ["read"],
        "max_sensitivity": max_sensitivity,
        "escalate": escalate or [],
    }


def rule(
    when: dict[str, Any] | None,
    approvers: list[str] | None = None,
    reason: str = "needs a lead",
    approval_ttl: int = 900,
) -> dict[str, Any]:
    return {
        "when": when,
        "approvers": approvers or ["role:lead"],
        "reason": reason,
        "approval_ttl": approval_ttl,
    }


def intent(
    ident: str = "demo-intent",
    tools: list[dict[str, Any]] | None = None,
    examples: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A complete, valid intent dict; `spec` keys override the defaults."""
    doc: dict[str, Any] = {
        "apiVersion": "aam/v1",
        "kind": "Intent",
        "metadata": {
            "id": ident,
            "owner": "team-demo",
            "description": "A demo intent.",
            "standards": ["NIST-800-207"],
        },
        "spec": {
            "principals": {
                "human_roles": ["support-agent"],
                "humans": [],
                "groups": [],
                "agents": [AGENT],
            },
            "session": {"max_ttl": 600, "max_actions": 50},
            "environments": ["staging", "production"],
            "tools": tools or [tool("crm.read_ticket")],
            "chaining": [],
            "delegation": None,
            "break_glass": None,
            "examples": examples or [],
        },
    }
    doc["spec"].update(copy.deepcopy(spec))
    return doc


def example(name: str, request: dict[str, Any], outcome: str, *reasons: str) -> dict[str, Any]:
    return {
        "name": name,
        "request": request,
        "expect": {"outcome": outcome, "reasons": list(reasons)},
    }


def compile_engine(
    tmp_path: Path, intents: list[Any], name: str = "bundle"
) -> tuple[RegorusEngine, Path]:
    """Compile `intents` into `tmp_path/name` and load it into the embedded engine."""
    out = tmp_path / name
    compile_bundle(intents, out)
    return RegorusEngine(load_policy([out])), out


# A compiled intent's entry and escalations are locals of its `decision` rule. A query reads
# them by replacing core.decide, which receives both, with a function that returns one.
_CAPTURE = """package aam.test_capture

import rego.v1

entry(intent, _) := intent

escalations(_, escalations) := escalations
"""


class DecisionLocals:
    """Reads the locals of compiled intents' decisions, on an engine of its own."""

    def __init__(self, engine: RegorusEngine) -> None:
        self._engine = build_engine(engine.policy, tests=False)
        self._engine.add_policy("test_capture.rego", _CAPTURE)

    @classmethod
    def of(cls, engine: RegorusEngine) -> DecisionLocals:
        """The reader for `engine`, built once (it parses the engine's modules again)."""
        reader = _READERS.get(engine)
        if reader is None:
            reader = _READERS[engine] = cls(engine)
        return reader

    def _capture(self, package: str, local: str, request: dict[str, Any]) -> Any:
        self._engine.set_input(request)
        query = (
            f"data.aam.intents.{package}.decision"
            f" with data.aam.core.decide as data.aam.test_capture.{local}"
        )
        found = json.loads(self._engine.eval_query_as_json(query))["result"]
        return found[0]["expressions"][0]["value"] if found else None

    def entry(self, package: str, request: dict[str, Any]) -> Any:
        return self._capture(package, "entry", request)

    def escalations(self, package: str, request: dict[str, Any]) -> Any:
        return self._capture(package, "escalations", request)


_READERS: weakref.WeakKeyDictionary[RegorusEngine, DecisionLocals] = weakref.WeakKeyDictionary()


def request_for(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    return merge_request(base, patch)
