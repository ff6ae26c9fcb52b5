"""Errors of the web_map package, and the one table mapping domain errors to HTTP statuses.

Every route lets domain errors (``gis_db`` and ``web_map``) propagate; one exception handler turns
them into a response with the status from :data:`HTTP_STATUS` and the error's own message (which
says what to do about it). Nothing else in the package chooses a status code for a domain error.
"""

from __future__ import annotations

from gis_db.errors import (
    ConflictError,
    DatabaseUnavailableError,
    GisDbError,
    IllegalTransitionError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)


class WebMapError(Exception):
    """Root error of web_map."""


class AuthenticationRequiredError(WebMapError, PermissionError):
    """No valid session: log in first."""


class LoginFailedError(WebMapError, PermissionError):
    """Wrong user name or password, or a disabled account."""


class ForbiddenError(WebMapError, PermissionError):
    """The logged-in user's role may not do this."""


class CsrfError(WebMapError, PermissionError):
    """A state-changing request without the page's CSRF token."""


class RateLimitedError(WebMapError):
    """Too many failed log-ins; wait before trying again."""


class UploadTooLargeError(WebMapError, ValueError):
    """An uploaded file is larger than the configured limit."""


class UnsupportedUploadError(WebMapError, ValueError):
    """An uploaded file is not one of the accepted image types."""


class AccountError(WebMapError, ValueError):
    """An account operation with bad input (unknown user, short password, missing 街镇)."""


class ImageryUnavailableError(WebMapError, LookupError):
    """A scene has no readable image file, or a tile lies outside it."""


#: Domain error -> HTTP status. The most specific class listed wins (checked in this order).
HTTP_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (AuthenticationRequiredError, 401),
    (LoginFailedError, 401),
    (CsrfError, 403),
    (ForbiddenError, 403),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (ImageryUnavailableError, 404),
    (ConflictError, 409),
    (IllegalTransitionError, 409),
    (UploadTooLargeError, 413),
    (UnsupportedUploadError, 415),
    (AccountError, 400),
    (InvalidInputError, 400),
    (RateLimitedError, 429),
    (DatabaseUnavailableError, 503),
    (GisDbError, 500),
    (WebMapError, 500),
)


def http_status(exc: Exception) -> int:
    """The HTTP status of a domain error (500 for anything not in :data:`HTTP_STATUS`)."""
    for cls, status in HTTP_STATUS:
        if isinstance(exc, cls):
            return status
    return 500
