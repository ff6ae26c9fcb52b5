"""Dispatch packages (派单包): one folder per 街镇 with the suspects its team must verify on site.

Each folder holds a GeoPackage (layer ``疑似违建``, polygons in the working CRS), an Excel sheet
with Chinese headers and blank columns for the field result, and, when the run's two images are on
disk, a before and an after PNG chip of every suspect with its outline drawn (rasterio windowed
reads: an orthophoto is never read whole). Detections outside every 街镇 go to ``unassigned``.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import geopandas as gpd
import numpy as np
import pandas as pd
from pyproj import CRS, Transformer
from sqlalchemy import Connection, Engine, text

from gis_db.domain import ChangeKind, DetectionState, MatchClass
from gis_db.engine import transaction
from gis_db.errors import InvalidInputError
from gis_db.runs import get_run
from gis_db.schema import require_working_crs

#: The classes a 街镇 is sent to verify by default.
DISPATCH_CLASSES: tuple[MatchClass, ...] = (MatchClass.NEW_SUSPECT, MatchClass.REBOUND)
LAYER = "疑似违建"
UNASSIGNED = ("unassigned", "未落入辖区")

_COLUMNS_ZH = {
    "seq": "序号",
    "detection_id": "图斑ID",
    "match_class": "比对结果",
    "state": "核查状态",
    "change_kind": "变化类型",
    "street_town": "街镇",
    "village": "居村",
    "area_m2": "面积(平方米)",
    "score": "置信度",
    "case_number": "关联案件",
    "x": "中心X",
    "y": "中心Y",
    "lon": "经度(CGCS2000)",
    "lat": "纬度(CGCS2000)",
    "before_chip": "前时相截图",
    "after_chip": "后时相截图",
}
_FIELD_COLUMNS = ("核查结果", "核查人", "核查日期", "备注")


@dataclass(frozen=True)
class DispatchPackage:
    """One 街镇's package: where it was written and what it holds."""

    street_town_code: str
    street_town: str
    folder: Path
    gpkg: Path
    xlsx: Path
    n_suspects: int
    n_chips: int


def _safe(name: str) -> str:
    return re.sub(r"[^\w\-]+", "_", name).strip("_") or "unit"


def _suspects(conn: Connection, run_id: int, classes: Sequence[MatchClass]) -> gpd.GeoDataFrame:
    return gpd.read_postgis(
        text(
            "SELECT d.seq, d.id AS detection_id, d.match_class, d.state, d.change_kind, "
            "d.street_town_code, s.name AS street_town, v.name AS village, "
            "round(d.area_m2::numeric, 1)::float8 AS area_m2, round(d.score::numeric, 3)::float8 "
            "AS score, "
            "COALESCE(linked.case_number, matched.case_number) AS case_number, d.geom "
            "FROM detection d LEFT JOIN street_town s ON s.code = d.street_town_code "
            "LEFT JOIN village v ON v.code = d.village_code "
            "LEFT JOIN inventory_case matched ON matched.id = d.matched_case_id "
            "LEFT JOIN LATERAL (SELECT c.case_number FROM case_detection l "
            "  JOIN inventory_case c ON c.id = l.case_id WHERE l.detection_id = d.id "
            "  ORDER BY l.linked_at LIMIT 1) linked ON true "
            "WHERE d.run_id = :r AND d.match_class = ANY(:classes) AND d.state = ANY(:states) "
            "ORDER BY d.street_town_code NULLS LAST, d.seq"
        ),
        conn,
        geom_col="geom",
        params={
            "r": run_id,
            "classes": [c.value for c in classes],
            "states": [DetectionState.NEW.value, DetectionState.CONFIRMED.value],
        },
    )


