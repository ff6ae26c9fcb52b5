"""Aligning a pair of scenes onto one working grid, lazily.

Why ~600 lines: the pair spec, its reader and ``prepare_pair`` change together (the spec is what
``pair.json`` stores and the reader replays); co-registration and radiometry are already apart.

:func:`prepare_pair` validates and describes both images, builds the working grid (working CRS,
working GSD, snapped to multiples of the GSD, over the intersection of the valid footprints),
estimates and checks the co-registration shift and the histogram-matching tables, and returns an
:class:`AlignedPair`: a small JSON-serialisable spec. Pixels are only produced on demand by
:class:`PairReader`, through one ``WarpedVRT`` per epoch (``average`` resampling when an epoch is
downsampled, ``bilinear`` otherwise). The shift is applied by moving the later epoch's grid origin,
so the later image is resampled once.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from shapely import box, wkt
from shapely.geometry.base import BaseGeometry

from ingest.coregister import (
    MIN_AGREEING,
    MIN_CONFIDENCE,
    MIN_PEAK_Z,
    TOLERANCE_PX,
    Model,
    ShiftEstimate,
    estimate_shift,
)
from ingest.errors import (
    BandMismatchError,
    CoregistrationWarning,
    InsufficientOverlapError,
    NoOverlapError,
    PairSpecError,
    ShiftTooLargeError,
)
from ingest.radiometry import HistogramTables, apply_histogram, histogram_tables, lookup_tables
from ingest.raster import GDAL_ENV, projected_metres_crs
from ingest.scene import Scene, check_plausible_bounds, describe_scene

Epoch = Literal["before", "after"]
#: Progress callback: (step name, done, total).
Progress = Callable[[str, int, int], None]
#: Largest side (px) and most per side of the sample blocks used for co-registration and
#: histograms. Smaller images get blocks of a quarter of their side (at least 64 px), 4 per side.
SAMPLE_TILE_PX = 256
MIN_SAMPLE_TILE_PX = 64
SAMPLES_PER_SIDE = 8
PAIR_SPEC_VERSION = 1
#: Co-registration models, as recorded in ``report.json`` (those ``estimate_shift`` chooses from).
CoregistrationModel = Model


@dataclass(frozen=True)
class EpochSpec:
    """How one epoch is read onto the working grid."""

    source: str
    bands: tuple[int, ...]
    dtype: str
    gsd_m: float
    resampling: Literal["average", "bilinear"]
    has_alpha: bool
    acquired: str | None = None


@dataclass(frozen=True)
class Coregistration:
    """What co-registration estimated and what was applied to the later epoch.

    ``model_applied`` is "none" (georeference kept as is), "translation" or "affine". The
    estimate (``estimated_dx_m``/``estimated_dy_m``, metres east/north, the model's displacement
    at the centre of the agreeing blocks) is kept even when it was not applied. ``confidence`` is
    the share of the blocks with a clear correlation peak that agree with the model (0..1); blocks
    over changed ground have no clear peak and do not count. ``residual_px`` the root-mean-
    square distance of the agreeing blocks' shifts to the model, working-grid pixels.
    ``affine_px`` (a0, a1, a2, b0, b1, b2): a feature at working-grid pixel (col, row) of the
    earlier epoch appears in the later one displaced by ``a0 + a1*col + a2*row`` columns and
    ``b0 + b1*col + b2*row`` rows (down); None for a translation.
    """

    model_applied: CoregistrationModel
    model_estimated: CoregistrationModel
    confident: bool
    confidence: float
    blocks_tried: int
    blocks_textured: int
    blocks_peaked: int
    blocks_agreeing: int
    estimated_dx_m: float
    estimated_dy_m: float
    residual_px: float | None
    spread_px: float | None
    block_px: int
    min_blocks: int
    min_confidence: float
    min_peak_z: float
    tolerance_px: float
    affine_px: tuple[float, float, float, float, float, float] | None = None
    message: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Coregistration:
        """Rebuild from ``asdict`` output."""
        aff = d.get("affine_px")
        return cls(**{**d, "affine_px": tuple(aff) if aff is not None else None})


@dataclass(frozen=True)
class AlignedPair:
    """An image pair aligned on one working grid: a small, picklable, JSON-serialisable spec.

    ``transform`` (affine order a, b, c, d, e, f; not GDAL order) maps working-grid pixels to
    ``crs`` coordinates in metres. ``shift_m`` = (dx east, dy north): the later epoch's
    content was displaced by this much relative to the earlier one and is read back shifted by it.
    ``overlap_fraction`` is the common valid area over the smaller footprint; ``valid_fraction``
    the common valid area over the grid area; ``footprint_wkt`` the common valid area (working CRS).
    """

    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    gsd_m: float
    before: EpochSpec
    after: EpochSpec
    shift_m: tuple[float, float] = (0.0, 0.0)
    shift_tiles_used: int = 0
    overlap_fraction: float = 1.0
    valid_fraction: float = 1.0
    footprint_wkt: str = ""
    histogram: HistogramTables | None = None
    version: int = PAIR_SPEC_VERSION
    coregistration: Coregistration | None = None

    @property
    def affine(self) -> Affine:
        """Working-grid transform."""
        return Affine(*self.transform)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the working grid, metres in ``crs``."""
        left, top = self.transform[2], self.transform[5]
        return left, top - self.height * self.gsd_m, left + self.width * self.gsd_m, top

    @property
    def footprint(self) -> BaseGeometry:
        """Common valid area, working CRS."""
        return wkt.loads(self.footprint_wkt) if self.footprint_wkt else box(*self.bounds)

    @property
    def band_count(self) -> int:
        """Bands per epoch in every tile."""
        return len(self.before.bands)

    def epoch_transform(self, epoch: Epoch) -> Affine:
        """Grid transform used to read ``epoch``: the later one's origin is moved by the shift."""
        if epoch == "before":
            return self.affine
        c = self.coregistration
        if c is not None and c.model_applied == "affine" and c.affine_px is not None:
            a0, a1, a2, b0, b1, b2 = c.affine_px
            # working pixel p is read where its content lies in the later epoch: p + d(p)
            return self.affine @ Affine(1 + a1, a2, a0, b1, 1 + b2, b0)
        dx, dy = self.shift_m
        return Affine.translation(dx, dy) @ self.affine

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)

    def to_json(self, **kwargs: Any) -> str:
        """JSON text of the spec (re-open with :meth:`from_json`)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, **kwargs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AlignedPair:
        """Rebuild from :meth:`to_dict` output. Raises :class:`PairSpecError`."""
        try:
            if d.get("version") != PAIR_SPEC_VERSION:
                raise ValueError(f"version {d.get('version')!r} is not {PAIR_SPEC_VERSION}")
            epochs = {
                k: EpochSpec(**{**d[k], "bands": tuple(d[k]["bands"])}) for k in ("before", "after")
            }
            hist = [(list(a), list(b)) for a, b in d["histogram"]] if d.get("histogram") else None
            coreg = d.get("coregistration")
            return cls(
                **{
                    **d,
                    **epochs,
                    "transform": tuple(d["transform"]),
                    "shift_m": tuple(d["shift_m"]),
                    "histogram": hist,
                    "coregistration": Coregistration.from_dict(coreg) if coreg else None,
                }
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PairSpecError(
                f"not a weijian aligned-pair spec ({exc}): run `weijian pair prepare` again"
            ) from exc

    @classmethod
    def from_json(cls, text: str) -> AlignedPair:
        """Rebuild from :meth:`to_json` output."""
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> Path:
        """Write the spec as JSON; return the path."""
        path = Path(path)
        path.write_text(self.to_json(indent=2), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> AlignedPair:
        """Read a spec written by :meth:`save`."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


