"""Errors of the gis_db package. Every message says what to do about it."""


class GisDbError(Exception):
    """Root error of gis_db."""


class DatabaseUnavailableError(GisDbError, ConnectionError):
    """The PostGIS server cannot be reached or the embedded cluster cannot be started."""


class SystemPackageMissingError(GisDbError, RuntimeError):
    """A Debian package the embedded cluster needs is not installed."""


class InvalidInputError(GisDbError, ValueError):
    """An input file or value is malformed; the message names file, row and field."""


class NotFoundError(GisDbError, LookupError):
    """A case, detection, run or unit does not exist."""


class ConflictError(GisDbError):
    """Someone else changed the same record at the same moment; reload and try again."""


class IllegalTransitionError(GisDbError, ValueError):
    """A state-machine transition that the rules forbid."""


class PermissionDeniedError(GisDbError, PermissionError):
    """The acting user may not do this (e.g. write off a case they requested)."""
