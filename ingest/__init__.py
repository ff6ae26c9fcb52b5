"""ingest: from raw satellite and drone orthophotos to an aligned, analysis-ready image pair.

Typical use (all lazy: nothing larger than a tile is read into memory)::

    from ingest import describe_scene, prepare_pair, iter_tiles
    scene = describe_scene("flight_20240315.tif")          # validate + footprint, GSD, date
    pair = prepare_pair("sat_2023.tif", "flight_20240315.tif", working_crs="EPSG:4549", gsd_m=0.5)
    for task in iter_tiles(pair, size=512, overlap=32):
        tile = task.read()        # tile.data: (2, bands, h, w) float32, tile.valid: (h, w) bool

This package reads no settings and imports no other weijian stage: pass plain values.
"""

from ingest.align import (
    AlignedPair,
    Coregistration,
    EpochSpec,
    PairReader,
    Tile,
    match_bands,
    prepare_pair,
    read_window,
)
from ingest.coregister import ShiftEstimate, estimate_shift
from ingest.errors import (
    AcquisitionDateWarning,
    BandMismatchError,
    CoregistrationWarning,
    CorruptRasterError,
    EmptyRasterError,
    ImplausibleBoundsError,
    IngestError,
    IngestWarning,
    InsufficientOverlapError,
    InvalidDateError,
    MissingAcquisitionDateError,
    MosaicError,
    NoOverlapError,
    NotGeoreferencedError,
    PairSpecError,
    RotatedGridError,
    ShiftTooLargeError,
    UnknownCRSError,
)
from ingest.export import pair_report, write_pair_cogs, write_report
from ingest.radiometry import apply_histogram, histogram_tables
from ingest.raster import build_mosaic_vrt, open_raster, parse_crs
from ingest.scene import Scene, check_plausible_bounds, describe_scene, stac_item, write_stac_item
from ingest.tiles import TileTask, iter_tiles, read_tiles

__all__ = [
    "AcquisitionDateWarning",
    "AlignedPair",
    "BandMismatchError",
    "Coregistration",
    "CoregistrationWarning",
    "CorruptRasterError",
    "EmptyRasterError",
    "EpochSpec",
    "ImplausibleBoundsError",
    "IngestError",
    "IngestWarning",
    "InsufficientOverlapError",
    "InvalidDateError",
    "MissingAcquisitionDateError",
    "MosaicError",
    "NoOverlapError",
    "NotGeoreferencedError",
    "PairReader",
    "PairSpecError",
    "RotatedGridError",
    "Scene",
    "ShiftEstimate",
    "ShiftTooLargeError",
    "Tile",
    "TileTask",
    "UnknownCRSError",
    "apply_histogram",
    "build_mosaic_vrt",
    "check_plausible_bounds",
    "describe_scene",
    "estimate_shift",
    "histogram_tables",
    "iter_tiles",
    "match_bands",
    "open_raster",
    "pair_report",
    "parse_crs",
    "prepare_pair",
    "read_tiles",
    "read_window",
    "stac_item",
    "write_pair_cogs",
    "write_report",
    "write_stac_item",
]
