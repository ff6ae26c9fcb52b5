"""Change detection over a whole aligned pair: probability COG, polygons, ``detect.json``.

Why one file of ~1,200 lines: the tile ledger that makes a run resumable, the blending of
overlapping tiles, the local/remote Dask paths and the outputs' incomplete/complete marking all
share the same run state and must change together; polygon post-processing is already apart
(:mod:`change_detection.vectorize`), and the ONNX engine is in :mod:`change_detection.onnx_engine`.

:func:`detect_pair` runs the network over the tiles of :func:`ingest.iter_tiles` (overlapping
windows of the pair's working grid), blends overlapping tiles with a linear cross-fade over the
overlap (so tile seams do not show), and writes, in ``out_dir``:

* ``change_proba.tif``: change probability on the pair's working grid, a COG (uint8, value / 254
  = probability, 255 = nodata outside the common valid footprint, overviews);
* ``changes.gpkg`` (working CRS) and ``changes.geojson`` (EPSG:4326): change polygons from
  :mod:`change_detection.vectorize`, attributes ``seq``, ``score_mean``, ``score_max``,
  ``area_m2``, ``change_kind``, ``tile_id``, ``run_id``, ``n_px``;
* ``detect.json``: network, weights checksum, threshold, GSDs, tiling, timings per step, counts;
  ``"status": "complete"`` only once everything else is in place.

Work state lives in ``out_dir/.detect-work``: one ``.npy`` per finished tile (probability and
brightness cue, float16) and one GeoTIFF per finished output block. Both are written to a
temporary name and renamed, so a run killed at any moment (even ``kill -9``) resumes where it
stopped and ends with the same output. Memory stays bounded by one block (one tile step high,
about 2,048 px wide), whatever the pair's size.

Tiles run in this process (``workers=1``), on a local Dask cluster of ``workers`` processes, or on
an existing ``dask.distributed`` cluster (``scheduler="tcp://host:port"``; the workers must see the
pair's source images at the same paths). Tasks carry the small pair spec and a window, never the
raster. Local workers each take a lane of columns and save their tiles' results in the work folder
themselves; from a remote cluster results come back tile by tile and are saved here. Either way
blocks are blended and written in windows as their tiles come in.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.shutil
import torch
import torch.nn.functional as F
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from change_detection.errors import (
    EngineError,
    IncompleteOutputError,
    InputError,
    OutOfSpaceError,
    OutputExistsError,
    PairInputError,
    SchedulerError,
)
from change_detection.inference import LogitsFn, logits_padded, logits_tta
from change_detection.vectorize import (
    VectorizeParams,
    binary_mask,
    block_pieces,
    excess_green_change,
    finish_polygons,
    grow_pending,
    halo_px,
    merge_pieces,
)
from change_detection.weights import ChangeModel, load_model
from ingest.align import AlignedPair, PairReader, Tile
from ingest.errors import IngestError
from ingest.raster import GDAL_ENV
from ingest.tiles import TileTask, iter_tiles

log = logging.getLogger(__name__)

FORMAT = "weijian-detect/1"
WORK_DIR = ".detect-work"
PROBA_NAME = "change_proba.tif"
GPKG_NAME = "changes.gpkg"
GEOJSON_NAME = "changes.geojson"
META_NAME = "detect.json"
#: uint8 probability raster: value / SCALE is the probability, NODATA is outside the footprint.
SCALE = 254
NODATA = 255
#: Cue (excess-green change) stored in the work blocks as uint8: 128 + cue * CUE_SCALE.
CUE_SCALE = 40.0
#: Side (px) of the blocks the probability raster is vectorised in.
VECTOR_BLOCK_PX = 2048
#: About the width (px) of the blocks tiles are blended into (a whole number of tile steps).
BLOCK_PX = 2048
#: GDAL settings of the output steps (COG copy, vectorising): a 64 MB block cache. GDAL's cache
#: is process-wide and fills up to its cap while a whole raster streams through it; with the
#: 256 MB of ``GDAL_ENV`` the COG copy's peak RSS grew with the pair up to that cap (+178 MB at
#: 10,000 px, +307 MB at 20,000 px, measured), with 64 MB it is +113 MB at both, as fast.
OUTPUT_GDAL_ENV: dict[str, Any] = {**GDAL_ENV, "GDAL_CACHEMAX": 64 * 1024 * 1024}
#: DEFLATE level of the probability COG: 3 takes 0.50 CPU-s for a 4,096 px pair where GDAL's
#: default (6) takes 1.18, for a file 7 % larger (measured; the pixels are the same).
COG_DEFLATE_LEVEL = 3
#: Dask settings of the local cluster: its housekeeping runs on the same cores as the network.
#: The workers' statistical profiler samples their threads every 10 ms and the memory monitors
#: and event-loop checks run every 20-100 ms by default; slower here (the memory limit stays).
LOCAL_DASK_CONFIG: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.tick.interval": "500ms",
    "distributed.admin.system-monitor.interval": "2s",
}
Engine = Literal["torch", "onnxruntime"]
#: Progress callback: (tiles done, tiles total, pixels done).
ProgressCallback = Callable[[int, int, int], None]


@dataclass
class DetectResult:
    """What :func:`detect_pair` produced.

    ``polygons``: change polygons in the pair's working CRS (metres); ``meta``: the
    ``detect.json`` dictionary; paths of the outputs in ``out_dir``.
    """

    polygons: gpd.GeoDataFrame
    meta: dict[str, Any]
    out_dir: Path

    @property
    def proba_path(self) -> Path:
        """The change-probability COG (uint8, value / 254, nodata 255)."""
        return self.out_dir / PROBA_NAME

    @property
    def gpkg_path(self) -> Path:
        """Change polygons, GeoPackage in the working CRS."""
        return self.out_dir / GPKG_NAME

    @property
    def geojson_path(self) -> Path:
        """Change polygons, GeoJSON in EPSG:4326."""
        return self.out_dir / GEOJSON_NAME

    @property
    def meta_path(self) -> Path:
        """``detect.json``."""
        return self.out_dir / META_NAME

    @property
    def run_id(self) -> str:
        """This detection's identifier (hash of pair, weights and parameters, 16 hex)."""
        return str(self.meta["run_id"])

    @classmethod
    def open(cls, out_dir: str | Path) -> DetectResult:
        """Re-open a finished output folder. Raises :class:`IncompleteOutputError`."""
        out = Path(out_dir)
        meta = read_meta(out)
        if meta is None or meta.get("status") != "complete":
            raise IncompleteOutputError(
                f"{out} holds no complete detection (detect.json missing or not complete): "
                "run `weijian detect` on it again to finish it"
            )
        polygons = gpd.read_file(out / GPKG_NAME)
        return cls(polygons=polygons, meta=meta, out_dir=out)


def read_meta(out_dir: str | Path) -> dict[str, Any] | None:
    """``detect.json`` of ``out_dir`` as a dictionary, or None when absent or unreadable."""
    path = Path(out_dir) / META_NAME
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


# ---------------------------------------------------------------------------------------------
# inputs


