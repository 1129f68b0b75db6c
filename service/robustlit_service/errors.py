"""One JSON error shape for every failure: ``{"error": {"code", "message", "details", "request_id"}}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from robustlit_service.observability import log, request_id_var


class ApiError(Exception):
    """An error answered to the client with ``status`` and a stable ``code``.

    Example:
        >>> ApiError(404, "not_found", "run 'x' does not exist").status
        404
    """

    def __init__(self, status: int, code: str, message: str, details: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def not_found(kind: str, key: object) -> ApiError:
    """A 404 naming what is missing.

    Example:
        >>> not_found("project", 3).message
        'project 3 does not exist'
    """
    return ApiError(404, "not_found", f"{kind} {key} does not exist")


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The error document.

    Example:
        >>> error_body("not_found", "gone")["error"]["code"]
        'not_found'
    """
    return {"error": {"code": code, "message": message, "details": details, "request_id": request_id_var.get()}}


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
               422: "invalid_request", 429: "rate_limited"}


def _validation_details(error: RequestValidationError) -> list[dict[str, Any]]:
    return [{"loc": [str(part) for part in item.get("loc", ())], "msg": str(item.get("msg", "")),
             "type": str(item.get("type", ""))} for item in error.errors()]


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error, including validation errors and bugs, with the shared shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error_body(error.code, error.message, error.details), status_code=error.status,
                            headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        details = _validation_details(error)
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        message = f"{'.'.join(first['loc'][1:]) or 'request'}: {first['msg']}"
        return JSONResponse(error_body("invalid_request", message, details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(error.status_code, "error")
        return JSONResponse(error_body(code, str(error.detail)), status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(_request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error: %s", error)
        return JSONResponse(error_body("internal_error", "internal server error; see the service log"),
                            status_code=500)