@dataclass
class Tile:
    """One window of an aligned pair.

    ``data`` is float32 (2, bands, h, w): index 0 the earlier epoch, 1 the later one (histogram-
    matched when the pair has tables). ``masks`` is bool (2, h, w), True where each epoch is valid;
    ``transform`` maps the tile's pixels to working-CRS metres.
    """

    window: Window
    transform: Affine
    data: np.ndarray
    masks: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """(h, w) bool: valid in both epochs."""
        return np.asarray(self.masks.all(axis=0))


class PairReader:
    """Reads windows of an :class:`AlignedPair` (open once, read many; one per thread/process)."""

    def __init__(self, pair: AlignedPair, *, histogram_match: bool = True) -> None:
        self.pair = pair
        self.histogram_match = histogram_match
        self._env: rasterio.Env | None = None
        self._open: list[Any] = []
        self._vrts: dict[str, WarpedVRT] = {}
        self._luts: list[np.ndarray] | None = None

    def __enter__(self) -> Self:
        self._env = rasterio.Env(**GDAL_ENV)
        self._env.__enter__()
        for epoch in ("before", "after"):
            spec: EpochSpec = getattr(self.pair, epoch)
            src = rasterio.open(spec.source)
            self._open.append(src)
            self._vrts[epoch] = WarpedVRT(
                src,
                crs=self.pair.crs,
                transform=self.pair.epoch_transform(epoch),
                width=self.pair.width,
                height=self.pair.height,
                resampling=Resampling[spec.resampling],
                add_alpha=not spec.has_alpha,
                warp_mem_limit=64,
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for vrt in self._vrts.values():
            vrt.close()
        for src in self._open:
            src.close()
        self._vrts.clear()
        self._open.clear()
        if self._env is not None:
            self._env.__exit__(exc_type, exc, tb)
            self._env = None

    def read_epoch(self, epoch: Epoch, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """(bands, h, w) data in the source's data type and (h, w) bool mask of one epoch."""
        vrt = self._vrts[epoch]
        spec: EpochSpec = getattr(self.pair, epoch)
        # one warp per window: image bands and the alpha (validity) band in the same read
        arr = vrt.read([*spec.bands, vrt.count], window=window)
        return arr[:-1], arr[-1] > 0

    def read(self, window: Window) -> Tile:
        """Both epochs of one window, with the later one histogram-matched if the pair says so."""
        window = Window(
            *(int(v) for v in (window.col_off, window.row_off, window.width, window.height))
        )
        before, mb = self.read_epoch("before", window)
        after, ma = self.read_epoch("after", window)
        data = np.empty((2, *before.shape), dtype=np.float32)
        data[0] = before
        if self.histogram_match and self.pair.histogram:
            if self._luts is None:
                self._luts = lookup_tables(self.pair.histogram, self.pair.after.dtype) or []
            data[1] = apply_histogram(after, self.pair.histogram, self._luts or None)
        else:
            data[1] = after
        data[0][:, ~mb] = 0
        data[1][:, ~ma] = 0
        return Tile(
            window=window,
            transform=self.pair.affine @ Affine.translation(window.col_off, window.row_off),
            data=data,
            masks=np.stack([mb, ma]),
        )


def match_bands(before: Scene, after: Scene) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Band indexes to read from each epoch so that they correspond one to one.

    Equal band counts pair in order; otherwise red, green and blue are paired by colour
    interpretation when both have them. Raises :class:`BandMismatchError`.
    """
    if len(before.bands) == len(after.bands):
        return before.bands, after.bands
    rgb = ("red", "green", "blue")
    if all(c in before.colorinterp for c in rgb) and all(c in after.colorinterp for c in rgb):

        def pick(s: Scene) -> tuple[int, ...]:
            return tuple(s.bands[s.colorinterp.index(c)] for c in rgb)

        return pick(before), pick(after)
    raise BandMismatchError(
        f"{before.path} has {len(before.bands)} image bands and {after.path} has "
        f"{len(after.bands)}, "
        "and they are not both tagged red/green/blue: export both epochs with the same bands "
        "(e.g. `gdal_translate -b 1 -b 2 -b 3 IN OUT`)"
    )


def working_grid(area: BaseGeometry, gsd_m: float) -> tuple[Affine, int, int]:
    """North-up grid over ``area``'s bounds, origin snapped outwards to multiples of ``gsd_m``."""
    minx, miny, maxx, maxy = area.bounds
    left, top = math.floor(minx / gsd_m) * gsd_m, math.ceil(maxy / gsd_m) * gsd_m
    width = max(1, math.ceil(round((maxx - left) / gsd_m, 6)))
    height = max(1, math.ceil(round((top - miny) / gsd_m, 6)))
    return Affine(gsd_m, 0.0, left, 0.0, -gsd_m, top), width, height


def window_box(window: Window, transform: Affine) -> BaseGeometry:
    """The window's rectangle in the grid's CRS (north-up grids)."""
    left, top = (
        transform.c + window.col_off * transform.a,
        transform.f + window.row_off * transform.e,
    )
    right, bottom = left + window.width * transform.a, top + window.height * transform.e
    return box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))