def resolve_pair(pair: AlignedPair | str | Path) -> AlignedPair:
    """An :class:`AlignedPair` from itself, a ``pair.json`` path or its folder; sources checked.

    Raises :class:`PairInputError` naming the file and what to do.
    """
    if isinstance(pair, AlignedPair):
        spec = pair
        where = "the aligned pair"
    else:
        path = Path(pair)
        if path.is_dir():
            path = path / "pair.json"
        where = str(path)
        if not path.is_file():
            raise PairInputError(
                f"{path} does not exist: give the folder written by `weijian pair prepare "
                "BEFORE AFTER --out DIR` (it holds pair.json)"
            )
        try:
            spec = AlignedPair.load(path)
        except (ValueError, IngestError, UnicodeDecodeError) as exc:
            raise PairInputError(
                f"{path} is not a readable aligned-pair spec ({exc}): run `weijian pair prepare` "
                "again to rewrite it"
            ) from None
    for epoch in ("before", "after"):
        source = getattr(spec, epoch).source
        if "://" not in source and not source.startswith("/vsi") and not Path(source).exists():
            raise PairInputError(
                f"the {epoch} image {source} named by {where} does not exist: restore it at that "
                "path or prepare the pair again from the images' new location"
            )
        try:
            with rasterio.Env(**GDAL_ENV), rasterio.open(source) as src:
                spec_epoch = getattr(spec, epoch)
                if src.crs is None or max(spec_epoch.bands) > src.count:
                    raise RasterioError("no CRS or fewer bands than when the pair was prepared")
        except RasterioError as exc:
            raise PairInputError(
                f"the {epoch} image {source} named by {where} cannot be read ({exc}): restore an "
                "intact copy (check it with `weijian scene info`) and run again"
            ) from None
    return spec


def _read_tiles(reader: PairReader, tasks: Sequence[TileTask]) -> list[Tile]:
    """Read ``tasks``' windows; a damaged source becomes one clear :class:`PairInputError`."""
    try:
        return [reader.read(t.window) for t in tasks]
    except RasterioError as exc:
        w, pair = tasks[0].window, tasks[0].pair
        raise PairInputError(
            f"reading {pair.before.source} / {pair.after.source} at grid row {int(w.row_off)}, "
            f"column {int(w.col_off)} failed ({exc}): one of them is damaged; restore an intact "
            "copy and run again (finished tiles are kept)"
        ) from None


