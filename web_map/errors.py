"""Errors of the web_map package, and the one table mapping domain errors to HTTP statuses.

Every route lets domain errors (``gis_db`` and ``web_map``) propagate; one exception handler turns
them into a response with the status from :data:`HTTP_STATUS`. Nothing else in the package
chooses a status code for a domain error. What staff read is the Chinese sentence that
:mod:`web_map.messages` writes from the error's ``code`` and ``params``; the English message
(``str(exc)``) stays for the API's ``detail``, the logs and the command line.
"""

from __future__ import annotations

from gis_db.errors import (
    CodedError,
    ConflictError,
    DatabaseUnavailableError,
    GisDbError,
    IllegalTransitionError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)


class WebMapError(CodedError):
    """Root error of web_map (``code`` and ``params`` as in :class:`gis_db.errors.CodedError`)."""

    code = "web_map_error"


class AuthenticationRequiredError(WebMapError, PermissionError):
    """No valid session: log in first."""

    code = "login_required"


class LoginFailedError(WebMapError, PermissionError):
    """Wrong user name or password, or a disabled account."""

    code = "login_failed"


class ForbiddenError(WebMapError, PermissionError):
    """The logged-in user's role may not do this."""

    code = "forbidden"


class CsrfError(WebMapError, PermissionError):
    """A state-changing request without the page's CSRF token."""

    code = "csrf"


class RateLimitedError(WebMapError):
    """Too many failed log-ins; wait before trying again."""

    code = "rate_limited"


class UploadTooLargeError(WebMapError, ValueError):
    """An uploaded file is larger than the configured limit."""

    code = "upload_too_large"


class UnsupportedUploadError(WebMapError, ValueError):
    """An uploaded file is not one of the accepted image types."""

    code = "upload_unsupported"


class AccountError(WebMapError, ValueError):
    """An account operation with bad input (unknown user, short password, missing 街镇)."""

    code = "account_error"


class ImageryUnavailableError(WebMapError, LookupError):
    """A scene has no readable image file, or a tile lies outside it."""

    code = "imagery_unavailable"


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


#: HTTP status -> what the error page says first, (Chinese, English); the sentence of
#: :func:`web_map.messages.explain` (what happened and what to do) follows in smaller print.
STATUS_HEADINGS: dict[int, tuple[str, str]] = {
    400: ("请求有误", "Bad request"),
    401: ("请先登录", "Please log in"),
    403: ("无权进行此操作", "Not allowed"),
    404: ("找不到该页面或记录", "Not found"),
    405: ("不支持此操作", "Not supported"),
    409: (
        "记录已被他人修改, 或当前状态不允许此操作: 请刷新后重试",
        "Changed meanwhile, or not allowed in this state: reload and try again",
    ),
    413: ("文件太大", "File too large"),
    415: ("文件类型不支持 (请上传 JPEG、PNG 或 WebP 照片)", "Unsupported file type"),
    422: ("网址或参数有误", "Malformed address or parameters"),
    429: ("登录失败次数过多, 请稍后再试", "Too many failed log-ins: try again later"),
    503: (
        "数据库暂时不可用, 请稍后再试或联系管理员",
        "The database is unavailable: try again later or call the administrator",
    ),
}


def status_heading(status: int) -> tuple[str, str]:
    """The error page's heading for ``status`` as (Chinese, English)."""
    return STATUS_HEADINGS.get(
        status, ("系统出错, 请联系管理员", "Something went wrong: call the administrator")
    )