def write_dispatch_packages(
    bind: Engine | Connection,
    run_id: int,
    out_dir: str | Path,
    *,
    classes: Sequence[MatchClass | str] = DISPATCH_CLASSES,
    chip_margin_m: float = 15.0,
    chip_max_px: int = 400,
    chip_threads: int | None = None,
) -> list[DispatchPackage]:
    """Write one package per 街镇 for run ``run_id`` under ``out_dir``; returns them.

    Suspects are the run's detections of ``classes`` not rejected in review. ``chip_margin_m``:
    context around each suspect in the chips, m; ``chip_max_px``: largest chip side, px;
    ``chip_threads``: chips cut side by side (default: the CPU count; reading and PNG encoding
    release the GIL). Writing again overwrites the same files.
    """
    wanted = [cast(MatchClass, MatchClass.parse(str(c))) for c in classes]
    out = Path(out_dir)
    with transaction(bind) as conn:
        run = get_run(conn, run_id)
        if run["status"] != "matched":
            raise InvalidInputError(
                f"run {run_id} is {run['status']}, not matched: run 'weijian runs match {run_id}' "
                "before dispatching"
            )
        working = CRS.from_user_input(require_working_crs(conn)[0])
        frame = _suspects(conn, run_id, wanted)
    frame = frame.set_crs(working, allow_override=True)
    centroids = frame.geometry.centroid
    to_lonlat = Transformer.from_crs(working, "EPSG:4490", always_xy=True)
    lon, lat = to_lonlat.transform(centroids.x.to_numpy(), centroids.y.to_numpy())
    frame = frame.assign(
        x=centroids.x.round(2), y=centroids.y.round(2), lon=np.round(lon, 7), lat=np.round(lat, 7)
    )
    frame["match_class"] = frame["match_class"].map(lambda v: MatchClass(v).zh)
    frame["state"] = frame["state"].map(lambda v: DetectionState(v).zh)
    frame["change_kind"] = frame["change_kind"].map(lambda v: ChangeKind(v).zh)
    frame["street_town_code"] = frame["street_town_code"].fillna(UNASSIGNED[0])
    frame["street_town"] = frame["street_town"].fillna(UNASSIGNED[1])
    chipper = _ChipPool(
        (run["before_path"], run["after_path"], working, chip_margin_m, chip_max_px),
        chip_threads or os.cpu_count() or 1,
    )
    packages = []
    try:
        for code, group in frame.groupby("street_town_code", sort=True):
            name = str(group["street_town"].iloc[0])
            folder = out / f"{_safe(str(code))}_{_safe(name)}"
            folder.mkdir(parents=True, exist_ok=True)
            group = group.copy()
            chips = chipper.cut_many(
                [
                    (geom, folder / "chips", int(det))
                    for geom, det in zip(group.geometry, group["detection_id"], strict=True)
                ]
            )
            group["before_chip"] = [c[0] for c in chips]
            group["after_chip"] = [c[1] for c in chips]
            table = group[list(_COLUMNS_ZH)].rename(columns=_COLUMNS_ZH)
            stem = f"run{run_id}_{_safe(str(code))}"
            gpkg, xlsx = folder / f"{stem}.gpkg", folder / f"{stem}.xlsx"
            gpd.GeoDataFrame(table, geometry=group.geometry.to_numpy(), crs=working).to_file(
                gpkg, layer=LAYER, driver="GPKG", engine="pyogrio"
            )
            sheet = table.assign(**{c: "" for c in _FIELD_COLUMNS})
            with pd.ExcelWriter(xlsx, engine="openpyxl") as writer:
                sheet.to_excel(writer, sheet_name=f"{name[:20]}核查清单", index=False)
            packages.append(
                DispatchPackage(
                    str(code),
                    name,
                    folder,
                    gpkg,
                    xlsx,
                    len(group),
                    sum(1 for c in chips if c[0]) * 2,
                )
            )
    finally:
        chipper.close()
    return packages


class _ChipPool:
    """Cuts chips on ``threads`` threads, each with its own :class:`_Chipper` (its own handles)."""

    def __init__(self, chipper_args: tuple[Any, ...], threads: int) -> None:
        self._args, self._local = chipper_args, threading.local()
        self._chippers: list[_Chipper] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads))

    def _cut(self, job: tuple[Any, Path, int]) -> tuple[str, str]:
        chipper = getattr(self._local, "chipper", None)
        if chipper is None:
            chipper = self._local.chipper = _Chipper(*self._args)
            with self._lock:
                self._chippers.append(chipper)
        return chipper.cut(*job)

    def cut_many(self, jobs: Sequence[tuple[Any, Path, int]]) -> list[tuple[str, str]]:
        """The chips' relative paths, in the order of ``jobs`` (geometry, folder, detection id)."""
        return list(self._pool.map(self._cut, jobs))

    def close(self) -> None:
        self._pool.shutdown()
        for chipper in self._chippers:
            chipper.close()


