"""Errors of the sidecar: OPA-style API errors and failures to start."""

from __future__ import annotations

from typing import Any

# OPA's error codes (server/types), so clients written for OPA read our errors unchanged.
INVALID_PARAMETER = "invalid_parameter"
INVALID_OPERATION = "invalid_operation"
RESOURCE_NOT_FOUND = "resource_not_found"
RESOURCE_CONFLICT = "resource_conflict"
INTERNAL_ERROR = "internal_error"


class SidecarError(Exception):
    """The sidecar could not start or could not be reached (bad address, bundle, timeout)."""


class ApiError(Exception):
    """A request the sidecar answers with an OPA-style error body `{"code", "message"}`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.errors:
            out["errors"] = self.errors
        return out


def invalid(message: str, errors: list[dict[str, Any]] | None = None) -> ApiError:
    return ApiError(400, INVALID_PARAMETER, message, errors)


def not_found(message: str) -> ApiError:
    return ApiError(404, RESOURCE_NOT_FOUND, message)