def sample_block_px(width: int, height: int) -> int:
    """Side (px) of the co-registration sample blocks for a grid of ``width`` x ``height`` px.

    A quarter of the shorter side, between :data:`MIN_SAMPLE_TILE_PX` and :data:`SAMPLE_TILE_PX`
    (never more than the grid).
    """
    side = min(width, height)
    return min(side, max(MIN_SAMPLE_TILE_PX, min(SAMPLE_TILE_PX, side // 4)))


def sample_windows(
    pair: AlignedPair, size: int | None = None, per_side: int = SAMPLES_PER_SIDE
) -> list[Window]:
    """Non-overlapping blocks spread regularly over the common footprint (up to ``per_side``²).

    ``size`` defaults to :func:`sample_block_px`; as many blocks per side as fit, at most
    ``per_side``, evenly spaced.
    """
    size = min(size or sample_block_px(pair.width, pair.height), pair.width, pair.height)
    fp = pair.footprint
    n_cols = max(1, min(per_side, pair.width // size))
    n_rows = max(1, min(per_side, pair.height // size))
    out: dict[tuple[int, int], Window] = {}
    for j in range(n_rows):
        for i in range(n_cols):
            col = round((pair.width - size) * i / (n_cols - 1)) if n_cols > 1 else 0
            row = round((pair.height - size) * j / (n_rows - 1)) if n_rows > 1 else 0
            col = col if n_cols > 1 else (pair.width - size) // 2
            row = row if n_rows > 1 else (pair.height - size) // 2
            w = Window(col, row, size, size)
            if fp.intersects(window_box(w, pair.affine)):
                out[(col, row)] = w
    return list(out.values())


def _apply_estimate(
    pair: AlignedPair,
    est: ShiftEstimate,
    windows: list[Window],
    max_shift_m: float,
    min_blocks: int,
    min_confidence: float,
) -> AlignedPair:
    """Record the estimate; apply it when confident, refuse when a confident shift is too large."""
    gsd = pair.gsd_m
    block_px = int(windows[0].width) if windows else 0
    record = Coregistration(
        model_applied="none",
        model_estimated=est.model,
        confident=est.confident,
        confidence=est.confidence,
        blocks_tried=est.tiles_tried,
        blocks_textured=est.blocks_textured,
        blocks_peaked=est.blocks_peaked,
        blocks_agreeing=est.tiles_used,
        estimated_dx_m=est.dx_px * gsd,
        estimated_dy_m=est.dy_px * gsd,
        residual_px=None if math.isnan(est.residual_px) else est.residual_px,
        spread_px=None if math.isnan(est.spread_px) else est.spread_px,
        block_px=block_px,
        min_blocks=min_blocks,
        min_confidence=min_confidence,
        min_peak_z=MIN_PEAK_Z,
        tolerance_px=TOLERANCE_PX,
        affine_px=est.affine_px if est.model == "affine" else None,
    )
    agree = (
        f"{est.tiles_used} of {est.blocks_peaked} blocks with a clear match agree "
        f"(confidence {est.confidence:.0%}, {min_blocks} blocks and {min_confidence:.0%} needed; "
        f"{est.blocks_textured} of {est.tiles_tried} blocks textured)"
    )
    if not est.confident:
        message = (
            f"co-registration not confident: {agree}, estimated dx={est.dx_px * gsd:+.2f} m "
            f"dy={est.dy_px * gsd:+.2f} m; georeference kept as is (no shift applied): compare "
            "the two images by eye in QGIS at a few unchanged corners (roads, old buildings)"
        )
        warnings.warn(message, CoregistrationWarning, stacklevel=3)
        return replace(pair, coregistration=replace(record, message=message))
    corners = [(0, 0), (pair.width, 0), (0, pair.height), (pair.width, pair.height)]
    worst = max(math.hypot(*est.displacement_px(c, r)) for c, r in corners) * gsd
    if math.hypot(est.dx_px, est.dy_px) * gsd > max_shift_m or (
        est.model == "affine" and worst > max_shift_m
    ):
        dx, dy = est.dx_px * gsd, est.dy_px * gsd
        raise ShiftTooLargeError(
            f"the epochs are misregistered by {max(math.hypot(dx, dy), worst):.2f} m (dx={dx:+.2f} "
            f"m, dy={dy:+.2f} m; {agree}), more than the limit {max_shift_m:g} m: check the "
            "georeference of the later image (control points) or raise ingest.max_shift_m "
            "(WEIJIAN_INGEST__MAX_SHIFT_M)"
        )
    model: CoregistrationModel = "affine" if est.model == "affine" else "translation"
    message = f"co-registration: {model} applied, {agree}"
    return replace(
        pair,
        shift_m=(est.dx_px * gsd, est.dy_px * gsd),
        shift_tiles_used=est.tiles_used,
        coregistration=replace(record, model_applied=model, message=message),
    )


def prepare_pair(
    before: str | Path | Scene,
    after: str | Path | Scene,
    *,
    working_crs: str = "EPSG:4549",
    gsd_m: float = 0.5,
    min_overlap_fraction: float = 0.2,
    max_shift_m: float = 5.0,
    coregister: bool = True,
    histogram_match: bool = True,
    progress: Progress | None = None,
    coregistration_min_blocks: int = MIN_AGREEING,
    coregistration_min_confidence: float = MIN_CONFIDENCE,
    coregistration_affine: bool = True,
) -> AlignedPair:
    """Validate, describe and align two epochs onto one working grid; nothing is written.

    ``working_crs`` is an EPSG code or PROJ/WKT string of a projected CRS in metres; ``gsd_m`` the
    working ground sample distance in metres. Co-registration (see :mod:`ingest.coregister`) is
    applied only when confident: at least ``coregistration_min_blocks`` blocks agree and they are
    at least ``coregistration_min_confidence`` of the textured blocks; an affine model is allowed
    when ``coregistration_affine``. Otherwise the georeference is kept as is and a one-line
    :class:`CoregistrationWarning` is issued; the estimate is recorded in ``coregistration``
    either way. Raises :class:`NoOverlapError`, :class:`InsufficientOverlapError`,
    :class:`BandMismatchError`, :class:`ShiftTooLargeError` (only for a *confident* shift beyond
    ``max_shift_m`` metres) and the validation errors of :func:`ingest.describe_scene`.
    """
    report = progress or (lambda step, done, total: None)
    crs = projected_metres_crs(working_crs)
    scenes = []
    for i, item in enumerate((before, after)):
        report("describe", i, 2)
        if isinstance(item, Scene):  # described elsewhere: the bounds check still applies
            check_plausible_bounds(item.crs, item.bounds, name=item.path)
        scenes.append(item if isinstance(item, Scene) else describe_scene(item))
    report("describe", 2, 2)
    sb, sa = scenes
    bands_b, bands_a = match_bands(sb, sa)
    fb, fa = sb.footprint_in(crs), sa.footprint_in(crs)
    common = fb.intersection(fa)
    if common.is_empty or common.area == 0:
        raise NoOverlapError(
            f"{sb.path} and {sa.path} do not overlap (valid footprints in {crs.name} are "
            "disjoint): "
            "check that both cover the same area and that their CRS is declared correctly"
        )
    overlap = common.area / min(fb.area, fa.area)
    if overlap < min_overlap_fraction:
        raise InsufficientOverlapError(
            f"{sb.path} and {sa.path} overlap on {overlap:.1%} of the smaller footprint, below the "
            f"minimum {min_overlap_fraction:.0%}: choose imagery of the same area or lower "
            "ingest.min_overlap_fraction (WEIJIAN_INGEST__MIN_OVERLAP_FRACTION)"
        )
    transform, width, height = working_grid(common, gsd_m)

    def spec(s: Scene, bands: tuple[int, ...]) -> EpochSpec:
        return EpochSpec(
            source=s.source,
            bands=bands,
            dtype=s.dtype,
            gsd_m=s.gsd_m,
            resampling="average" if s.gsd_m < gsd_m * 0.99 else "bilinear",
            has_alpha=s.mask == "alpha",
            acquired=s.acquired.isoformat() if s.acquired else None,
        )

    pair = AlignedPair(
        crs=working_crs,
        transform=tuple(transform)[:6],
        width=width,
        height=height,
        gsd_m=gsd_m,
        before=spec(sb, bands_b),
        after=spec(sa, bands_a),
        overlap_fraction=overlap,
        valid_fraction=common.area / (width * height * gsd_m**2),
        footprint_wkt=common.wkt,
    )
    if not (coregister or histogram_match):
        return pair
    windows = sample_windows(pair)
    samples = []
    with PairReader(pair, histogram_match=False) as reader:
        for i, w in enumerate(windows):
            report("sample", i, len(windows))
            tile = reader.read(w)
            # kept in the sources' own types (lossless: the warp reads them in those types):
            # 64 blocks of 8-bit RGB are 25 MB rather than 100 MB of float32
            samples.append(
                (
                    tile.data[0].astype(pair.before.dtype, copy=False),
                    tile.data[1].astype(pair.after.dtype, copy=False),
                    tile.valid,
                )
            )
    report("sample", len(windows), len(windows))
    if coregister:
        est = estimate_shift(
            samples,
            centres=[(w.col_off + w.width / 2, w.row_off + w.height / 2) for w in windows],
            min_agreeing=coregistration_min_blocks,
            min_confidence=coregistration_min_confidence,
            allow_affine=coregistration_affine,
        )
        pair = _apply_estimate(
            pair,
            est,
            windows,
            max_shift_m,
            coregistration_min_blocks,
            coregistration_min_confidence,
        )
    if histogram_match:
        pair = replace(pair, histogram=histogram_tables(samples))
    return pair


def read_window(pair: AlignedPair, window: Window) -> Tile:
    """Read one window of a pair, opening and closing the sources (no shared state)."""
    with PairReader(pair) as reader:
        return reader.read(window)
