"""What every client shares: request -> `input`, result -> `Decision`, failing closed."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ValidationError

from ._errors import DecisionError, PDPError
from ._models import AgentRequest, Decision

logger = logging.getLogger("aam_policy.client")

FailMode = Literal["closed", "raise"]
RequestLike = AgentRequest | Mapping[str, Any]
DEFAULT_PATH = "aam/decision"


def check_fail_mode(fail_mode: str) -> FailMode:
    if fail_mode not in ("closed", "raise"):
        raise ValueError(f"fail_mode must be 'closed' or 'raise', not {fail_mode!r}")
    return fail_mode  # type: ignore[return-value]


def as_input(request: RequestLike) -> Any:
    return request.to_input() if isinstance(request, AgentRequest) else request


def to_decision(result: Any, decision_id: Any = None) -> Decision:
    """Validate a policy result; PDPError when it is undefined or breaks the contract."""
    if result is None:
        raise PDPError("undefined decision: wrong path, or no bundle loaded")
    if not isinstance(result, dict):
        raise PDPError(f"decision is a {type(result).__name__}, not an object")
    if decision_id is not None:
        result = {**result, "decision_id": decision_id}
    try:
        return Decision.model_validate(result)
    except ValidationError as exc:
        # Field locations and messages only: the offending values stay out of logs.
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'decision'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise PDPError(f"malformed decision: {problems}") from None


def fail_closed(error: DecisionError, input: Any) -> Decision:
    """The deny for `error`, logged without the request (only its id, never its content)."""
    request_id = intent = None
    if isinstance(input, Mapping):
        request_id = input.get("request_id")
        intent_ref = input.get("intent")
        if isinstance(intent_ref, Mapping) and isinstance(intent_ref.get("id"), str):
            intent = intent_ref["id"]
    logger.warning(
        "decision failed closed (%s): %s [request_id=%s]", error.code, error.message, request_id
    )
    return Decision.fail_closed(error.code, error.message, intent)
