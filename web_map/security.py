"""Sessions, CSRF tokens and the log-in rate limit of the review application.

Sessions are signed cookies (Starlette's SessionMiddleware, itsdangerous): the cookie holds the
user id, the account's ``session_epoch`` and the CSRF token, nothing secret. Every request
re-reads the account, so a disabled account or a changed password ends its sessions at once.

CSRF: every state-changing request (POST, PUT, PATCH, DELETE) must carry the session's token,
in the ``X-CSRF-Token`` header (the pages' scripts) or a ``csrf_token`` form field (forms).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque

from fastapi import Request

from web_map.errors import CsrfError, RateLimitedError

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def csrf_token(request: Request) -> str:
    """The session's CSRF token (created on first use)."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return str(token)


async def check_csrf(request: Request) -> None:
    """Refuse a state-changing request without the session's CSRF token (403)."""
    if request.method not in UNSAFE_METHODS:
        return
    if "uid" not in request.session and request.url.path != "/login":
        return  # anonymous: the route answers 401 (log-in itself is protected)
    expected = request.session.get("csrf")
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    if not expected or not sent or not secrets.compare_digest(str(expected), sent):
        raise CsrfError(
            "the request has no valid CSRF token: reload the page and try again "
            "(API clients send the X-CSRF-Token header from /api/me)"
        )


class LoginLimiter:
    """At most ``max_failures`` failed log-ins per (client, user name) within ``window_s``."""

    def __init__(self, max_failures: int, window_s: float) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and now - times[0] > self.window_s:
            times.popleft()
        return times

    def check(self, client: str, username: str) -> None:
        """Raise RateLimitedError when this client has failed too often for this user name."""
        now = time.monotonic()
        with self._lock:
            times = self._recent((client, username.lower()), now)
            if len(times) >= self.max_failures:
                wait = int(self.window_s - (now - times[0])) + 1
                raise RateLimitedError(
                    f"too many failed log-ins for {username!r}: wait {wait} s and try again",
                    username=username,
                    wait_s=wait,
                )

    def failed(self, client: str, username: str) -> None:
        """Record one failed log-in."""
        with self._lock:
            self._recent((client, username.lower()), time.monotonic()).append(time.monotonic())

    def succeeded(self, client: str, username: str) -> None:
        """Forget the failures of a user name that has now logged in."""
        with self._lock:
            self._failures.pop((client, username.lower()), None)
