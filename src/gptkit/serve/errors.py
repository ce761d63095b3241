"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}`` with the right HTTP status."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gptkit.errors import ContextLengthError, GenerationError, TokenizerError

logger = logging.getLogger("gptkit.serve")

INVALID_REQUEST = "invalid_request_error"
_STATUS_TYPES = {
    401: "authentication_error",
    404: INVALID_REQUEST,
    405: INVALID_REQUEST,
    408: "timeout_error",
    413: INVALID_REQUEST,
    429: "rate_limit_error",
    503: "server_error",
}


class APIError(Exception):
    """An error the server answers with: HTTP status, OpenAI error type, offending parameter, code."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        """The OpenAI error object."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def invalid(param: str | None, message: str, code: str | None = None) -> APIError:
    """A 400 invalid_request_error naming ``param``."""
    return APIError(400, message, param=param, code=code)


def from_library_error(error: Exception, param: str | None = None) -> APIError:
    """Map a gptkit library error (bad input to the engine or tokenizer) to a 400 naming ``param``
    (default: the error's own ``param``)."""
    param = param if param is not None else getattr(error, "param", None)
    if isinstance(error, ContextLengthError):
        return invalid(param, str(error), code="context_length_exceeded")
    return invalid(param, str(error))


def validation_param(loc: Sequence[Any]) -> str | None:
    """A pydantic error location ('body', 'messages', 0, 'content') as 'messages[0].content'."""
    parts = [p for p in loc if p != "body"]
    param = ""
    for part in parts:
        if isinstance(part, int):
            param += f"[{part}]"
        elif _is_field_name(part):
            param += f".{part}" if param else part
    return param or None


def _is_field_name(part: Any) -> bool:
    """Pydantic adds union member tags such as 'list[int]' or 'function-after[...]' to locations."""
    return isinstance(part, str) and part.isidentifier() and part not in {"str", "int", "float", "bool"}


def validation_error(exc: RequestValidationError) -> APIError:
    """FastAPI's 422 as a 400 naming the first offending field."""
    errors = exc.errors()
    if not errors:
        return invalid(None, "invalid request")
    first = errors[0]
    if first.get("type") == "json_invalid":
        return invalid(None, f"the request body is not valid JSON: {first.get('ctx', {}).get('error', '')}")
    param = validation_param(first.get("loc", ()))
    if param is None:
        return invalid(None, "the request body must be a JSON object")
    message = str(first.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    return invalid(param, f"{param}: {message}")


def install_error_handlers(app: FastAPI) -> None:
    """Every error the app can raise becomes an OpenAI-shaped JSON response."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc).response()

    @app.exception_handler(GenerationError)
    @app.exception_handler(TokenizerError)
    async def _library(request: Request, exc: Exception) -> JSONResponse:
        return from_library_error(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error_type = _STATUS_TYPES.get(exc.status_code, INVALID_REQUEST)
        code = "not_found" if exc.status_code == 404 else None
        return APIError(exc.status_code, str(exc.detail), type=error_type, code=code).response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s", request.url.path)
        return server_error(exc).response()


def server_error(exc: BaseException) -> APIError:
    """An OpenAI-shaped 500 that names the exception class, not its internals."""
    return APIError(500, f"internal server error ({type(exc).__name__})", type="server_error")
