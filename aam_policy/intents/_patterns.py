"""Patterns and vocabularies shared by the authoring model and the compiler.

They live here, not in the compiler, so that dependencies point one way only: the compiler
imports the authoring model's vocabulary, never the reverse.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

INTENT_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
TOOL_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
PATH_SEGMENT = re.compile(rf"^{_IDENTIFIER}$")
PATH_ROOTS = ("actor", "action", "data", "session", "context", "delegation")
FIELD_PATH = re.compile(rf"^({'|'.join(PATH_ROOTS)})(\.{_IDENTIFIER})*$")
APPROVER = re.compile(r"^(role|user):\S.*$", re.DOTALL)
# C0/C1 controls: never valid inside an agent id or approver name
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
SURROGATE = re.compile("[\ud800-\udfff]")
# 90s, 10m, 1h, 1h30m, 2d; the lookahead refuses an all-zero (or empty) duration
DURATION = re.compile(r"^(?=.*[1-9])([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$")

Level = Literal["public", "internal", "confidential", "restricted"]
Operation = Literal["read", "write", "delete", "execute", "transfer"]
Outcome = Literal["allow", "deny", "escalate"]
LeafOp = Literal[
    "eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "matches", "exists"
]
ReasonCode = Literal[
    "no_intent",
    "principal_not_allowed",
    "agent_not_allowed",
    "tool_not_in_intent",
    "operation_not_allowed",
    "sensitivity_exceeds_ceiling",
    "environment_not_allowed",
    "session_missing",
    "session_expired",
    "session_revoked",
    "session_intent_mismatch",
    "session_budget_exhausted",
    "delegation_too_deep",
    "delegate_not_allowed",
    "delegation_scope_exceeded",
    "chain_blocked",
    "escalation_required",
    "approval_granted",
    "break_glass",
]

LEVELS: tuple[str, ...] = get_args(Level)
OPERATIONS: tuple[str, ...] = get_args(Operation)
OUTCOMES: tuple[str, ...] = get_args(Outcome)
LEAF_OPS: tuple[str, ...] = get_args(LeafOp)
REASON_CODES: tuple[str, ...] = get_args(ReasonCode)

# What each op needs as its `value`, in words (the schema and the model say it in code)
NUMBER_OPS = ("gt", "gte", "lt", "lte")
LIST_OPS = ("in", "not_in")
SCALAR_OPS = ("eq", "ne", "contains")
VALUE_WANTED = {
    **dict.fromkeys(NUMBER_OPS, "a number"),
    **dict.fromkeys(LIST_OPS, "a non-empty list of strings, numbers or booleans"),
    "matches": "a glob string",
    "exists": "true or false",
    **dict.fromkeys(SCALAR_OPS, "a string, number or boolean"),
}

# deep enough for any sane policy, shallow enough that recursion can never be the failure
MAX_CONDITION_DEPTH = 32
