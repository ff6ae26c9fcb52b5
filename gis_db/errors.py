"""Errors of the gis_db package. Every message says what to do about it.

The message (``str(exc)``) is English, for the command line, the logs and analysts. Errors that
a person can meet in the review application also carry structured facts: a stable ``code``
(``"illegal_transition"``) and the values of the message as ``params`` (case number, current
state and attempted action as their codes), from which ``web_map.messages`` writes the sentence
staff read in Chinese. Raising ``NotFoundError("case 7 does not exist", code="case_not_found",
case_id=7)`` keeps the English message exactly as it was.
"""

from __future__ import annotations

from typing import Any


class CodedError(Exception):
    """An error with a stable ``code`` and the values of its message (``params``).

    The base of gis_db's root error, and of web_map's (a later stage may import it; gis_db never
    imports web_map).

    Attributes:
        code: a stable machine-readable name of the refusal (the class's default when the raise
            site gives none), e.g. ``illegal_transition``, ``case_not_found``.
        params: the values the message names, as plain codes and numbers (never labels).
    """

    code: str = "error"

    def __init__(self, *args: object, code: str | None = None, **params: Any) -> None:
        super().__init__(*args)
        if code is not None:
            self.code = code
        self.params: dict[str, Any] = params


class GisDbError(CodedError):
    """Root error of gis_db."""

    code = "gis_db_error"


class DatabaseUnavailableError(GisDbError, ConnectionError):
    """The PostGIS server cannot be reached or the embedded cluster cannot be started."""

    code = "database_unavailable"


class SystemPackageMissingError(GisDbError, RuntimeError):
    """A Debian package the embedded cluster needs is not installed."""

    code = "system_package_missing"


class InvalidInputError(GisDbError, ValueError):
    """An input file or value is malformed; the message names file, row and field."""

    code = "invalid_input"


class NotFoundError(GisDbError, LookupError):
    """A case, detection, run or unit does not exist."""

    code = "not_found"


class ConflictError(GisDbError):
    """Someone else changed the same record at the same moment; reload and try again."""

    code = "conflict"


class IllegalTransitionError(GisDbError, ValueError):
    """A state-machine transition that the rules forbid."""

    code = "illegal_transition"


class PermissionDeniedError(GisDbError, PermissionError):
    """The acting user may not do this (e.g. write off a case they requested)."""

    code = "permission_denied"