class _Chipper:
    """Cuts before/after PNG chips around a polygon from the run's two images, when on disk."""

    def __init__(
        self, before: str | None, after: str | None, working: CRS, margin_m: float, max_px: int
    ) -> None:
        self.margin, self.max_px, self.working = margin_m, max_px, working
        self.sources: list[Any] = []
        self._crs_equal: dict[int, bool] = {}
        paths = [Path(p) if p else None for p in (before, after)]
        if all(p is not None and p.is_file() for p in paths):
            import rasterio

            self.sources = [rasterio.open(p) for p in paths]

    def close(self) -> None:
        for src in self.sources:
            src.close()

    def cut(self, geom: Any, folder: Path, detection_id: int) -> tuple[str, str]:
        """Relative paths of the before and after chips ('' when the images are missing)."""
        if not self.sources:
            return "", ""
        folder.mkdir(exist_ok=True)
        names = []
        for label, src in zip(("before", "after"), self.sources, strict=True):
            name = f"chips/{detection_id}_{label}.png"
            self._write(src, geom, folder.parent / name)
            names.append(name)
        return names[0], names[1]

    def _write(self, src: Any, geom: Any, path: Path) -> None:
        """One chip: the window around ``geom`` (read inside the image, padded black outside)."""
        from PIL import Image, ImageDraw
        from rasterio.enums import Resampling
        from rasterio.warp import transform_bounds, transform_geom
        from rasterio.windows import Window, from_bounds

        same_crs = self._same_crs(src)
        minx, miny, maxx, maxy = geom.bounds
        minx, miny, maxx, maxy = (
            minx - self.margin,
            miny - self.margin,
            maxx + self.margin,
            maxy + self.margin,
        )
        bounds = (
            (minx, miny, maxx, maxy)
            if same_crs
            else transform_bounds(self.working, src.crs, minx, miny, maxx, maxy)
        )
        window = from_bounds(*bounds, transform=src.transform)
        col0, row0 = round(window.col_off), round(window.row_off)
        width, height = max(1, round(window.width)), max(1, round(window.height))
        window = Window(col0, row0, width, height)
        scale = min(1.0, self.max_px / max(width, height, 1))
        shape = (max(1, round(height * scale)), max(1, round(width * scale)))
        bands = [1, 2, 3] if src.count >= 3 else [1]
        # the part of the window inside the image, read as is (a boundless read goes through a
        # VRT and costs several times more); what lies outside stays black
        c0, r0 = max(col0, 0), max(row0, 0)
        c1, r1 = min(col0 + width, src.width), min(row0 + height, src.height)
        data = np.zeros((len(bands), *shape), dtype=src.dtypes[0])
        if c1 > c0 and r1 > r0:
            inner = Window(c0, r0, c1 - c0, r1 - r0)
            oc0, or0 = round((c0 - col0) * scale), round((r0 - row0) * scale)
            oc1 = max(oc0 + 1, min(shape[1], round((c1 - col0) * scale)))
            or1 = max(or0 + 1, min(shape[0], round((r1 - row0) * scale)))
            data[:, or0:or1, oc0:oc1] = src.read(
                bands,
                window=inner,
                out_shape=(len(bands), or1 - or0, oc1 - oc0),
                resampling=Resampling.bilinear,
            )
        image = Image.fromarray(_to_uint8(data).transpose(1, 2, 0).squeeze())
        image = image.convert("RGB")
        outline = geom.__geo_interface__
        if not same_crs:
            outline = transform_geom(self.working, src.crs, outline)
        inv = ~src.window_transform(window)
        draw = ImageDraw.Draw(image)
        for polygon in _rings(outline):
            xy = np.asarray(polygon, dtype=float)
            cols = (inv.a * xy[:, 0] + inv.b * xy[:, 1] + inv.c) * scale
            rows = (inv.d * xy[:, 0] + inv.e * xy[:, 1] + inv.f) * scale
            draw.line(
                list(zip(cols.tolist(), rows.tolist(), strict=True)), fill=(255, 0, 0), width=2
            )
        image.save(path, compress_level=1)

    def _same_crs(self, src: Any) -> bool:
        key = id(src)
        if key not in self._crs_equal:
            self._crs_equal[key] = CRS.from_user_input(src.crs.to_wkt()) == self.working
        return self._crs_equal[key]


def _rings(geojson: dict[str, Any]) -> list[list[tuple[float, float]]]:
    polys = (
        geojson["coordinates"] if geojson["type"] == "MultiPolygon" else [geojson["coordinates"]]
    )
    return [[(float(x), float(y)) for x, y, *_ in ring] for poly in polys for ring in poly]


def _to_uint8(data: np.ndarray) -> np.ndarray:
    """Stretch any dtype to 0-255 (2-98 % per chip); uint8 passes through."""
    if data.dtype == np.uint8:
        return data
    lo, hi = np.percentile(data, (2, 98))
    return (np.clip((data - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8)
