"""Writing an aligned pair as two Cloud-Optimized GeoTIFFs plus a JSON report.

Each epoch is written window by window into a tiled GTiff with an internal mask, overviews are
built from it, and GDAL's COG driver copies it to the final file; memory stays bounded by the
window size and the GDAL cache, whatever the image size.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.windows import Window

from ingest.align import AlignedPair, PairReader, Progress
from ingest.raster import GDAL_ENV

#: Window (px) in which the COGs are written; a multiple of the 512 px COG block.
WRITE_WINDOW_PX = 1024


def _output_dtype(pair: AlignedPair) -> tuple[str, str]:
    before = pair.before.dtype
    return before, before if pair.histogram else pair.after.dtype


def _to_dtype(data: np.ndarray, dtype: str) -> np.ndarray:
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(data), info.min, info.max).astype(dtype)
    return data.astype(dtype)


def write_pair_cogs(
    pair: AlignedPair, out_dir: str | Path, progress: Progress | None = None
) -> dict[str, Any]:
    """Write ``before.tif`` and ``after.tif`` (COG, DEFLATE, internal masks) on the working grid.

    Returns the file paths and the measured share of grid pixels valid in each and in both epochs.
    """
    report = progress or (lambda step, done, total: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dtypes = _output_dtype(pair)
    profile = {
        "driver": "GTiff",
        "width": pair.width,
        "height": pair.height,
        "count": pair.band_count,
        "crs": pair.crs,
        "transform": pair.affine,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "DEFLATE",
        "predictor": 2,
        "BIGTIFF": "IF_SAFER",
    }
    tmp = [out / f".{name}.tmp.tif" for name in ("before", "after")]
    windows = [
        Window(c, r, min(WRITE_WINDOW_PX, pair.width - c), min(WRITE_WINDOW_PX, pair.height - r))
        for r in range(0, pair.height, WRITE_WINDOW_PX)
        for c in range(0, pair.width, WRITE_WINDOW_PX)
    ]
    counts = np.zeros(3, dtype=np.int64)
    with rasterio.Env(**GDAL_ENV), PairReader(pair) as reader:
        dsts = [
            rasterio.open(p, "w", **profile, dtype=dt) for p, dt in zip(tmp, dtypes, strict=True)
        ]
        try:
            for i, w in enumerate(windows):
                report("write", i, len(windows))
                tile = reader.read(w)
                for k, dst in enumerate(dsts):
                    dst.write(_to_dtype(tile.data[k], dtypes[k]), window=w)
                    dst.write_mask(tile.masks[k].astype(np.uint8) * 255, window=w)
                counts += [tile.masks[0].sum(), tile.masks[1].sum(), tile.valid.sum()]
            report("write", len(windows), len(windows))
            levels = [2**k for k in range(1, 32) if max(pair.width, pair.height) / 2**k >= 256]
            for k, dst in enumerate(dsts):
                report("overviews", k, 2)
                if levels:
                    dst.build_overviews(levels, Resampling.average)
            report("overviews", 2, 2)
        finally:
            for dst in dsts:
                dst.close()
        paths = {}
        for k, (name, src) in enumerate(zip(("before", "after"), tmp, strict=True)):
            report("cog", k, 2)
            final = out / f"{name}.tif"
            rasterio.shutil.copy(
                src,
                final,
                driver="COG",
                compress="DEFLATE",
                predictor="YES",
                overviews="FORCE_USE_EXISTING",
                blocksize=512,
                bigtiff="IF_SAFER",
            )
            src.unlink()
            for aux in src.parent.glob(src.name + ".*"):
                aux.unlink()
            paths[name] = str(final)
        report("cog", 2, 2)
    total = pair.width * pair.height
    return {
        "files": paths,
        "valid_fraction_before": float(counts[0] / total),
        "valid_fraction_after": float(counts[1] / total),
        "valid_fraction_both": float(counts[2] / total),
    }


def pair_report(pair: AlignedPair, written: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON report of a prepared pair: grid, shift, overlap, valid fraction, matching."""
    from pyproj import CRS

    dx, dy = pair.shift_m
    return {
        "grid": {
            "crs": pair.crs,
            "crs_name": CRS.from_user_input(pair.crs).name,
            "gsd_m": pair.gsd_m,
            "width": pair.width,
            "height": pair.height,
            "transform": list(pair.transform),
            "bounds": list(pair.bounds),
        },
        "before": {
            "source": pair.before.source,
            "gsd_m": pair.before.gsd_m,
            "acquired": pair.before.acquired,
            "bands": list(pair.before.bands),
            "resampling": pair.before.resampling,
        },
        "after": {
            "source": pair.after.source,
            "gsd_m": pair.after.gsd_m,
            "acquired": pair.after.acquired,
            "bands": list(pair.after.bands),
            "resampling": pair.after.resampling,
        },
        "shift": {
            "dx_m": dx,
            "dy_m": dy,
            "magnitude_m": math.hypot(dx, dy),
            "dx_px": dx / pair.gsd_m,
            "dy_px": dy / pair.gsd_m,
            "tiles_used": pair.shift_tiles_used,
        },
        "coregistration": _coregistration_report(pair),
        "overlap_fraction": pair.overlap_fraction,
        "valid_fraction": (written or {}).get("valid_fraction_both", pair.valid_fraction),
        "histogram_matched": pair.histogram is not None,
        **({"outputs": written} if written else {}),
    }


def _coregistration_report(pair: AlignedPair) -> dict[str, Any] | None:
    """The co-registration part of the report: confidence, blocks, model applied, residual."""
    c = pair.coregistration
    if c is None:
        return None
    return {
        "model_applied": c.model_applied,
        "model_estimated": c.model_estimated,
        "confident": c.confident,
        "confidence": round(c.confidence, 4),
        "blocks_agreeing": c.blocks_agreeing,
        "blocks_with_clear_match": c.blocks_peaked,
        "blocks_textured": c.blocks_textured,
        "blocks_sampled": c.blocks_tried,
        "block_px": c.block_px,
        "estimated_dx_m": round(c.estimated_dx_m, 4),
        "estimated_dy_m": round(c.estimated_dy_m, 4),
        "residual_px": None if c.residual_px is None else round(c.residual_px, 4),
        "residual_m": None if c.residual_px is None else round(c.residual_px * pair.gsd_m, 4),
        "affine_px": list(c.affine_px) if c.affine_px is not None else None,
        "thresholds": {
            "min_blocks": c.min_blocks,
            "min_confidence": c.min_confidence,
            "min_peak_z": c.min_peak_z,
            "tolerance_px": c.tolerance_px,
        },
        "message": c.message,
    }


def write_report(
    pair: AlignedPair, out_dir: str | Path, written: dict[str, Any] | None = None
) -> Path:
    """Write ``report.json`` and ``pair.json`` (the re-openable spec) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pair.save(out / "pair.json")
    path = out / "report.json"
    path.write_text(
        json.dumps(pair_report(pair, written), ensure_ascii=False, indent=2), encoding="utf-8"
    )
    return path
