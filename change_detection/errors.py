"""Errors of the change_detection package.

Every error derives from :class:`ChangeDetectionError` and from the built-in type that fits it,
so callers can catch either. Messages say what to do about the problem.
"""

from __future__ import annotations


class ChangeDetectionError(Exception):
    """Root of all change-detection errors."""


class DatasetError(ChangeDetectionError, ValueError):
    """A training/evaluation folder is not in the LEVIR-CD layout or its files do not match."""


class DatasetNotFoundError(ChangeDetectionError, FileNotFoundError):
    """A data folder or image named by the user does not exist."""


class UnknownNetworkError(ChangeDetectionError, KeyError):
    """A network name (on the command line or inside a weights file) is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsError(ChangeDetectionError, ValueError):
    """A weights file is missing, damaged or not a weijian change-detection weights file."""


class DeviceError(ChangeDetectionError, RuntimeError):
    """The requested device (e.g. ``cuda``) is not available on this machine."""


class InputError(ChangeDetectionError, ValueError):
    """Image arrays given to inference have the wrong shape, dtype or do not match each other."""


class PairInputError(ChangeDetectionError, ValueError):
    """An aligned pair (``pair.json`` or its source images) is missing, damaged or unusable."""


class OutputExistsError(ChangeDetectionError, FileExistsError):
    """The output folder holds another pair's or another run's results."""


class IncompleteOutputError(ChangeDetectionError, ValueError):
    """A detection output folder is incomplete (the run was interrupted): run it again."""


class SchedulerError(ChangeDetectionError, ConnectionError):
    """The Dask scheduler cannot be reached, or the cluster failed."""


class OutOfSpaceError(ChangeDetectionError, OSError):
    """The disk filled up while writing outputs; partial files were removed."""


class EngineError(ChangeDetectionError, RuntimeError):
    """The requested inference engine (e.g. onnxruntime) is not available or failed."""
