"""The exceptions `fail_mode="raise"` surfaces; fail-closed clients turn them into decisions."""

from __future__ import annotations


class DecisionError(Exception):
    """No valid decision was obtained. `code` is the reason code a fail-closed deny carries."""

    code = "pdp_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PDPUnavailable(DecisionError):
    """No HTTP response: nothing listening, connection refused or reset, or the timeout ran out
    (retries included)."""

    code = "pdp_unavailable"


class PDPError(DecisionError):
    """An answer that is not a decision: a non-200 status, a body that is not JSON, an
    undefined result (no `result` key: wrong path or no bundle loaded), a result that breaks
    the decision contract, or an engine evaluation error (local clients)."""

    code = "pdp_error"

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
