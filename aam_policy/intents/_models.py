"""The intent template as pydantic models.

The JSON Schema catches what a schema can say, with positions; these models are the typed
result and hold the checks a schema cannot express (unique tool names, exact-match patterns,
finite numbers). Dumped with `model_dump(mode="json", by_alias=True)` they give the
normalized dict the compiler renders.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from aam_policy.intents._patterns import (
    APPROVER,
    CONTROL,
    DURATION,
    FIELD_PATH,
    INTENT_ID,
    LIST_OPS,
    MAX_CONDITION_DEPTH,
    NUMBER_OPS,
    PATH_ROOTS,
    TOOL_NAME,
    VALUE_WANTED,
    LeafOp,
    Level,
    Operation,
    Outcome,
    ReasonCode,
)

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(value: str | int) -> int:
    """Seconds in `90s`, `10m`, `1h`, `1h30m`, `2d` or a positive integer; ValueError else."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"{value!r} is not a positive number of seconds")
        return value
    if not isinstance(value, str) or not DURATION.fullmatch(value):
        raise ValueError(f"{value!r} is not a duration like 90s, 10m or 1h")
    return sum(int(n) * _UNITS[unit] for n, unit in re.findall(r"([0-9]+)([dhms])", value))


def _matching(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        # fullmatch: `$` alone would let a trailing newline through
        if not pattern.fullmatch(value):
            raise ValueError(f"{what} {value!r} must match {pattern.pattern}")
        return value

    return AfterValidator(check)


def _no_controls(value: str) -> str:
    if not value or CONTROL.search(value):
        raise ValueError(f"{value!r} must be non-empty without control characters")
    return value


def _approver(value: str) -> str:
    if not APPROVER.fullmatch(value) or CONTROL.search(value):
        raise ValueError(f"approver {value!r} must be role:<name> or user:<name>")
    return value


def _field_path(value: str) -> str:
    if not FIELD_PATH.fullmatch(value):
        raise ValueError(
            f"field path {value!r} must be dotted identifiers under one of {', '.join(PATH_ROOTS)}"
        )
    return value


def _error_at(loc: tuple[str | int, ...], value: Any, message: str) -> ValidationError:
    """An error on a nested field (not the one being validated), so it points at the line."""
    error = PydanticCustomError("intent", message)
    return ValidationError.from_exception_data(
        "Intent", [InitErrorDetails(type=error, loc=loc, input=value)]
    )


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or _is_number(value)


def _json_value(value: Any, loc: tuple[str | int, ...] = ()) -> None:
    """Requests become Rego literals: JSON types only, string keys, finite numbers."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _error_at(loc, value, f"keys must be strings, got {key!r}")
            _json_value(item, (*loc, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _json_value(item, (*loc, i))
    elif not (value is None or isinstance(value, str | bool) or _is_number(value)):
        raise _error_at(loc, value, f"not a JSON value: {value!r}")


Duration = Annotated[int, BeforeValidator(parse_duration)]
IntentId = Annotated[str, _matching(INTENT_ID, "intent id")]
ToolName = Annotated[str, _matching(TOOL_NAME, "tool name")]
AgentId = Annotated[str, AfterValidator(_no_controls)]
Approver = Annotated[str, AfterValidator(_approver)]
FieldPath = Annotated[str, AfterValidator(_field_path)]


class _Model(BaseModel):
    # strict: YAML already typed every scalar, so `true` must not pass as 1 nor 5 as "5"
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Metadata(_Model):
    id: IntentId
    owner: str
    description: str = ""
    standards: list[str] = []


class Principals(_Model):
    human_roles: list[str] = []
    humans: list[str] = []
    groups: list[str] = []
    agents: Annotated[list[AgentId], Field(min_length=1)]


class SessionLimits(_Model):
    max_ttl: Duration
    max_actions: Annotated[int, Field(ge=0)]


class FieldCondition(_Model):
    field: FieldPath
    op: LeafOp
    value: Any

    @model_validator(mode="after")
    def _value_fits_op(self) -> FieldCondition:
        op, value = self.op, self.value
        if op in NUMBER_OPS:
            ok = _is_number(value)
        elif op in LIST_OPS:
            ok = isinstance(value, list) and bool(value) and all(_is_scalar(v) for v in value)
        elif op == "matches":
            ok = isinstance(value, str)
        elif op == "exists":
            ok = isinstance(value, bool)
        else:
            ok = _is_scalar(value)
        if not ok:
            raise _error_at(("value",), value, f"op {op!r} needs {VALUE_WANTED[op]}, got {value!r}")
        return self


class AllCondition(_Model):
    all_: Annotated[list[Condition], Field(alias="all", min_length=1)]


class AnyCondition(_Model):
    any_: Annotated[list[Condition], Field(alias="any", min_length=1)]


class NotCondition(_Model):
    not_: Annotated[Condition, Field(alias="not")]


# pydantic puts the tag into an error's `loc`; the loader drops these names again
CONDITION_TAGS = ("FieldCondition", "AllCondition", "AnyCondition", "NotCondition")


def _condition_shape(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        name = type(value).__name__
        return name if name in CONDITION_TAGS else None
    if not isinstance(value, dict):
        return None
    shapes = [key for key in ("all", "any", "not") if key in value]
    if len(shapes) == 1:
        return f"{shapes[0].title()}Condition"
    return "FieldCondition" if not shapes and ("field" in value or "op" in value) else None


Condition = Annotated[
    Union[  # noqa: UP007 -- `|` cannot hold the string forward references
        Annotated[FieldCondition, Tag("FieldCondition")],
        Annotated["AllCondition", Tag("AllCondition")],
        Annotated["AnyCondition", Tag("AnyCondition")],
        Annotated["NotCondition", Tag("NotCondition")],
    ],
    Discriminator(
        _condition_shape,
        custom_error_type="condition_shape",
        custom_error_message="a condition is exactly one of {field, op, value}, all:, any: or not:",
    ),
]
AllCondition.model_rebuild()
AnyCondition.model_rebuild()
NotCondition.model_rebuild()


def condition_depth(condition: Condition) -> int:
    if isinstance(condition, AllCondition | AnyCondition):
        children = condition.all_ if isinstance(condition, AllCondition) else condition.any_
        return 1 + max(condition_depth(child) for child in children)
    if isinstance(condition, NotCondition):
        return 1 + condition_depth(condition.not_)
    return 0


class Escalation(_Model):
    when: Condition | None = None
    approvers: Annotated[list[Approver], Field(min_length=1)]
    reason: str = ""
    approval_ttl: Duration = 900

    @field_validator("when")
    @classmethod
    def _shallow(cls, when: Condition | None) -> Condition | None:
        if when is not None and condition_depth(when) > MAX_CONDITION_DEPTH:
            raise ValueError(f"conditions nest deeper than {MAX_CONDITION_DEPTH} levels")
        return when


class Tool(_Model):
    name: ToolName
    operations: Annotated[list[Operation], Field(min_length=1)]
    max_sensitivity: Level
    escalate: list[Escalation] = []


class ChainAfter(_Model):
    sensitivity_at_least: Level | None = None
    tools_used_any: list[ToolName] | None = None

    @model_validator(mode="after")
    def _says_when(self) -> ChainAfter:
        # an empty `after` would block the tools always: leaving them out of `tools` says that
        if self.sensitivity_at_least is None and self.tools_used_any is None:
            raise ValueError("needs sensitivity_at_least or tools_used_any")
        return self


class ChainRule(_Model):
    after: ChainAfter
    deny_tools: Annotated[list[ToolName], Field(min_length=1)]
    reason: str = ""


class Delegation(_Model):
    max_depth: Annotated[int, Field(ge=0)]
    agents: list[AgentId] = []


class BreakGlass(_Model):
    allowed: bool
    max_ttl: Duration | None = None


def _expect_shorthand(value: Any) -> Any:
    # `expect: allow` is the YAML shorthand for {outcome: allow, reasons: []}
    return {"outcome": value} if isinstance(value, str) else value


class Expect(_Model):
    outcome: Outcome
    reasons: list[ReasonCode] = []


class Example(_Model):
    name: str
    request: dict[str, Any] = {}
    expect: Annotated[Expect, BeforeValidator(_expect_shorthand)]

    @field_validator("request")
    @classmethod
    def _json_only(cls, request: dict[str, Any]) -> dict[str, Any]:
        _json_value(request)
        return request


class Spec(_Model):
    principals: Principals
    session: SessionLimits
    environments: list[str] | None = None
    tools: Annotated[list[Tool], Field(min_length=1)]
    chaining: list[ChainRule] = []
    delegation: Delegation | None = None
    break_glass: BreakGlass | None = None
    examples: list[Example] = []

    @field_validator("tools")
    @classmethod
    def _unique_names(cls, tools: list[Tool]) -> list[Tool]:
        seen: set[str] = set()
        for t, tool in enumerate(tools):
            if tool.name in seen:
                raise _error_at((t, "name"), tool.name, f"duplicate tool {tool.name!r}")
            seen.add(tool.name)
        return tools


class Intent(_Model):
    """One intent template: who may use which tools, how far, and when a human decides."""

    api_version: Annotated[Literal["aam/v1"], Field(alias="apiVersion")]
    kind: Literal["Intent"]
    metadata: Metadata
    spec: Spec
