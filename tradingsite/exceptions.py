"""The one exception hierarchy for business rules, and its translation to HTTP.

Services raise `ApplicationError` subclasses with a machine-readable `code`;
the API answers `{"error": {"code", "message", "details"}}` with the class's
status. DRF's own errors (validation, auth) come out in the same shape.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ApplicationError(Exception):
    http_status = 400
    default_code = "error"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details or {}


class NotFound(ApplicationError):
    http_status = 404
    default_code = "not_found"


class Conflict(ApplicationError):
    """A compare-and-set lost: the row was not in the state the caller expected."""

    http_status = 409
    default_code = "conflict"


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        body = {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}
        return Response(body, status=exc.http_status)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf_exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "invalid"
        message = exc.detail if isinstance(exc.detail, str) else "Invalid input."
        details = exc.detail if not isinstance(exc.detail, str) else {}
        response.data = {"error": {"code": code, "message": str(message), "details": details}}
    return response
