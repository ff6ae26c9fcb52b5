"""Errors and warnings of the ``ingest`` package.

Every error derives from :class:`IngestError` and from the built-in type that describes it best,
so callers may catch either. Messages say what is wrong *and* what to do about it.
"""

from __future__ import annotations


class IngestError(Exception):
    """Root error of the ``ingest`` package."""


class CorruptRasterError(IngestError, OSError):
    """The file cannot be opened or read as a raster (corrupt, truncated, not an image)."""


class NotGeoreferencedError(IngestError, ValueError):
    """The raster has no CRS or no geotransform (e.g. a plain PNG, a TIFF without GeoTIFF tags)."""


class RotatedGridError(IngestError, ValueError):
    """The geotransform has rotation or shear terms; only north-up grids are supported."""


class UnknownCRSError(IngestError, ValueError):
    """The CRS cannot be understood by PROJ (or is not usable for a working grid)."""


class ImplausibleBoundsError(IngestError, ValueError):
    """The raster's bounds are impossible in its CRS, or lie far outside the CRS's area of use.

    Almost always a wrong CRS declaration (coordinates of one CRS labelled as another) or a broken
    geotransform; the image must not be placed on a map until the georeference is fixed.
    """


class EmptyRasterError(IngestError, ValueError):
    """The raster holds no valid pixel at all (everything is nodata or masked)."""


class NoOverlapError(IngestError, ValueError):
    """The valid footprints of the two epochs do not intersect."""


class InsufficientOverlapError(NoOverlapError):
    """The valid footprints intersect, but less than the configured minimum."""


class BandMismatchError(IngestError, ValueError):
    """The band layouts of the two epochs cannot be matched band for band."""


class MosaicError(IngestError, ValueError):
    """A folder of tiles cannot be assembled into one mosaic."""


class ShiftTooLargeError(IngestError, ValueError):
    """The estimated misregistration between the epochs exceeds the configured limit."""


class MissingAcquisitionDateError(IngestError, ValueError):
    """An operation needs the acquisition date-time and none was found or given."""


class InvalidDateError(IngestError, ValueError):
    """A date-time (given, in a sidecar or in a tag) cannot be parsed."""


class PairSpecError(IngestError, ValueError):
    """A saved aligned-pair specification cannot be read back."""


class IngestWarning(UserWarning):
    """Root warning of the ``ingest`` package."""


class AcquisitionDateWarning(IngestWarning):
    """No acquisition date-time was found in tags, sidecar or file name."""


class CoregistrationWarning(IngestWarning):
    """Co-registration is not confident (too few textured blocks agree); no shift was applied."""