def weights_checksum(model: ChangeModel) -> str:
    """SHA-256 of the network name and its parameters (float32 bytes, keys sorted)."""
    digest = hashlib.sha256(model.network.encode())
    for key, value in sorted(model.net.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _ensemble_metadata(model: ChangeModel) -> dict[str, Any]:
    """For an ensemble: its size and each member's seed and source file SHA-256 (detect.json)."""
    if model.ensemble_size == 1:
        return {}
    return {
        "ensemble_size": model.ensemble_size,
        "members": [
            {"seed": m.get("seed"), "sha256": m.get("sha256")}
            for m in model.metadata.get("members", [])
        ],
        "built_at": model.metadata.get("built_at"),
    }


def model_bands(model: ChangeModel) -> int:
    """Image bands per epoch the network takes (metadata ``bands``, else its first convolution)."""
    if "bands" in model.metadata:
        return int(model.metadata["bands"])
    for module in model.net.modules():
        if isinstance(module, torch.nn.Conv2d):
            return int(module.in_channels)
    return 3


def full_scale(pair: AlignedPair) -> float:
    """Pixel value meaning full brightness: 255 for uint8, else the 99.9th percentile of samples."""
    if pair.before.dtype == "uint8":
        return 255.0
    from ingest.align import sample_windows

    values = []
    with PairReader(pair) as reader:
        for w in sample_windows(pair):
            tile = reader.read(w)
            values.append(tile.data[:, :, tile.valid].ravel())
    data = np.concatenate(values) if values else np.zeros(1)
    return max(float(np.percentile(data, 99.9)) if data.size else 1.0, 1.0)


# ---------------------------------------------------------------------------------------------
# per-tile inference (runs in this process or on Dask workers)


@dataclass(frozen=True)
class InferSpec:
    """How tiles are turned into probabilities: picklable, shipped with every task."""

    engine: Engine
    scale: float
    resize: float
    tile_px: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    torch_threads: int | None = None
    #: Test-time augmentation: mean of the network over the 8 flips/rotations (8x the cost).
    tta: bool = False


def tile_key(task: TileTask | Tile) -> str:
    """``row_col`` of a tile's top-left pixel on the working grid."""
    w = task.window
    return f"{int(w.row_off)}_{int(w.col_off)}"


def _pad_to(arr: np.ndarray, size: int) -> np.ndarray:
    h, w = arr.shape[-2:]
    if h == size and w == size:
        return arr
    pad = [(0, 0)] * (arr.ndim - 2) + [(0, size - h), (0, size - w)]
    return np.pad(arr, pad, mode="symmetric")


def _network_input(tiles: Sequence[Tile], spec: InferSpec) -> tuple[np.ndarray, np.ndarray]:
    """Normalised float32 ``(N, 3, S, S)`` before and after arrays, tiles padded to ``tile_px``.

    ``(x * 255 / scale - mean) / std`` computed in place, straight into the batch (no stacked
    copy, no temporaries): the same float32 operations in the same order as before, so the
    same values to the bit, in 0.02 instead of 0.06-0.15 CPU-s per 17 tiles of 512 px (measured).
    """
    size, n = spec.tile_px, len(tiles)
    k = np.float32(255.0 / spec.scale)
    mean = np.asarray(spec.mean, np.float32).reshape(3, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(3, 1, 1)
    out = np.empty((2, n, 3, size, size), np.float32)
    for i, t in enumerate(tiles):
        h, w = t.data.shape[-2:]
        for e in (0, 1):
            dst = out[e, i]
            if h == size and w == size:
                np.multiply(t.data[e, :3], k, out=dst)
            else:
                dst[...] = _pad_to(t.data[e, :3], size)
                dst *= k
            dst -= mean
            dst /= std
    return out[0], out[1]


def _torch_logits(model: Any, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """The torch engine's network call (``model``: a :class:`ChangeModel`), logits on the CPU."""
    return logits_padded(model, before.to(model.device), after.to(model.device)).float().cpu()


def _onnx_logits(session: Any, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """The ONNX Runtime engine's network call (``session``: an onnxruntime session)."""
    from change_detection.onnx_engine import onnx_logits

    return torch.from_numpy(onnx_logits(session, before.numpy(), after.numpy()))


def model_proba(model: Any, before: np.ndarray, after: np.ndarray, spec: InferSpec) -> np.ndarray:
    """Change probability ``(N, S, S)`` of normalised inputs, at the network's GSD.

    ``model`` is a :class:`ChangeModel` (engine ``torch``) or an onnxruntime session. When the
    pair's GSD differs from the network's, inputs are resampled (bilinear) by ``spec.resize`` and
    the probabilities resampled back.
    """
    size = before.shape[-1]
    xb, xa = torch.from_numpy(before), torch.from_numpy(after)
    if spec.resize != 1.0:
        net_size = max(16, round(size * spec.resize))
        mode = "bilinear" if spec.resize > 1 else "area"
        xb = F.interpolate(xb, size=(net_size, net_size), mode=mode)
        xa = F.interpolate(xa, size=(net_size, net_size), mode=mode)
    run: LogitsFn = _torch_logits if spec.engine == "torch" else _onnx_logits
    if spec.tta:
        logits = logits_tta(model, xb, xa, logits=run)
    else:
        logits = run(model, xb, xa)
    if spec.resize != 1.0:
        logits = F.interpolate(logits, size=(size, size), mode="bilinear")
    return torch.sigmoid(logits)[:, 0].numpy()


def tile_results(model: Any, tiles: Sequence[Tile], spec: InferSpec) -> list[np.ndarray]:
    """Per tile, float16 ``(2, h, w)``: change probability and excess-green cue, NaN outside."""
    before, after = _network_input(tiles, spec)
    return _tile_parts(model_proba(model, before, after, spec), *_cues(tiles))


def _cues(tiles: Sequence[Tile]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per tile: the excess-green cue (float32) and the valid mask (bool), both ``(h, w)``."""
    return [excess_green_change(t.data[0], t.data[1]) for t in tiles], [t.valid for t in tiles]


def _tile_parts(
    proba: np.ndarray, cues: Sequence[np.ndarray], valids: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """:func:`tile_results` from the network's probabilities ``(N, S, S)`` and :func:`_cues`."""
    out = []
    for i, (cue, valid) in enumerate(zip(cues, valids, strict=True)):
        h, w = cue.shape
        part = np.empty((2, h, w), np.float16)
        part[0] = proba[i, :h, :w]
        part[1] = cue
        part[:, ~valid] = np.nan
        out.append(part)
    return out


_WORKER_STATE: dict[str, Any] = {}


def _worker_reader(pair: AlignedPair) -> PairReader:
    """This worker's open reader of ``pair`` (one pair at a time; compared by value, cheaply)."""
    held = _WORKER_STATE.get("reader")
    if held is not None and held[0] == pair:
        return held[1]
    if held is not None:
        held[1].__exit__(None, None, None)
    reader = PairReader(pair).__enter__()
    _WORKER_STATE["reader"] = (pair, reader)
    return reader


def _worker_model(payload: Any, spec: InferSpec, in_worker: bool = False) -> Any:
    if in_worker and spec.engine == "onnxruntime":
        torch.set_num_threads(1)  # torch only resamples; see _Runner.start_method
    elif spec.torch_threads:
        torch.set_num_threads(spec.torch_threads)
    if spec.engine == "torch":
        return payload
    key = "onnx:" + hashlib.sha256(payload).hexdigest()
    if key not in _WORKER_STATE:
        from change_detection.onnx_engine import onnx_session

        _WORKER_STATE[key] = onnx_session(payload, spec.torch_threads)
    return _WORKER_STATE[key]


def run_batch(
    tasks: Sequence[TileTask], payload: Any, spec: InferSpec, parts_dir: str | None = None
) -> list[tuple[str, np.ndarray | None]]:
    """A Dask task: read ``tasks``' windows and infer them; returns ``(tile key, result)`` pairs.

    ``payload``: the :class:`ChangeModel` (torch) or the ONNX model bytes. The worker keeps one
    open :class:`PairReader` and one ONNX session per process. With ``parts_dir`` (a folder this
    worker shares with the caller: a local cluster) the worker saves each result there itself,
    as the caller would, and returns ``None`` in its place: nothing large travels back.
    """
    reader = _worker_reader(tasks[0].pair)
    tiles = _read_tiles(reader, tasks)
    model = _worker_model(payload, spec, in_worker=True)
    with torch.inference_mode():
        results = tile_results(model, tiles, spec)
    keys = [tile_key(t) for t in tasks]
    if parts_dir is None:
        return list(zip(keys, results, strict=True))
    for key, part in zip(keys, results, strict=True):
        _atomic_save(Path(parts_dir) / f"{key}.npy", part)
    return [(key, None) for key in keys]


# ---------------------------------------------------------------------------------------------
# blending and output blocks


def ramp(length: int, overlap: int) -> np.ndarray:
    """1-D blending weights: linear from ~0 to 1 over ``overlap`` px at both ends, 1 inside."""
    if overlap <= 0:
        return np.ones(length, np.float32)
    i = np.arange(length, dtype=np.float32)
    return np.minimum(1.0, np.minimum(i + 0.5, length - i - 0.5) / overlap).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _ramp_2d(height: int, width: int, overlap: int) -> np.ndarray:
    """A whole tile's float32 blending weights (read-only; the product of the two ramps)."""
    weight = ramp(height, overlap)[:, None] * ramp(width, overlap)
    weight.flags.writeable = False
    return weight


@dataclass
class Plan:
    """Tiles and output blocks of one detection: which tiles each block needs.

    Blocks tile the grid in rows of ``tile - overlap`` px and columns of a whole number of such
    steps (about :data:`BLOCK_PX` wide), row-major, so that blending memory is one block whatever
    the pair's width and height.
    """

    pair: AlignedPair
    tasks: list[TileTask]
    #: ``(row0, row1, col0, col1)`` of every block, row-major.
    blocks: list[tuple[int, int, int, int]]
    block_tiles: list[list[int]]
    tile_last_block: list[int]
    overlap: int

    @classmethod
    def build(
        cls, pair: AlignedPair, tile_px: int, overlap_px: int, block_px: int = BLOCK_PX
    ) -> Plan:
        """All tiles over the common footprint and the blocks they are blended into.

        ``block_px``: about the blocks' width (rounded down to whole tile steps, at least one).
        """
        tasks = list(iter_tiles(pair, tile_px, overlap_px))
        step = tile_px - overlap_px
        block_w = step * max(1, block_px // step)
        row_edges = list(range(0, pair.height, step))
        col_edges = list(range(0, pair.width, block_w))
        blocks = [
            (a, min(a + step, pair.height), c, min(c + block_w, pair.width))
            for a in row_edges
            for c in col_edges
        ]
        n_cols = len(col_edges)
        block_tiles: list[list[int]] = [[] for _ in blocks]
        last = [0] * len(tasks)
        for i, t in enumerate(tasks):
            rows = range(t.row_off // step, (t.row_off + t.height - 1) // step + 1)
            cols = range(t.col_off // block_w, (t.col_off + t.width - 1) // block_w + 1)
            for kr in rows:
                for kc in cols:
                    block_tiles[kr * n_cols + kc].append(i)
                    last[i] = max(last[i], kr * n_cols + kc)
        return cls(pair, tasks, blocks, block_tiles, last, overlap_px)


def _atomic_save(path: Path, array: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # one writer per name, any process
    try:
        with open(tmp, "wb") as fh:  # a plain write: a full disk raises OSError(ENOSPC)
            fh.write(buf.getbuffer())
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def _block_profile(pair: AlignedPair, block: tuple[int, int, int, int]) -> dict[str, Any]:
    """GeoTIFF profile of a work block: pixels only, DEFLATE level 1, band after band.

    The blocks' VRT places and georeferences them; without a CRS of its own a block is written
    in about half the CPU time (PROJ's work per file; measured on the benchmark's blocks).
    """
    r0, r1, c0, c1 = block
    return {
        "driver": "GTiff",
        "width": c1 - c0,
        "height": r1 - r0,
        "count": 2,
        "dtype": "uint8",
        "nodata": NODATA,
        "compress": "DEFLATE",
        "zlevel": 1,
        "predictor": 2,
        "interleave": "band",
        "tiled": False,
        "blockysize": 16,
    }


def assemble_block(plan: Plan, b: int, parts_dir: Path, block_path: Path) -> int:
    """Blend the tiles of block ``b`` (weighted cross-fade), write it atomically as a GeoTIFF.

    Only the part of each tile inside the block is read (memory-mapped ``.npy``), so memory is
    one block (about 2 x 448 x 1,792 float32 for 512 px tiles) whatever the pair's size.
    Returns the number of valid (data) pixels in the block.
    """
    r0b, r1b, c0b, c1b = plan.blocks[b]
    acc = np.zeros((2, r1b - r0b, c1b - c0b), np.float32)
    wsum = np.zeros((r1b - r0b, c1b - c0b), np.float32)
    for i in plan.block_tiles[b]:
        t = plan.tasks[i]
        part = np.load(parts_dir / f"{tile_key(t)}.npy", mmap_mode="r")
        r0, r1 = max(r0b, t.row_off), min(r1b, t.row_off + t.height)
        c0, c1 = max(c0b, t.col_off), min(c1b, t.col_off + t.width)
        rows = slice(r0 - t.row_off, r1 - t.row_off)
        cols = slice(c0 - t.col_off, c1 - t.col_off)
        sub = np.array(part[:, rows, cols])  # float16, only this block's part of the tile
        del part
        weight = _ramp_2d(t.height, t.width, plan.overlap)[rows, cols]
        target = (slice(r0 - r0b, r1 - r0b), slice(c0 - c0b, c1 - c0b))
        bad = np.isnan(sub[0])
        if bad.any():  # outside the valid area: weight 0 (the same float32 operations as below)
            ok = ~bad
            weight = np.where(ok, weight, np.float32(0.0))
            acc[(slice(None), *target)] += np.where(ok, sub, np.float32(0.0)) * weight
        else:  # float16 * float32 is computed in float32, as the float32 copy was
            acc[(slice(None), *target)] += sub * weight
        wsum[target] += weight
    valid = wsum > 0
    all_valid = bool(valid.all())
    with np.errstate(invalid="ignore", divide="ignore"):
        acc /= wsum  # proba and cue, NaN where no tile has data
        acc[0] *= SCALE
        acc[1] *= np.float32(CUE_SCALE)
        acc[1] += np.float32(128.0)
        np.rint(acc, out=acc)
    np.clip(acc[0], 0, SCALE, out=acc[0])
    np.clip(acc[1], 0, 254, out=acc[1])
    out = acc.astype(np.uint8) if all_valid else np.where(valid, acc, NODATA).astype(np.uint8)
    tmp = block_path.with_name(block_path.name + ".tmp.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the VRT georeferences it
        with rasterio.open(tmp, "w", **_block_profile(plan.pair, plan.blocks[b])) as dst:
            dst.write(out)
    os.replace(tmp, block_path)
    return int(valid.sum())


def write_blocks_vrt(plan: Plan, work: Path, path: Path, bands: Sequence[int]) -> Path:
    """A VRT mosaicking the blended blocks (``bands``: which block bands, 1 = probability)."""
    from xml.sax.saxutils import escape

    pair = plan.pair
    gt = pair.affine.to_gdal()
    from pyproj import CRS

    srs = CRS.from_user_input(pair.crs).to_wkt()
    lines = [
        f'<VRTDataset rasterXSize="{pair.width}" rasterYSize="{pair.height}">',
        f"  <SRS>{escape(srs)}</SRS>",
        f"  <GeoTransform>{', '.join(repr(v) for v in gt)}</GeoTransform>",
    ]
    for out_band, src_band in enumerate(bands, start=1):
        desc = "change probability x 254 (255 nodata)" if src_band == 1 else "excess-green cue"
        lines += [
            f'  <VRTRasterBand dataType="Byte" band="{out_band}">',
            f"    <Description>{desc}</Description>",
            f"    <NoDataValue>{NODATA}</NoDataValue>",
        ]
        if src_band == 1:
            lines += [f"    <Scale>{1 / SCALE!r}</Scale>", "    <Offset>0</Offset>"]
        for k, (r0, r1, c0, c1) in enumerate(plan.blocks):
            w, h = c1 - c0, r1 - r0
            lines += [
                "    <ComplexSource>",
                f'      <SourceFilename relativeToVRT="1">{block_name(k)}</SourceFilename>',
                f"      <SourceBand>{src_band}</SourceBand>",
                f'      <SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>',
                f'      <DstRect xOff="{c0}" yOff="{r0}" xSize="{w}" ySize="{h}"/>',
                f"      <NODATA>{NODATA}</NODATA>",
                "    </ComplexSource>",
            ]
        lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    path = work / path.name
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def block_name(k: int) -> str:
    """File name of block ``k``'s blended GeoTIFF in the work folder."""
    return f"block_{k:07d}.tif"


# ---------------------------------------------------------------------------------------------
# running the tiles


class _Runner:
    """Runs batches of tiles in this process or on a Dask cluster, yielding results as they come."""

    def __init__(
        self,
        payload: Any,
        spec: InferSpec,
        workers: int,
        scheduler: str | None,
        timeout_s: float,
        parts_dir: Path | None = None,
    ) -> None:
        self.payload, self.spec = payload, spec
        self.workers, self.scheduler, self.timeout_s = workers, scheduler, timeout_s
        self.parts_dir = parts_dir
        self.client: Any = None
        self.cluster: Any = None
        self._environ: dict[str, str] | None = None

    def __enter__(self) -> _Runner:
        t0 = time.perf_counter()
        self.start_s = 0.0
        if self.scheduler is None and self.workers <= 1:
            return self
        try:
            from distributed import Client
        except ImportError as exc:  # pragma: no cover - dask is a dependency
            raise SchedulerError(f"dask.distributed is not installed ({exc})") from None
        if self.scheduler is not None:
            try:
                self.client = Client(self.scheduler, timeout=self.timeout_s)
            except (OSError, TimeoutError) as exc:
                raise SchedulerError(
                    f"cannot reach the Dask scheduler at {self.scheduler} within "
                    f"{self.timeout_s:g} s ({type(exc).__name__}): check the address and that "
                    "`dask scheduler` is running and reachable from here"
                ) from None
        else:
            import dask

            # Dask's nanny writes its ``pre-spawn-environ`` (MALLOC_TRIM_THRESHOLD_=65536,
            # OMP/MKL/OPENBLAS_NUM_THREADS=1, PYTHONHASHSEED, __DASK_PARENT_PID) into *this*
            # process's os.environ before starting each worker, and leaves it there: every
            # process the caller starts afterwards (a notebook's subprocesses, the benchmark's
            # network-only processes) inherited them; with MALLOC_TRIM_THRESHOLD_ glibc keeps a
            # fixed 128 kB mmap threshold, and the network needed 24 CPU-s instead of 17-20 for
            # the same tiles in such a child (measured, benchmarks/detect.py). Restored after
            # the start and again on exit.
            self._environ = dict(os.environ)
            try:
                self._start_local_cluster(dask)
            finally:
                self._restore_environ()
            self.client = Client(self.cluster)
        self.start_s = time.perf_counter() - t0
        return self

    def _restore_environ(self) -> None:
        """Undo what starting (or restarting) local workers changed in ``os.environ``."""
        saved = self._environ
        if saved is None:
            return
        for key in [k for k in os.environ if k not in saved]:
            del os.environ[key]
        for key, value in saved.items():
            if os.environ.get(key) != value:
                os.environ[key] = value

    def _start_local_cluster(self, dask: Any) -> None:
        from distributed import LocalCluster

        with (
            warnings.catch_warnings(),
            dask.config.set(
                {
                    "distributed.worker.multiprocessing-method": self.start_method,
                    **LOCAL_DASK_CONFIG,
                }
            ),
        ):
            warnings.simplefilter("ignore")
            self.cluster = LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )

    @property
    def start_method(self) -> str:
        """How local workers are started: ``fork`` when safe, else Dask's default (``spawn``).

        A forked worker inherits this process's imported modules (torch, GDAL, onnxruntime), so
        it starts in about a second instead of re-importing them (15-30 s on 2 shared cores,
        measured). It is safe when the worker's torch runs single-threaded: torch's GNU OpenMP
        pool does not survive a fork and hangs a child that uses it with several threads
        (measured). ONNX Runtime workers use torch only for light single-thread steps.
        """
        import dask

        single_thread = self.spec.engine == "onnxruntime" or (self.spec.torch_threads or 0) == 1
        if single_thread and not torch.cuda.is_initialized():  # CUDA does not survive a fork
            return "fork"
        return str(dask.config.get("distributed.worker.multiprocessing-method"))

    def __exit__(self, *exc: object) -> None:
        try:
            if self.client is not None:
                self.client.close()
            if self.cluster is not None:
                self.cluster.close()
        finally:
            self._restore_environ()  # a worker restarted by its nanny wrote them again

    @property
    def slots(self) -> int:
        """Batches kept in flight."""
        if self.client is None:
            return 1
        n = sum(w["nthreads"] for w in self.client.scheduler_info()["workers"].values())
        return max(2, 2 * n)

    def run(
        self, batches: Sequence[list[TileTask]], reader: PairReader | None
    ) -> Iterator[list[tuple[str, np.ndarray | None]]]:
        """Results of ``batches`` (roughly in order; at most :attr:`slots` in flight).

        On a local cluster every worker takes one *lane*, a fixed range of columns of every tile
        row, and saves its results in the shared work folder itself: its reader warps each
        source block once (neighbouring tiles share GDAL's cached blocks) and the tiles do not
        travel back through Dask. On a remote cluster batches go to any worker and results come
        back.
        """
        if self.client is None:
            yield from self._local(batches, reader)
            return
        from distributed import as_completed

        payload = self.client.scatter(self.payload, broadcast=True, hash=False)
        local = self.cluster is not None
        parts_dir = str(self.parts_dir) if local and self.parts_dir is not None else None
        addresses: list[Any] = sorted(self.client.scheduler_info()["workers"]) if local else []
        n_lanes = max(1, len(addresses))
        lanes: list[deque[list[TileTask]]] = [deque() for _ in range(n_lanes)]
        left = [0] * n_lanes  # tiles not yet submitted, per lane
        for batch in batches:
            k = _lane(batch, n_lanes)
            lanes[k].append(batch)
            left[k] += len(batch)
        per_lane = max(1, self.slots // n_lanes)
        pending = as_completed()
        lane_of: dict[str, int] = {}

        def submit(k: int) -> None:
            # A worker whose lane is done takes the last batch of the lane with the most tiles
            # left: lanes are column ranges of equal width, not of equal work (4,096 px, 512 px
            # tiles: 36 and 45 tiles), and the calling process's blending slows one more.
            j = k if lanes[k] else max(range(n_lanes), key=left.__getitem__)
            if not lanes[j]:
                return
            batch = lanes[j].popleft() if j == k else lanes[j].pop()
            left[j] -= len(batch)
            where = {"workers": [addresses[k]], "allow_other_workers": True} if local else {}
            fut = self.client.submit(
                run_batch, batch, payload, self.spec, parts_dir, pure=False, **where
            )
            lane_of[fut.key] = k
            pending.add(fut)

        for k in range(n_lanes):
            for _ in range(per_lane):
                submit(k)
        for fut in pending:
            try:
                result = fut.result()
            except (OSError, RasterioError) as exc:
                if _is_out_of_space(exc):
                    raise
                raise SchedulerError(f"a Dask worker failed on a tile: {exc}") from None
            fut.release()
            submit(lane_of.pop(fut.key))
            yield result

    def _local(
        self, batches: Sequence[list[TileTask]], reader: PairReader | None
    ) -> Iterator[list[tuple[str, np.ndarray | None]]]:
        assert reader is not None
        model = _worker_model(self.payload, self.spec)
        # read the next batch in a thread (GDAL releases the GIL) while this one is inferred.
        # Measured on the idle machine and not kept: a third thread so that the network never
        # waits for the cue, saving and blending (10.51-10.71 s against 10.73-10.80 s at
        # 4,096 px, within the noise) for +86 MB of peak RSS (glibc's arena of one more thread).
        with ThreadPoolExecutor(1) as pool:

            def read(batch: list[TileTask]) -> list[Tile]:
                return _read_tiles(reader, batch)

            future = pool.submit(read, batches[0]) if batches else None
            for i, batch in enumerate(batches):
                assert future is not None
                tiles = future.result()
                future = pool.submit(read, batches[i + 1]) if i + 1 < len(batches) else None
                with torch.inference_mode():
                    results = tile_results(model, tiles, self.spec)
                yield list(zip([tile_key(t) for t in batch], results, strict=True))


def _lane(batch: Sequence[TileTask], n_lanes: int) -> int:
    """Which of ``n_lanes`` equal column ranges of the grid holds the batch's first tile."""
    t = batch[0]
    return min(n_lanes - 1, (t.col_off + t.width // 2) * n_lanes // max(1, t.pair.width))


def _batches(tasks: Sequence[TileTask], size: int) -> list[list[TileTask]]:
    """Consecutive tiles grouped ``size`` at a time, never across tile rows."""
    out: list[list[TileTask]] = []
    for t in tasks:
        if out and len(out[-1]) < size and out[-1][-1].row_off == t.row_off:
            out[-1].append(t)
        else:
            out.append([t])
    return out


# ---------------------------------------------------------------------------------------------
# the pipeline


def _is_out_of_space(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    text = str(exc).lower()
    short_write = "requested and" in text and "written" in text
    return short_write or any(
        m in text for m in ("no space left", "file too large", "disk full", "quota exceeded")
    )


def _progress_bar(total: int, px_total: int) -> tuple[ProgressCallback, Callable[[], None]]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Speed(ProgressColumn):
        def render(self, task: Task) -> Text:
            px = task.fields.get("px", 0)
            elapsed = task.elapsed or 0
            return Text(f"{px / elapsed / 1e6:.2f} Mpx/s" if elapsed > 0 and px else "-- Mpx/s")

    bar = Progress(
        TextColumn("变化检测 tiles"),
        BarColumn(),
        MofNCompleteColumn(),
        Speed(),
        TimeElapsedColumn(),
        TextColumn("剩余 ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    bar.start()
    task = bar.add_task("tiles", total=total, px=0)

    def update(done: int, n: int, px: int) -> None:
        bar.update(task, completed=done, total=n, px=px)

    return update, bar.stop


def _fingerprint(
    pair: AlignedPair, checksum: str, network: str, spec: InferSpec, overlap: int
) -> str:
    blob = json.dumps(
        {
            "pair": pair.to_dict(),
            "weights": checksum,
            "network": network,
            "tile_px": spec.tile_px,
            "overlap_px": overlap,
            "resize": spec.resize,
            "scale": spec.scale,
            "engine": spec.engine,
            "format": FORMAT,
            # only when on, so that the keys of earlier runs (without TTA) stay the same
            **({"tta": True} if spec.tta else {}),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _clear_outputs(out: Path) -> None:
    for name in (PROBA_NAME, GPKG_NAME, GEOJSON_NAME, META_NAME):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)


def _check_out_dir(out: Path, raster_key: str, full_key: str, overwrite: bool) -> str:
    """``fresh``, ``resume`` or ``done`` for ``out``.

    Another run's results are refused, or removed with ``overwrite``; this run's own finished or
    interrupted results are kept either way.
    """
    meta = read_meta(out)
    state_path = out / WORK_DIR / "state.json"
    state = None
    if state_path.is_file():
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except ValueError:
            state = None
    if meta is not None and meta.get("status") == "complete" and meta.get("key") == full_key:
        return "done"
    other = None
    if meta is not None and meta.get("raster_key") != raster_key:
        other = f"of another pair or model ({meta.get('pair_file') or meta.get('network')})"
    elif meta is not None and meta.get("status") == "complete":
        other = "made with other parameters (threshold, minimum area, ...)"
    elif state is not None and state.get("raster_key") != raster_key:
        other = "of an interrupted run on another pair or model"
    elif meta is None and any((out / n).exists() for n in (PROBA_NAME, GPKG_NAME)):
        other = "without a detect.json"
    if other is not None and overwrite:
        _clear_outputs(out)
        return "fresh"
    if other is not None:
        raise OutputExistsError(
            f"{out} already holds detection results {other}: choose another --out folder or "
            "pass --overwrite (overwrite=True) to replace them"
        )
    return "resume" if state is not None else "fresh"


def detect_pair(
    pair: AlignedPair | str | Path,
    model: ChangeModel | str | Path | None,
    out_dir: str | Path,
    *,
    threshold: float | None = None,
    min_area_m2: float | None = None,
    tile_px: int = 512,
    overlap_px: int = 64,
    batch_size: int = 2,
    workers: int = 1,
    scheduler: str | None = None,
    engine: Engine = "torch",
    overwrite: bool = False,
    progress: bool | ProgressCallback = True,
    vectorize: VectorizeParams | None = None,
    scheduler_timeout_s: float = 10.0,
    tta: bool = False,
) -> DetectResult:
    """Detect changes over a whole aligned pair and write the outputs in ``out_dir``.

    Args:
        pair: an :class:`ingest.AlignedPair`, a ``pair.json`` path or the folder holding it.
        model: a loaded :class:`ChangeModel`, a network name or weights path (``None``: shipped
            default), see :func:`change_detection.load_model`.
        out_dir: output folder (created); see the module docstring for its contents.
        threshold: change-probability cut; default the weights' own (``model.threshold``).
        min_area_m2: smallest polygon kept, m²; default ``vectorize.min_area_m2`` (10 m²).
        tile_px: tile side in working-grid pixels.
        overlap_px: overlap of neighbouring tiles, working-grid pixels.
        batch_size: tiles per network call.
        workers: local worker processes (1: this process; more: a local Dask cluster). Torch
            threads per worker are set so that workers x threads <= the machine's cores.
        scheduler: ``tcp://host:port`` of an existing Dask scheduler (overrides ``workers``).
        engine: ``torch`` or ``onnxruntime`` (the network exported to ONNX).
        overwrite: replace another run's results in ``out_dir`` instead of refusing.
        progress: True for a progress bar on stderr, or a callback (done, total, pixels).
        vectorize: post-processing parameters (:class:`VectorizeParams`).
        scheduler_timeout_s: how long to try reaching ``scheduler``.
        tta: test-time augmentation, in either engine: the network's mean over the eight
            flips/rotations of every tile (8x the network's cost).

    Returns:
        A :class:`DetectResult` (polygons in the pair's working CRS, metadata, paths). A finished
        identical run in ``out_dir`` is returned as is; an interrupted one is resumed.

    Raises:
        PairInputError, InputError (bands), OutputExistsError, SchedulerError, OutOfSpaceError,
        EngineError.
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    spec_pair = resolve_pair(pair)
    pair_file = None if isinstance(pair, AlignedPair) else str(Path(pair).resolve())
    if isinstance(model, ChangeModel):
        cmodel = model
    else:
        cmodel = load_model(model, device="cpu" if engine == "onnxruntime" else "auto")
    if spec_pair.band_count != model_bands(cmodel):
        raise InputError(
            f"the pair has {spec_pair.band_count} bands per epoch but the {cmodel.network} weights "
            f"take {model_bands(cmodel)} (RGB): prepare the pair from RGB images (e.g. "
            "`gdal_translate -b 1 -b 2 -b 3 IN OUT`) or use weights trained on these bands"
        )
    if tile_px < 32 or not 0 <= overlap_px < tile_px // 2:
        raise InputError(
            f"tile {tile_px} px with overlap {overlap_px} px: need tile_px >= 32 and "
            "0 <= overlap_px < tile_px / 2"
        )
    params = (vectorize or VectorizeParams()).with_(
        threshold=cmodel.threshold if threshold is None and vectorize is None else threshold,
        min_area_m2=min_area_m2,
    )
    if params.cores and params.core_threshold <= params.threshold:
        raise InputError(
            f"core threshold {params.core_threshold:g} is not above the threshold "
            f"{params.threshold:g}: a core must be more confident than the cut; raise "
            "detection.core_threshold (e.g. 0.7) or set it to 0 (no seeded cores)"
        )
    plan = Plan.build(spec_pair, tile_px, overlap_px)
    if not plan.tasks:
        raise PairInputError(
            "the pair has no common valid area (no tile of the working grid lies in both "
            "epochs' valid footprint): check the images cover the same ground, then run "
            "`weijian pair prepare` again"
        )
    cores = os.cpu_count() or 1
    n_workers = max(1, workers)
    checksum = weights_checksum(cmodel)
    payload: Any = cmodel
    if engine == "onnxruntime":
        from change_detection.onnx_engine import export_onnx

        payload = export_onnx(cmodel)
    elif engine != "torch":
        raise EngineError(f"unknown engine {engine!r}: use torch or onnxruntime")
    spec = InferSpec(
        engine=engine,
        scale=full_scale(spec_pair),
        resize=spec_pair.gsd_m / cmodel.gsd_m
        if abs(spec_pair.gsd_m / cmodel.gsd_m - 1) > 0.01
        else 1.0,
        tile_px=tile_px,
        mean=tuple(cmodel.mean),
        std=tuple(cmodel.std),
        torch_threads=None if scheduler else max(1, cores // n_workers),
        tta=tta,
    )
    raster_key = _fingerprint(spec_pair, checksum, cmodel.network, spec, overlap_px)
    full_key = hashlib.sha256(
        (raster_key + json.dumps(params.to_dict(), sort_keys=True)).encode()
    ).hexdigest()
    run_id = full_key[:16]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    status = _check_out_dir(out, raster_key, full_key, overwrite)
    if status == "done":
        log.info("detect: %s already holds this run's complete results; nothing recomputed", out)
        return DetectResult.open(out)
    work = out / WORK_DIR
    parts_dir = work / "tiles"
    parts_dir.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "status": "incomplete",
        "run_id": run_id,
        "key": full_key,
        "raster_key": raster_key,
        "pair_file": pair_file,
        "pair": spec_pair.to_dict(),
        "crs": spec_pair.crs,
        "network": cmodel.network,
        "weights_checksum": checksum,
        "weights_metadata": {
            k: cmodel.metadata.get(k) for k in ("code_version", "trained_at", "epoch", "threshold")
        }
        | _ensemble_metadata(cmodel),
        "engine": engine,
        "tta": tta,
        "threshold": params.threshold,
        "threshold_source": "weights" if threshold is None and vectorize is None else "given",
        "pair_gsd_m": spec_pair.gsd_m,
        "network_gsd_m": cmodel.gsd_m,
        "resampled_for_network": spec.resize != 1.0,
        "pixel_full_scale": spec.scale,
        "tile_px": tile_px,
        "overlap_px": overlap_px,
        "batch_size": batch_size,
        "blending": "linear cross-fade over the overlap, normalised by the summed weights",
        "vectorize": params.to_dict(),
        "proba_encoding": {"dtype": "uint8", "scale": 1 / SCALE, "nodata": NODATA},
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    state_path = work / "state.json"
    try:
        _write_json(out / META_NAME, meta)
        if status == "fresh":
            _write_json(state_path, {"raster_key": raster_key, "run_id": run_id})
        timings["open"] = time.perf_counter() - t_start
        log.info(
            "detect: step open %.2f s (%d tiles, %s)", timings["open"], len(plan.tasks), status
        )

        t0 = time.perf_counter()
        counts = _infer_and_blend(
            plan,
            parts_dir,
            work,
            payload,
            spec,
            batch_size=batch_size,
            workers=n_workers,
            scheduler=scheduler,
            timeout_s=scheduler_timeout_s,
            progress=progress,
        )
        timings["infer_blend"] = time.perf_counter() - t0
        timings["cluster_start"] = counts.pop("cluster_start_s")  # included in infer_blend
        log.info(
            "detect: step infer+blend %.2f s (%d tiles computed, %d resumed)",
            timings["infer_blend"],
            counts["computed"],
            counts["resumed"],
        )

        blocks_vrt = write_blocks_vrt(plan, work, work / "blocks.vrt", bands=(1, 2))
        proba_vrt = write_blocks_vrt(plan, work, work / "proba.vrt", bands=(1,))
        tmp_cog = work / "change_proba.cog.tif"
        cog_threads = max(1, spec.torch_threads or 1)
        # The COG (GDAL, which releases the GIL) is written in a thread while the polygons are
        # computed: the workers are done, so both cores are free for this last step.
        with ThreadPoolExecutor(1) as pool:
            cog = pool.submit(_write_cog, proba_vrt, tmp_cog, spec_pair, cog_threads)
            t0 = time.perf_counter()
            records = vectorize_blocks(plan, blocks_vrt, params)
            frame = _frame(records, spec_pair, plan, run_id)
            timings["vectorize"] = time.perf_counter() - t0
            timings["cog"] = cog.result()
        log.info("detect: step cog %.2f s (at the same time as vectorize)", timings["cog"])
        log.info("detect: step vectorize %.2f s (%d polygons)", timings["vectorize"], len(frame))

        t0 = time.perf_counter()
        tmp_gpkg, tmp_json = work / GPKG_NAME, work / GEOJSON_NAME
        for p in (tmp_gpkg, tmp_json):
            p.unlink(missing_ok=True)
        frame.to_file(tmp_gpkg, driver="GPKG", layer="changes")
        frame.to_crs("EPSG:4326").to_file(tmp_json, driver="GeoJSON")
        os.replace(tmp_cog, out / PROBA_NAME)
        os.replace(tmp_gpkg, out / GPKG_NAME)
        os.replace(tmp_json, out / GEOJSON_NAME)
        timings["write"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_start
        px = sum(t.width * t.height for t in plan.tasks)
        meta.update(
            {
                "status": "complete",
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "timings_s": timings,
                "counts": {
                    "tiles": len(plan.tasks),
                    "tiles_computed": counts["computed"],
                    "tiles_resumed": counts["resumed"],
                    "grid_px": spec_pair.width * spec_pair.height,
                    "tile_px_total": px,
                    "valid_px": counts["valid_px"],
                    "polygons": len(frame),
                    "by_change_kind": {
                        str(k): int(v) for k, v in frame["change_kind"].value_counts().items()
                    },
                },
                "throughput_mpx_s": spec_pair.width * spec_pair.height / timings["total"] / 1e6,
                "outputs": {"proba": PROBA_NAME, "gpkg": GPKG_NAME, "geojson": GEOJSON_NAME},
            }
        )
        _write_json(out / META_NAME, meta)
    except (OSError, RasterioError) as exc:
        if not _is_out_of_space(exc):
            raise
        for name in (PROBA_NAME, GPKG_NAME, GEOJSON_NAME):
            (out / name).unlink(missing_ok=True)
        for tmp in work.glob("*.tmp*"):
            tmp.unlink(missing_ok=True)
        raise OutOfSpaceError(
            f"out of disk space while writing {out} ({exc}): partial outputs were removed and "
            f"detect.json says incomplete; free space (finished tiles in {work} are kept) and "
            "run the same command again to resume"
        ) from None
    shutil.rmtree(work, ignore_errors=True)
    log.info("detect: done in %.2f s, %d polygons -> %s", timings["total"], len(frame), out)
    return DetectResult(polygons=frame, meta=meta, out_dir=out)


def _write_cog(vrt: Path, path: Path, pair: AlignedPair, threads: int) -> float:
    """Copy the probability VRT to a COG at ``path`` (overviews, DEFLATE); returns seconds."""
    t0 = time.perf_counter()
    with rasterio.Env(**OUTPUT_GDAL_ENV, GDAL_NUM_THREADS=str(threads)):
        rasterio.shutil.copy(
            vrt,
            path,
            driver="COG",
            compress="DEFLATE",
            predictor="YES",
            overviews="AUTO",
            resampling="AVERAGE",
            blocksize=512 if max(pair.width, pair.height) > 2048 else 256,
            bigtiff="IF_SAFER",
            level=COG_DEFLATE_LEVEL,
        )
    return time.perf_counter() - t0


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _infer_and_blend(
    plan: Plan,
    parts_dir: Path,
    work: Path,
    payload: Any,
    spec: InferSpec,
    *,
    batch_size: int,
    workers: int,
    scheduler: str | None,
    timeout_s: float,
    progress: bool | ProgressCallback,
) -> dict[str, Any]:
    """Run the missing tiles, write every block as soon as its tiles are in; resumable."""
    n_blocks = len(plan.blocks)
    block_done = [(work / block_name(k)).is_file() for k in range(n_blocks)]
    needed = sorted({i for k in range(n_blocks) if not block_done[k] for i in plan.block_tiles[k]})
    have = {i for i in needed if (parts_dir / f"{tile_key(plan.tasks[i])}.npy").is_file()}
    todo = [plan.tasks[i] for i in needed if i not in have]
    total = len(plan.tasks)
    done = total - len(todo)
    key_index = {tile_key(t): i for i, t in enumerate(plan.tasks)}
    present = [False] * total
    for i in range(total):
        present[i] = i not in needed or i in have
    px_done = 0
    update: ProgressCallback | None
    stop: Callable[[], None] | None = None
    if progress is True:
        update, stop = _progress_bar(total, sum(t.width * t.height for t in plan.tasks))
    elif callable(progress):
        update = progress
    else:
        update = None
    next_block = 0
    valid_px = 0
    cluster_start_s = 0.0

    def advance() -> None:
        """Blend and write the blocks, in row-major order, whose tiles are all in."""
        nonlocal next_block, valid_px
        while next_block < n_blocks:
            k = next_block
            if not block_done[k]:
                if not all(present[i] for i in plan.block_tiles[k]):
                    return
                valid_px += assemble_block(plan, k, parts_dir, work / block_name(k))
                block_done[k] = True
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)
                    with rasterio.open(work / block_name(k)) as src:
                        valid_px += int((src.read(1) != NODATA).sum())
            for i in plan.block_tiles[k]:
                if plan.tile_last_block[i] == k:
                    (parts_dir / f"{tile_key(plan.tasks[i])}.npy").unlink(missing_ok=True)
            next_block += 1

    try:
        if update:
            update(done, total, px_done)
        advance()
        batches = _batches(todo, max(1, batch_size))
        with (
            _Runner(payload, spec, workers, scheduler, timeout_s, parts_dir) as runner,
            PairReader(plan.pair) as reader,
        ):
            cluster_start_s = runner.start_s
            for results in runner.run(batches, reader if runner.client is None else None):
                for key, part in results:
                    if part is not None:  # else the (local) worker saved it already
                        _atomic_save(parts_dir / f"{key}.npy", part)
                    i = key_index[key]
                    present[i] = True
                    done += 1
                    px_done += plan.tasks[i].width * plan.tasks[i].height
                if update:
                    update(done, total, px_done)
                advance()
        advance()
    finally:
        if stop:
            stop()
    if next_block < n_blocks:  # pragma: no cover - every tile was computed above
        raise RuntimeError("not every block of the probability raster could be assembled")
    return {
        "computed": len(todo),
        "resumed": total - len(todo),
        "valid_px": valid_px,
        "cluster_start_s": cluster_start_s,
    }


def vectorize_blocks(plan: Plan, vrt: Path, params: VectorizeParams) -> list[dict[str, Any]]:
    """Change polygons of the whole grid, computed in blocks with a halo, merged across blocks."""
    pair = plan.pair
    halo = halo_px(params)
    pieces = []
    with rasterio.Env(**OUTPUT_GDAL_ENV), rasterio.open(vrt) as src:
        for r0 in range(0, pair.height, VECTOR_BLOCK_PX):
            for c0 in range(0, pair.width, VECTOR_BLOCK_PX):
                r1, c1 = (
                    min(r0 + VECTOR_BLOCK_PX, pair.height),
                    min(c0 + VECTOR_BLOCK_PX, pair.width),
                )
                R0, C0 = max(0, r0 - halo), max(0, c0 - halo)
                R1, C1 = min(pair.height, r1 + halo), min(pair.width, c1 + halo)
                arr = src.read(window=Window(C0, R0, C1 - C0, R1 - R0))
                valid = arr[0] != NODATA
                # the stored probabilities only rise with the value: a block whose highest valid
                # value stays below the threshold has no changed pixel (nothing to vectorise)
                top = np.max(arr[0], where=valid, initial=0)
                cut = params.mask_threshold
                if (
                    not valid.any()
                    or not binary_mask(np.array([top], np.float32) / SCALE, cut).any()
                ):
                    continue
                proba = np.where(valid, arr[0].astype(np.float32) / SCALE, np.nan)
                cue = (arr[1].astype(np.float32) - 128.0) / CUE_SCALE
                pieces += block_pieces(
                    proba,
                    valid,
                    cue,
                    params,
                    core=(slice(r0 - R0, r1 - R0), slice(c0 - C0, c1 - C0)),
                    offset=(c0, r0),
                    interior_edges=(r0 > 0, r1 < pair.height, c0 > 0, c1 < pair.width),
                    gsd_m=pair.gsd_m,
                )
        pieces = merge_pieces(pieces)
        if params.cores:

            def read(row0: int, row1: int, col0: int, col1: int) -> tuple[np.ndarray, np.ndarray]:
                arr = src.read(window=Window(col0, row0, col1 - col0, row1 - row0))
                valid = arr[0] != NODATA
                proba = np.where(valid, arr[0].astype(np.float32) / SCALE, np.nan)
                return proba, (arr[1].astype(np.float32) - 128.0) / CUE_SCALE

            # regions crossing block borders, merged: grown once, whole, on their own box
            pieces = grow_pending(pieces, read, params, pair.gsd_m)
    return finish_polygons(pieces, pair.affine, params, footprint=pair.footprint)


def _frame(
    records: list[dict[str, Any]], pair: AlignedPair, plan: Plan, run_id: str
) -> gpd.GeoDataFrame:
    step = plan.tasks[0].width - plan.overlap if plan.tasks else 1
    inv = ~pair.affine
    tile_ids = []
    for r in records:
        c = r["geometry"].centroid
        col, row = inv @ (c.x, c.y)
        tr = int(max(0, min(row, pair.height - 1)) // max(step, 1)) * step
        tc = int(max(0, min(col, pair.width - 1)) // max(step, 1)) * step
        tile_ids.append(f"{tr}_{tc}")
    frame = gpd.GeoDataFrame(
        {
            "seq": np.arange(1, len(records) + 1, dtype=np.int64),
            "score_mean": [r["score_mean"] for r in records],
            "score_max": [r["score_max"] for r in records],
            "area_m2": [r["area_m2"] for r in records],
            "change_kind": [r["change_kind"] for r in records],
            "tile_id": tile_ids,
            "run_id": [run_id] * len(records),
            "n_px": [r["n_px"] for r in records],
        },
        geometry=[r["geometry"] for r in records],
        crs=pair.crs,
    )
    return frame


__all__ = [
    "DetectResult",
    "InferSpec",
    "Plan",
    "VectorizeParams",
    "detect_pair",
    "model_proba",
    "read_meta",
    "resolve_pair",
    "run_batch",
    "tile_results",
    "weights_checksum",
]
