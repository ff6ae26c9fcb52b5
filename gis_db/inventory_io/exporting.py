"""Writing cases to GeoPackage, GeoJSON or Excel, in a form that imports again unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import geopandas as gpd
import pandas as pd
import shapely
from pyproj import CRS
from sqlalchemy import Engine

from gis_db import domain
from gis_db.domain import OFFICE_TZ
from gis_db.errors import InvalidInputError
from gis_db.inventory_io.mapping import ENUM_FIELDS

EXPORT_HEADERS = {
    "case_number": "案件编号",
    "in_database": "入库状态",
    "priority_type": "重点类型",
    "construction_status": "建设状态",
    "exemption": "豁免情形",
    "disposal": "处置方式",
    "source": "发现来源",
    "discovered_on": "发现日期",
    "address": "地址",
    "owner": "当事人",
    "remark": "备注",
    "area_m2": "面积",
    "street_town_code": "街镇代码",
    "street_town_name": "街镇",
    "village_code": "居村代码",
    "village_name": "居村",
    "state": "案件状态",
    "version": "版本",
    "updated_at": "更新时间",
}
EXPORT_LABELS: dict[str, type[domain.LabelledEnum]] = {**ENUM_FIELDS, "state": domain.CaseState}


def export_cases(
    engine: Engine,
    path: str | Path,
    *,
    street_town: str | Sequence[str] | None = None,
    state: str | Sequence[str] | None = None,
    priority_type: str | Sequence[str] | None = None,
    language: Literal["zh", "en"] = "zh",
) -> int:
    """Write the cases matching the filters to ``path``; returns the number written.

    The format follows the suffix: ``.gpkg`` (working CRS, layer ``inventory_case``),
    ``.geojson`` (EPSG:4326 lon/lat as RFC 7946 requires; CGCS2000 and WGS 84 agree within a
    metre), ``.xlsx`` (one sheet, geometry as WKT in the working CRS, its header naming the CRS
    so that the file imports again as is). ``language="zh"``: Chinese headers and labels
    (what the office reads); ``"en"``: canonical column names and codes. Filters take codes or
    Chinese names/labels. An export imports again unchanged (round trip).
    """
    from gis_db.query import load_cases

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gpkg", ".geojson", ".json", ".xlsx"):
        raise InvalidInputError(
            f"{path.name}: export writes .gpkg, .geojson or .xlsx, not {suffix!r}"
        )
    try:
        frame = load_cases(
            engine, street_town=street_town, state=state, priority_type=priority_type
        )
    except ValueError as exc:
        raise InvalidInputError(f"export filter: {exc}") from exc
    working = frame.crs
    out = frame[[*EXPORT_HEADERS, frame.geometry.name]].copy()
    out["updated_at"] = (
        pd.to_datetime(out["updated_at"], utc=True)
        .dt.tz_convert(OFFICE_TZ)
        .dt.strftime("%Y-%m-%d %H:%M:%S")
    )
    out["discovered_on"] = out["discovered_on"].map(lambda d: d.isoformat() if d else None)
    out["area_m2"] = out["area_m2"].round(2)
    if language == "zh":
        for col, enum in EXPORT_LABELS.items():
            labels = {m.value: m.zh for m in enum}
            out[col] = out[col].map(lambda v, labels=labels: labels.get(v, v))
        out["in_database"] = out["in_database"].map({True: "库内", False: "库外"})
        out = out.rename(columns=EXPORT_HEADERS)
    out = gpd.GeoDataFrame(out, geometry=frame.geometry.name, crs=working)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    if suffix == ".gpkg":
        out.to_file(path, layer="inventory_case", driver="GPKG", engine="pyogrio")
    elif suffix in (".geojson", ".json"):
        out.to_crs("EPSG:4326").to_file(
            path,
            driver="GeoJSON",
            engine="pyogrio",
            layer_options={"RFC7946": "YES", "COORDINATE_PRECISION": 9},
        )
    else:
        crs = CRS.from_user_input(working)
        label = f"EPSG:{crs.to_epsg()}" if crs.to_epsg() else "working CRS"
        geom_header = f"{'几何' if language == 'zh' else 'wkt'} ({label})"
        table = pd.DataFrame(out.drop(columns=out.geometry.name))
        table[geom_header] = shapely.to_wkt(out.geometry.to_numpy(), rounding_precision=-1)
        with pd.ExcelWriter(path, engine="openpyxl") as xl:
            table.to_excel(xl, index=False, sheet_name="违建点位" if language == "zh" else "cases")
    return len(out)
