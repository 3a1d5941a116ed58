"""
Every error a client sees, in one shape: a code, a message and the field.

Domain errors become a 4xx here, or an error frame on the socket; nothing
else decides how an error looks.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from commands.retry import ConversationBusyError
from domain.errors import ChatError, ConversationNotFoundError
from projections.ports import Frame, ReadModelUnavailableError

logger = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
}


class RequestError(ChatError):
    """
    A frame or request that is malformed before any command is built.
    """

    def __init__(self, code: str, message: str, *, field: str | None = None):
        super().__init__(message, field=field)
        self.code = code


HISTORY_UNAVAILABLE = RequestError(
    "history_unavailable", "history is unavailable right now; try again shortly"
)


def status_of(error: ChatError) -> int:
    if isinstance(error, ConversationNotFoundError):
        return 404
    if isinstance(error, ConversationBusyError):
        return 503
    return 422


def error_fields(code: str, message: str, field: str | None) -> dict[str, Any]:
    return {"code": code, "message": message, "field": field}


def error_frame(error: ChatError, ref: object = None) -> Frame:
    return {"type": "error", "ref": ref, **_fields_of(error)}


def from_validation(error: ValidationError | RequestValidationError) -> RequestError:
    """
    Name the first offending field of a validation failure, and what is wrong.
    """
    first = error.errors()[0]
    if first.get("type") == "json_invalid":
        return RequestError("invalid_json", "the request body is not valid JSON")
    location = [str(part) for part in first.get("loc", ())]
    if isinstance(error, RequestValidationError) and location[:1] == ["body"]:
        # FastAPI puts the request body first; a field may be named body too.
        location = location[1:]
    field = ".".join(location) or None
    code = "missing_field" if first.get("type") == "missing" else "invalid_field"
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return RequestError(code, message, field=field)


def _fields_of(error: ChatError) -> dict[str, Any]:
    return error_fields(error.code, error.message, error.field)


async def _chat_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ChatError)
    content = {"error": _fields_of(error)}
    return JSONResponse(content, status_code=status_of(error))


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    content = {"error": _fields_of(from_validation(error))}
    return JSONResponse(content, status_code=422)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    code = HTTP_CODES.get(error.status_code, "http_error")
    content = {"error": error_fields(code, str(error.detail), None)}
    return JSONResponse(content, status_code=error.status_code, headers=error.headers)


async def _history_unavailable(request: Request, error: Exception) -> JSONResponse:
    # The read model is down, not the request wrong: say so, briefly, and
    # keep the driver's details in the log rather than in the response.
    logger.warning("history unavailable for %s: %s", request.url.path, error)
    content = {"error": _fields_of(HISTORY_UNAVAILABLE)}
    return JSONResponse(content, status_code=503, headers={"Retry-After": "1"})


def register(app: FastAPI) -> None:
    """
    Make every error response of ``app`` take the one shape.
    """
    app.add_exception_handler(ChatError, _chat_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ReadModelUnavailableError, _history_unavailable)
