"""The exception hierarchy. Only `segserver.http.middlewares` maps these to HTTP."""

from __future__ import annotations

from typing import Any


class SegserverError(Exception):
    """Base of every error segserver raises on purpose.

    `code` is the stable machine-readable name that reaches API clients in
    `{"error": {"code", "message"}}`; `details` is optional extra JSON.
    """

    code = "error"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class ConfigError(SegserverError):
    code = "config_error"


class ValidationError(SegserverError):
    """Bad input from a client: the message names the field."""

    code = "invalid_input"


class AuthError(SegserverError):
    """Missing or wrong credentials (401)."""

    code = "unauthorized"


class ForbiddenError(SegserverError):
    """Valid credentials that do not grant this (403)."""

    code = "forbidden"


class NotFoundError(SegserverError):
    code = "not_found"


class ConflictError(SegserverError):
    code = "conflict"


class RuleError(ValidationError):
    """A segment rule that does not compile; the message starts with its JSON path."""

    code = "invalid_rule"


class StorageError(SegserverError):
    """Redis failed or did not answer; wraps the redis-py exception once."""

    code = "storage_error"


class StorageTimeout(StorageError):
    code = "storage_timeout"


class RateLimited(SegserverError):
    """Over a quota (429 with `Retry-After: retry_after` seconds)."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code, details={"retry_after": max(1, round(retry_after))})
        self.retry_after = max(1, round(retry_after))
