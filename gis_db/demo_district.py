"""A seeded, realistic demo district: Baoshan (宝山区), its 14 街镇 and parks, ~450 居村, cases.

Everything is generated from one seed, so the same seed gives the same district on every
machine. The 街镇 are a Voronoi partition around the real town centres (lon/lat, CGCS2000
EPSG:4490) clipped to an approximate district outline; 居村 partition each 街镇; cases are
small rotated building footprints (20-1,500 m²) with plausible Chinese addresses and attribute
mixes. Geometry is returned in the requested working CRS (metres). Names of 街镇 are real;
居村 names, roads' house numbers, owners and case numbers are invented.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import MultiPoint, Polygon
from shapely.ops import transform as shapely_transform
from sqlalchemy import Engine

from gis_db.domain import ConstructionStatus, DiscoverySource, Disposal, Exemption, PriorityType
from gis_db.inventory import ImportReport, upsert_cases, upsert_units

GEOGRAPHIC_CRS = "EPSG:4490"  # CGCS2000 lon/lat

#: Approximate outline of Baoshan district (lon, lat), clockwise from the south-west.
DISTRICT_OUTLINE = [
    (121.335, 31.285),
    (121.420, 31.268),
    (121.500, 31.283),
    (121.545, 31.330),
    (121.530, 31.400),
    (121.470, 31.455),
    (121.400, 31.510),
    (121.330, 31.520),
    (121.262, 31.490),
    (121.270, 31.410),
    (121.300, 31.340),
]

#: (code, name, lon, lat) of the 街镇 and parks, at their approximate centres.
STREET_TOWNS = [
    ("310113001", "友谊路街道", 121.487, 31.405),
    ("310113002", "吴淞街道", 121.497, 31.380),
    ("310113003", "张庙街道", 121.448, 31.335),
    ("310113101", "罗店镇", 121.340, 31.420),
    ("310113102", "大场镇", 121.410, 31.300),
    ("310113103", "杨行镇", 121.430, 31.390),
    ("310113104", "月浦镇", 121.420, 31.440),
    ("310113106", "罗泾镇", 121.350, 31.480),
    ("310113109", "顾村镇", 121.380, 31.350),
    ("310113111", "高境镇", 121.480, 31.315),
    ("310113112", "庙行镇", 121.440, 31.300),
    ("310113113", "淞南镇", 121.490, 31.345),
    ("310113501", "宝山工业园区", 121.300, 31.450),
    ("310113502", "宝山城市工业园区", 121.400, 31.480),
]

ROADS = [
    "沪太路",
    "富锦路",
    "蕰川路",
    "共和新路",
    "泰和路",
    "同济路",
    "宝杨路",
    "友谊路",
    "牡丹江路",
    "长江西路",
    "逸仙路",
    "殷高路",
    "场中路",
    "锦秋路",
    "陈太路",
    "罗芬路",
    "月罗路",
    "潘泾路",
    "联谊路",
    "水产路",
    "淞滨路",
    "双城路",
    "铁力路",
    "真华路",
    "纪蕰路",
    "潘广路",
    "美兰湖路",
]
VILLAGE_SUFFIXES = ["村", "村", "村", "居委会", "居委会"]
VILLAGE_STEMS = list("东西南北新华丰盛和平安康福民永兴红旗联合胜利光明前进幸福建设")
OWNER_SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗")


@dataclass(frozen=True)
class DemoDistrict:
    """The generated district: three GeoDataFrames in the working CRS."""

    street_towns: gpd.GeoDataFrame  # code, name, geometry
    villages: gpd.GeoDataFrame  # code, name, street_town_code, geometry
    cases: gpd.GeoDataFrame  # the inventory import columns, geometry

    def load(self, engine: Engine, *, actor: str, reason: str = "demo district") -> ImportReport:
        """Write the 街镇, the 居村 and the cases into the inventory (idempotent upserts)."""
        upsert_units(engine, "street_town", self.street_towns, actor=actor)
        upsert_units(engine, "village", self.villages, actor=actor)
        return upsert_cases(engine, self.cases, actor=actor, reason=reason)


def _to_working(geom: shapely.Geometry, working_crs: str) -> shapely.Geometry:
    from pyproj import Transformer

    tr = Transformer.from_crs(GEOGRAPHIC_CRS, working_crs, always_xy=True)
    return shapely_transform(tr.transform, geom)


def _partition(area: Polygon, seeds: np.ndarray) -> list[Polygon]:
    """Voronoi cells of ``seeds`` clipped to ``area`` (one cell per seed, in seed order)."""
    cells = shapely.voronoi_polygons(MultiPoint(seeds), extend_to=area)
    by_seed: list[Polygon] = []
    parts = list(cells.geoms)
    for x, y in seeds:
        point = shapely.Point(x, y)
        cell = next(c for c in parts if c.covers(point))
        by_seed.append(cell.intersection(area))
    return by_seed


def _random_points_in(poly: Polygon, n: int, rng: np.random.Generator) -> np.ndarray:
    minx, miny, maxx, maxy = poly.bounds
    out: list[tuple[float, float]] = []
    prepared = shapely.prepared.prep(poly)
    while len(out) < n:
        xs = rng.uniform(minx, maxx, n * 3)
        ys = rng.uniform(miny, maxy, n * 3)
        for x, y in zip(xs, ys, strict=True):
            if prepared.contains(shapely.Point(x, y)):
                out.append((x, y))
                if len(out) == n:
                    break
    return np.array(out)


def _footprint(x: float, y: float, area_m2: float, rng: np.random.Generator) -> Polygon:
    """A rotated rectangle of ``area_m2`` square metres centred on (x, y), metres."""
    aspect = rng.uniform(1.0, 3.0)
    w = np.sqrt(area_m2 * aspect)
    h = area_m2 / w
    box = shapely.box(-w / 2, -h / 2, w / 2, h / 2)
    return shapely.affinity.translate(shapely.affinity.rotate(box, rng.uniform(0, 180)), x, y)


def generate(
    working_crs: str = "EPSG:4549",
    seed: int = 20261121,
    n_cases: int = 3000,
    villages_per_town: tuple[int, int] = (20, 45),
    today: date | None = None,
) -> DemoDistrict:
    """Generate the demo district in ``working_crs`` (projected, metres).

    ``n_cases`` building footprints are spread over the 居村 (denser in the towns than in the
    urban 街道). Discovery dates fall in the three years before ``today`` (default: today).
    """
    rng = np.random.default_rng(seed)
    today = today or date.today()
    outline = _to_working(Polygon(DISTRICT_OUTLINE), working_crs)
    centres = np.array(
        [
            _to_working(shapely.Point(lon, lat), working_crs).coords[0]
            for _, _, lon, lat in STREET_TOWNS
        ]
    )
    town_cells = _partition(outline, centres)
    towns = gpd.GeoDataFrame(
        {"code": [c for c, *_ in STREET_TOWNS], "name": [n for _, n, *_ in STREET_TOWNS]},
        geometry=town_cells,
        crs=working_crs,
    )

    village_rows: list[dict[str, object]] = []
    for town_code, cell in zip(towns["code"], town_cells, strict=True):
        n = int(rng.integers(*villages_per_town))
        seeds = _random_points_in(cell, n, rng)
        used: set[str] = set()
        for i, vcell in enumerate(_partition(cell, seeds), start=1):
            if vcell.is_empty or vcell.area < 1.0:
                continue
            while True:
                name = "".join(rng.choice(VILLAGE_STEMS, 2)) + str(rng.choice(VILLAGE_SUFFIXES))
                if name not in used:
                    used.add(name)
                    break
            village_rows.append(
                {
                    "code": f"{town_code}{i:03d}",
                    "name": name,
                    "street_town_code": town_code,
                    "geometry": vcell,
                }
            )
    villages = gpd.GeoDataFrame(village_rows, geometry="geometry", crs=working_crs)

    # Cases: more in the 镇 and parks than in the dense urban 街道.
    weights = np.where(villages["street_town_code"].str[6] == "0", 0.4, 1.0)
    weights = weights / weights.sum()
    picks = rng.choice(len(villages), size=n_cases, p=weights)
    priority = [m.value for m in PriorityType]
    priority_p = [0.12, 0.06, 0.05, 0.04, 0.02, 0.03, 0.68]
    status = [m.value for m in ConstructionStatus]
    sources = [m.value for m in DiscoverySource]
    disposals = [None] + [m.value for m in Disposal]
    rows: list[dict[str, object]] = []
    for k, vi in enumerate(picks, start=1):
        village = villages.iloc[int(vi)]
        ((x, y),) = _random_points_in(village.geometry, 1, rng)
        area = float(np.exp(rng.normal(np.log(120), 0.8)))
        area = min(max(area, 20.0), 1500.0)
        town_name = towns.loc[towns["code"] == village["street_town_code"], "name"].iloc[0]
        construction = str(rng.choice(status, p=[0.82, 0.12, 0.06]))
        exemption = str(
            rng.choice(
                [
                    Exemption.NONE.value,
                    Exemption.HISTORICAL_UNLICENSED.value,
                    Exemption.COURTYARD_ADDON.value,
                ],
                p=[0.93, 0.05, 0.02],
            )
        )
        discovered = today - timedelta(days=int(rng.integers(1, 3 * 365)))
        rows.append(
            {
                "case_number": f"BS{discovered.year}-{k:05d}",
                "in_database": bool(rng.random() < 0.92),
                "priority_type": str(rng.choice(priority, p=priority_p)),
                "construction_status": construction,
                "exemption": exemption,
                "disposal": disposals[
                    int(rng.choice(len(disposals), p=[0.7, 0.18, 0.04, 0.04, 0.02, 0.02]))
                ],
                "source": str(rng.choice(sources, p=[0.35, 0.2, 0.2, 0.1, 0.12, 0.03])),
                "discovered_on": discovered,
                "address": f"上海市宝山区{town_name}{village['name']}{rng.choice(ROADS)}"
                f"{int(rng.integers(1, 2000))}号",
                "owner": f"{rng.choice(OWNER_SURNAMES)}某",
                "remark": None,
                "geometry": _footprint(x, y, area, rng),
            }
        )
    cases = gpd.GeoDataFrame(rows, geometry="geometry", crs=working_crs)
    cases["discovered_on"] = pd.to_datetime(cases["discovered_on"]).dt.date
    return DemoDistrict(towns, villages, cases)
