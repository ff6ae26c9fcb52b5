"""Seeded generators of small, plausible inventory data for tests and the import benchmark.

Everything is placed in 宝山区 (lon 121.40-121.50, lat 31.30-31.42) and built in the working
CRS EPSG:4549 (metres, x = easting). Nothing here touches the database.
"""

from __future__ import annotations

from datetime import date, timedelta

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

WORKING_CRS = "EPSG:4549"
#: 宝山区 test area as (lon_min, lat_min, lon_max, lat_max), CGCS2000 degrees.
BAOSHAN_LONLAT = (121.40, 31.30, 121.50, 31.42)


def baoshan_bounds(crs: str = WORKING_CRS) -> tuple[float, float, float, float]:
    """The test area in ``crs`` (metres): (minx, miny, maxx, maxy)."""
    tr = Transformer.from_crs("EPSG:4490", crs, always_xy=True)
    return tr.transform_bounds(*BAOSHAN_LONLAT)


def street_town_grid(nx: int = 4, ny: int = 4, crs: str = WORKING_CRS) -> gpd.GeoDataFrame:
    """An ``nx`` x ``ny`` grid of 街镇 covering the test area: code ST01.., name 街镇01镇.."""
    x0, y0, x1, y1 = baoshan_bounds(crs)
    w, h = (x1 - x0) / nx, (y1 - y0) / ny
    rows = []
    for j in range(ny):
        for i in range(nx):
            k = j * nx + i + 1
            rows.append(
                {
                    "code": f"ST{k:02d}",
                    "name": f"测试{k:02d}镇",
                    "geometry": shapely.box(
                        x0 + i * w, y0 + j * h, x0 + (i + 1) * w, y0 + (j + 1) * h
                    ),
                }
            )
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=crs)


def make_cases(
    n: int, seed: int = 42, crs: str = WORKING_CRS, prefix: str = "BS"
) -> gpd.GeoDataFrame:
    """``n`` cases with canonical columns and domain codes: rectangles of 20-800 m² in the area."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = baoshan_bounds(crs)
    cx = rng.uniform(x0 + 50, x1 - 50, n)
    cy = rng.uniform(y0 + 50, y1 - 50, n)
    area = np.exp(rng.uniform(np.log(20), np.log(800), n))
    aspect = rng.uniform(0.5, 2.0, n)
    w = np.sqrt(area * aspect)
    h = area / w
    geoms = shapely.box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    today = date.today()
    days = rng.integers(1, 1500, n)
    priority = np.array(["commercial", "public_safety", "street_river", "non_priority"])
    status = np.array(["existing", "new", "under_construction"])
    sources = np.array(["drone", "satellite", "patrol", "hotline_12345", "grid_inspection"])
    frame = pd.DataFrame(
        {
            "case_number": [f"{prefix}{k:06d}" for k in range(1, n + 1)],
            "in_database": rng.random(n) < 0.9,
            "priority_type": priority[rng.integers(0, len(priority), n)],
            "construction_status": status[rng.integers(0, len(status), n)],
            "exemption": "none",
            "source": sources[rng.integers(0, len(sources), n)],
            "discovered_on": [today - timedelta(days=int(d)) for d in days],
            "address": [f"上海市宝山区测试路{int(k)}号" for k in rng.integers(1, 3000, n)],
            "owner": "张某",
            "remark": None,
        }
    )
    return gpd.GeoDataFrame(frame, geometry=geoms, crs=crs)


#: Chinese headers for the canonical columns, as an office ledger (台账) would have them.
ZH_HEADERS = {
    "case_number": "案件编号",
    "in_database": "是否入库",
    "priority_type": "重点类型",
    "construction_status": "建设状态",
    "exemption": "豁免情形",
    "source": "发现来源",
    "discovered_on": "发现日期",
    "address": "地址",
    "owner": "当事人",
    "remark": "备注",
}
ZH_VALUES = {
    "in_database": {True: "库内", False: "库外"},
    "priority_type": {
        "commercial": "经营性",
        "public_safety": "影响公共安全",
        "street_river": "沿街沿河",
        "non_priority": "非重点类型",
    },
    "construction_status": {"existing": "存量", "new": "新增", "under_construction": "在建"},
    "exemption": {"none": "无"},
    "source": {
        "drone": "无人机",
        "satellite": "卫片",
        "patrol": "巡查",
        "hotline_12345": "12345热线",
        "grid_inspection": "网格巡查",
    },
}


def as_ledger(cases: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The cases as a Chinese ledger: Chinese headers and Chinese labels instead of codes."""
    out = cases.copy()
    for col, values in ZH_VALUES.items():
        out[col] = out[col].map(values)
    return out.rename(columns=ZH_HEADERS)


def write_gpkg(frame: gpd.GeoDataFrame, path, layer: str = "cases") -> None:  # type: ignore[no-untyped-def]
    """Write ``frame`` as a GeoPackage layer (pyogrio)."""
    frame.to_file(path, layer=layer, driver="GPKG", engine="pyogrio")


def as_wkt_table(cases: gpd.GeoDataFrame, wkt_header: str = "WKT") -> pd.DataFrame:
    """The cases as a plain table with a WKT column (for Excel/CSV files)."""
    table = pd.DataFrame(cases.drop(columns=cases.geometry.name))
    table[wkt_header] = shapely.to_wkt(cases.geometry.to_numpy(), rounding_precision=-1)
    return table


def bowtie(x: float, y: float, size: float = 10.0) -> shapely.Polygon:
    """A self-intersecting 'figure of eight' polygon (invalid, not safely repairable)."""
    return shapely.Polygon([(x, y), (x + size, y + size), (x + size, y), (x, y + size)])
