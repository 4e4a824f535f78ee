"""Errors in OpenAI's JSON shape: ``{"error": {"message", "type", "param", "code"}}``.

Every rejection the server makes is an :class:`ApiError`; the app turns it into that JSON with
its status code, so a client sees the same format it gets from OpenAI, with ``param`` naming
the offending field.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "server_error",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: Optional[str] = None,
                 code: Optional[str] = None, headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": _TYPES.get(self.status, "api_error"),
                          "param": self.param, "code": self.code}}


def invalid(param: Optional[str], message: str, code: str = "invalid_value") -> ApiError:
    """A 400 naming the field."""
    return ApiError(400, message, param=param, code=code)


def json_type(v: Any) -> str:
    """The JSON name of a value's type (``object``, ``array``, ...), for messages."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
            int: "integer", float: "number"}.get(type(v), type(v).__name__)
