"""The `Engine` interface, rule paths, and the choice between the embedded engine and `opa`."""

from __future__ import annotations

import json
import re
import shutil
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from aam_policy.engine._policy import PolicySet
    from aam_policy.engine._testing import TestReport

ENGINE_KINDS = ("auto", "regorus", "opa")
DECISION_PATH = ("aam", "decision")

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EngineError(Exception):
    """Base class of every engine failure (loading, evaluation, engine unavailable)."""


class EvaluationError(EngineError):
    """Evaluation failed (a Rego runtime error such as a rule conflict, or a bad input)."""

    def __init__(self, message: str, path: str | None = None) -> None:
        self.message = message
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class EngineUnavailable(EngineError):
    """The requested engine cannot run here (e.g. `opa` is not on PATH)."""


@runtime_checkable
class Engine(Protocol):
    """One policy engine over one loaded `PolicySet`.

    `evaluate("aam/decision", input)` returns the JSON value of the rule (dicts, lists, str,
    numbers, bool) or None when it is undefined. Sets come back as sorted lists, as in OPA's
    JSON API. Implementations are safe to call from several threads.
    """

    kind: str
    policy: PolicySet

    @property
    def revision(self) -> str:
        """The bundle's manifest revision, or "" when the policy has no manifest."""
        ...

    def evaluate(self, path: str, input: Any = None) -> Any:
        """Value of the document at `path` ("aam/decision" or "data.aam.decision")."""
        ...

    def run_tests(self, run: str | None = None) -> TestReport:
        """Run every `test_*` rule of the policy (`run`: regex on `data.<pkg>.<name>`)."""
        ...


def parse_path(path: str) -> tuple[str, ...]:
    """Split a rule path into segments under `data`.

    Accepts the REST form ("aam/decision", "/v1/data/..." is *not* stripped) and the Rego form
    ("data.aam.decision"). Segments of the Rego form must be identifiers; the REST form takes
    any text per segment (it becomes a quoted key), as OPA's Data API does.
    """
    text = path.strip()
    if text == "data" or text.startswith("data."):
        parts = tuple(text.split(".")[1:])
        if not all(_IDENT.match(p) for p in parts):
            raise ValueError(f"invalid rule path {path!r}: use identifiers, or the a/b/c form")
        return parts
    return tuple(p for p in text.split("/") if p)


def rego_ref(parts: tuple[str, ...]) -> str:
    """`data.a.b` for identifier segments, `data["x-y"]` (JSON-quoted) for any other key."""
    out = "data"
    for part in parts:
        out += f".{part}" if _IDENT.match(part) else f"[{json.dumps(part)}]"
    return out


def opa_binary() -> str | None:
    """Path of the `opa` executable on PATH, or None."""
    return shutil.which("opa")


def resolve_engine_kind(kind: str) -> str:
    """ "opa" for kind "opa" (or "auto" when `opa` is on PATH), else "regorus"."""
    if kind not in ENGINE_KINDS:
        raise ValueError(f"unknown engine {kind!r} (expected one of {', '.join(ENGINE_KINDS)})")
    return "opa" if kind == "opa" or (kind == "auto" and opa_binary() is not None) else "regorus"


def default_engine(policy: PolicySet, kind: str = "auto") -> Engine:
    """`OpaEngine` or `RegorusEngine`, as `resolve_engine_kind(kind)` says."""
    if resolve_engine_kind(kind) == "opa":
        from aam_policy.engine._opa import OpaEngine

        return OpaEngine(policy)
    from aam_policy.engine._regorus import RegorusEngine

    return RegorusEngine(policy)
