"""The demo flight: a real before/after orthophoto pair in 顾村镇 (宝山区) and its inventory.

The imagery is real: the LEVIR-CD tiles in ``../shared/data/change_pairs`` (Google Earth, about
0.5 m per pixel, not georeferenced) laid out as one 2,048 x 2,048 px mosaic at 0.5 m, i.e.
1,024 m x 1,024 m = 1.05 km², and written as two COG GeoTIFFs in EPSG:4549 (CGCS2000 / 3-degree
Gauss-Kruger CM 120E). The transform is documented and fixed:

* the mosaic's north-west corner is the point lon 121.3700 E, lat 31.3600 N (CGCS2000) projected
  to EPSG:4549 and rounded to whole metres (``ORIGIN_LONLAT``, :func:`mosaic_transform`);
  pixel (col, row) → (x0 + 0.5·col, y0 − 0.5·row) metres, north up, no rotation;
* layout (columns, rows in px): ``levir_1024`` ``test_7`` at (0, 0), ``test_12`` at (1024, 0),
  ``test_102`` at (0, 1024); the south-east quarter (1024.., 1024..) is a 4 x 4 grid of 256 px
  tiles: the nine ``levir_256`` crops not cut from those three tiles (``test_102_0512_0000`` and
  ``test_7_0256_0512`` are crops of them and are left out), then seven of them again turned by
  180° with the epochs swapped (what appeared in LEVIR-CD disappears here: demolitions).
* before = the ``A`` images (acquired 2025-03-10), after = the ``B`` images (2026-03-10), except
  the seven swapped tiles.

The inventory around it is seeded from the LEVIR-CD change masks (the dataset's own labels, not
our detections), so that every match class occurs on the real imagery: open cases on buildings
that appear (已在库 known case), written-off cases where a building appears again (反弹回潮
rebound, written off through the workflow by two people), permits on appearing buildings (已审批
permitted), and open cases on buildings that disappear (拆除佐证 demolition evidence); the other
appearing buildings are new suspects (新增疑似). Everything is deterministic and idempotent:
running it again reuses the files and changes no row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

#: NW corner of the demo mosaic (lon, lat, CGCS2000), inside 顾村镇, 宝山区.
ORIGIN_LONLAT = (121.3700, 31.3600)
#: The 街镇 the demo flight lies in (the demo 街镇 user is bound to it).
DEMO_STREET_TOWN = "310113109"
GSD_M = 0.5
SIZE_PX = 2048
BEFORE_DATE, AFTER_DATE = date(2025, 3, 10), date(2026, 3, 10)
BEFORE_NAME, AFTER_NAME = "gucun_demo_20250310.tif", "gucun_demo_20260310.tif"
GENERATOR_VERSION = 1

LARGE_TILES = (("test_7", 0, 0), ("test_12", 1024, 0), ("test_102", 0, 1024))
SMALL_TILES = (
    "test_2_0000_0000",
    "test_2_0000_0512",
    "test_55_0256_0000",
    "test_77_0512_0256",
    "test_121_0768_0256",
    "train_36_0512_0512",
    "train_386_0512_0768",
    "train_412_0512_0768",
    "val_27_0000_0256",
)
#: Small tiles shown again turned by 180° with the epochs swapped (disappearing buildings).
SWAPPED_TILES = (
    "test_2_0000_0000",
    "test_2_0000_0512",
    "test_55_0256_0000",
    "test_77_0512_0256",
    "test_121_0768_0256",
    "train_36_0512_0512",
    "train_412_0512_0768",
)
#: Seeded objects per match class (taken from the largest labelled changes, interleaved).
PER_CLASS = 3
MIN_SEED_AREA_M2 = 60.0


def shared_pairs_dir() -> Path:
    """``../shared/data/change_pairs`` relative to the repository."""
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "change_pairs"


def mosaic_transform(working_crs: str = "EPSG:4549") -> Any:
    """The demo mosaic's affine transform in ``working_crs`` (documented in the module text)."""
    from affine import Affine
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4490", working_crs, always_xy=True).transform(*ORIGIN_LONLAT)
    return Affine(GSD_M, 0.0, float(round(x)), 0.0, -GSD_M, float(round(y)))


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB") if "label" not in path.parts else im.convert("L"))


def build_mosaic(data_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The demo mosaic: before, after (uint8, 3 x 2048 x 2048) and the change truth.

    Truth (2048 x 2048): 0 no change, 1 building appeared, 2 building disappeared.
    """
    root = data_dir or shared_pairs_dir()
    if not (root / "levir_1024" / "A").is_dir():
        from weijian.errors import WeijianError

        raise WeijianError(
            f"the LEVIR-CD tiles are not in {root}: the demo needs ../shared/data/change_pairs "
            "next to the repository"
        )
    before = np.zeros((3, SIZE_PX, SIZE_PX), np.uint8)
    after = np.zeros_like(before)
    truth = np.zeros((SIZE_PX, SIZE_PX), np.uint8)

    def put(
        name: str, folder: str, col: int, row: int, *, swap: bool = False, rot: int = 0
    ) -> None:
        a = _png(root / folder / "A" / f"{name}.png")
        b = _png(root / folder / "B" / f"{name}.png")
        lab = _png(root / folder / "label" / f"{name}.png") > 127
        a, b, lab = (np.rot90(x, rot, axes=(0, 1)) for x in (a, b, lab))
        if swap:
            a, b = b, a
        h, w = lab.shape
        before[:, row : row + h, col : col + w] = np.moveaxis(a, -1, 0)
        after[:, row : row + h, col : col + w] = np.moveaxis(b, -1, 0)
        truth[row : row + h, col : col + w] = np.where(lab, 2 if swap else 1, 0)

    for name, col, row in LARGE_TILES:
        put(name, "levir_1024", col, row)
    slots = [(1024 + 256 * (i % 4), 1024 + 256 * (i // 4)) for i in range(16)]
    for name, (col, row) in zip(SMALL_TILES, slots[: len(SMALL_TILES)], strict=True):
        put(name, "levir_256", col, row)
    for name, (col, row) in zip(SWAPPED_TILES, slots[len(SMALL_TILES) :], strict=True):
        put(name, "levir_256", col, row, swap=True, rot=2)
    return before, after, truth


def _write_cog(path: Path, data: np.ndarray, transform: Any, crs: str) -> None:
    import rasterio

    tmp = path.with_name(f".{path.name}.tmp")
    with rasterio.open(
        tmp,
        "w",
        driver="COG",
        width=data.shape[2],
        height=data.shape[1],
        count=3,
        dtype="uint8",
        crs=crs,
        transform=transform,
        compress="DEFLATE",
        blocksize=512,
        overview_resampling="average",
    ) as dst:
        dst.write(data)
    tmp.replace(path)


def _write_pair(
    manifest_path: Path,
    paths: dict[str, Path],
    images: tuple[np.ndarray, np.ndarray],
    transform: Any,
    crs: str,
    identity: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write both COGs unless the manifest says the same generator wrote them (SHA-256 hold)."""
    from ingest.scene import sha256_file
    from weijian.flight import write_atomic

    manifest: dict[str, Any] = {}
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    fresh = all(manifest.get(k) == v for k, v in identity.items())
    if fresh and all(p.is_file() and sha256_file(p) == manifest.get(k) for k, p in paths.items()):
        return
    _write_cog(paths["before"], images[0], transform, crs)
    _write_cog(paths["after"], images[1], transform, crs)
    manifest = {
        **identity,
        "transform": list(transform)[:6],
        **(extra or {}),
        **{k: sha256_file(p) for k, p in paths.items()},
    }
    write_atomic(manifest_path, json.dumps(manifest, indent=1))


@dataclass(frozen=True)
class DemoFlight:
    """Where the demo flight's images are and the change truth used for seeding."""

    before: Path
    after: Path
    truth: np.ndarray
    transform: Any
    crs: str

    @property
    def area_km2(self) -> float:
        """Area of the mosaic, km²."""
        return float(self.truth.size * GSD_M**2 / 1e6)


def write_demo_flight(
    folder: Path, working_crs: str = "EPSG:4549", *, crop_px: int | None = None
) -> DemoFlight:
    """Write (or reuse) the two COGs in ``folder``; reused when their recorded SHA-256 holds.

    ``crop_px``: only a square of that many pixels from the mosaic's south-east quarter (its
    north-west corner at column and row 1024), for quick examples and tests.
    """
    from affine import Affine

    folder.mkdir(parents=True, exist_ok=True)
    transform = mosaic_transform(working_crs)
    before, after, truth = build_mosaic()
    if crop_px:
        cut = (slice(1024, 1024 + crop_px), slice(1024, 1024 + crop_px))
        before, after = before[:, cut[0], cut[1]].copy(), after[:, cut[0], cut[1]].copy()
        truth = truth[cut].copy()
        transform = transform * Affine.translation(1024, 1024)
    paths = {"before": folder / BEFORE_NAME, "after": folder / AFTER_NAME}
    _write_pair(
        folder / "demo_flight.json",
        paths,
        (before, after),
        transform,
        working_crs,
        {"version": GENERATOR_VERSION, "crs": working_crs, "crop_px": crop_px},
        extra={"origin_lonlat": ORIGIN_LONLAT},
    )
    return DemoFlight(paths["before"], paths["after"], truth, transform, working_crs)


#: The generated large flight's NW corner: this far east of the demo flight's (no overlap), m.
LARGE_OFFSET_M = 1100.0
LARGE_SEED = 20261122


def build_large_mosaic(size: int, seed: int = LARGE_SEED) -> tuple[np.ndarray, ...]:
    """A ``size`` px square flight made of the demo mosaic's real imagery: before, after, truth.

    The 2,048 px demo mosaic is laid in blocks, each turned by a seeded multiple of 90° and
    mirrored or not (so that neighbouring blocks differ), cut at the right and bottom edges.
    Truth as :func:`build_mosaic` (1 appeared, 2 disappeared).
    """
    rng = np.random.default_rng(seed)
    base = build_mosaic()
    before = np.zeros((3, size, size), np.uint8)
    after = np.zeros_like(before)
    truth = np.zeros((size, size), np.uint8)
    for row in range(0, size, SIZE_PX):
        for col in range(0, size, SIZE_PX):
            turns, mirror = int(rng.integers(4)), bool(rng.integers(2))
            h, w = min(SIZE_PX, size - row), min(SIZE_PX, size - col)
            for src, dst in zip(base, (before, after, truth), strict=True):
                block = np.rot90(src, turns, axes=(-2, -1))
                if mirror:
                    block = block[..., ::-1]
                dst[..., row : row + h, col : col + w] = block[..., :h, :w]
    return before, after, truth


def write_large_flight(folder: Path, size: int, working_crs: str = "EPSG:4549") -> DemoFlight:
    """Write (or reuse) a generated ``size`` px flight (:func:`build_large_mosaic`) as COGs.

    Placed ``LARGE_OFFSET_M`` east of the demo flight (same row, 0.5 m, north up), dated as the
    demo flight (``large_20250310.tif``, ``large_20260310.tif``). For benchmarks.
    """
    from affine import Affine

    folder.mkdir(parents=True, exist_ok=True)
    transform = Affine.translation(LARGE_OFFSET_M, 0.0) * mosaic_transform(working_crs)
    before, after, truth = build_large_mosaic(size)
    paths = {"before": folder / "large_20250310.tif", "after": folder / "large_20260310.tif"}
    identity = {"version": GENERATOR_VERSION, "crs": working_crs, "size": size, "seed": LARGE_SEED}
    _write_pair(
        folder / "large_flight.json", paths, (before, after), transform, working_crs, identity
    )
    return DemoFlight(paths["before"], paths["after"], truth, transform, working_crs)


# ---------------------------------------------------------------------------------------------
# the inventory around the demo flight


def truth_objects(flight: DemoFlight) -> dict[str, list[Any]]:
    """Labelled changes as polygons (working CRS), largest first: ``appeared`` / ``disappeared``."""
    import rasterio.features
    import shapely
    from shapely.geometry import shape

    out: dict[str, list[Any]] = {}
    for value, kind in ((1, "appeared"), (2, "disappeared")):
        mask = flight.truth == value
        polys = [
            shape(g).simplify(GSD_M, preserve_topology=True).buffer(0)
            for g, _ in rasterio.features.shapes(
                mask.astype(np.uint8), mask=mask, transform=flight.transform, connectivity=4
            )
        ]
        polys = [p for p in polys if p.area >= MIN_SEED_AREA_M2]
        polys.sort(key=lambda p: (-round(p.area, 1), p.centroid.x, p.centroid.y))
        out[kind] = [shapely.force_2d(p) for p in polys]
    return out


@dataclass(frozen=True)
class SeedReport:
    """Counts of what the seeding created or changed (0s on a second run)."""

    cases_created: int
    cases_updated: int
    written_off: int
    permits_inserted: int
    permits_updated: int


def seed_inventory(
    engine: Any, flight: DemoFlight, *, actor: str, prefix: str = "DEMO", per_class: int = PER_CLASS
) -> SeedReport:
    """Seed cases and permits on the demo flight's real changes (idempotent).

    ``per_class`` objects of each kind (known, written-off, permitted, demolished), numbered
    ``PREFIX-K1``, ``PREFIX-R1``, ``PREFIX-P1``, ``PREFIX-D1`` ...
    """
    import geopandas as gpd
    from sqlalchemy import text

    from gis_db.inventory import upsert_cases
    from gis_db.permits import upsert_permits
    from gis_db.workflow import CaseAction, transition_case

    objects = truth_objects(flight)
    appeared = objects["appeared"]
    known = appeared[0 : 3 * per_class : 3]
    rebound = appeared[1 : 3 * per_class : 3]
    permitted = appeared[2 : 3 * per_class : 3]
    demolished = objects["disappeared"][:per_class]
    rows = []

    def case(number: str, geom: Any, status: str, discovered: date, remark: str) -> None:
        rows.append(
            {
                "case_number": number,
                "in_database": True,
                "priority_type": "commercial",
                "construction_status": status,
                "exemption": "none",
                "source": "drone",
                "discovered_on": discovered,
                "address": f"上海市宝山区顾村镇示范航飞区 {number}",
                "owner": "示范",
                "remark": remark,
                "geometry": geom,
            }
        )

    for i, g in enumerate(known, 1):
        case(f"{prefix}-K{i}", g, "under_construction", date(2025, 9, 1), "在建, 12345 热线举报")
    for i, g in enumerate(rebound, 1):
        case(f"{prefix}-R{i}", g, "existing", date(2024, 6, 1), "已拆除销项, 复查反弹")
    for i, g in enumerate(demolished, 1):
        case(f"{prefix}-D{i}", g, "existing", date(2024, 6, 1), "待拆除")
    frame = gpd.GeoDataFrame(rows, geometry="geometry", crs=flight.crs)
    report = upsert_cases(engine, frame, actor=actor, reason="demo flight")

    written_off = 0
    numbers = [f"{prefix}-R{i}" for i in range(1, len(rebound) + 1)]
    with engine.connect() as conn:
        ids = conn.execute(
            text(
                "SELECT id, case_number FROM inventory_case WHERE case_number = ANY(:n) "
                "AND state = 'open' ORDER BY case_number"
            ),
            {"n": numbers},
        ).all()
    for case_id, number in ids:
        transition_case(engine, case_id, CaseAction.DISPATCH, actor="demo-office", role="office")
        transition_case(engine, case_id, CaseAction.VERIFY, actor="demo-street", role="street_town")
        transition_case(
            engine,
            case_id,
            CaseAction.DISPOSE,
            actor="demo-street",
            role="street_town",
            disposal="demolish",
        )
        transition_case(
            engine,
            case_id,
            CaseAction.REQUEST_WRITE_OFF,
            actor="demo-street",
            role="street_town",
            evidence=[f"{number} 拆除现场照片 (示范)"],
        )
        transition_case(engine, case_id, CaseAction.WRITE_OFF, actor="demo-approver", role="office")
        written_off += 1

    permits = gpd.GeoDataFrame(
        {
            "permit_number": [f"{prefix}-P{i}" for i in range(1, len(permitted) + 1)],
            "issuer": ["planning"] * len(permitted),
            "description": ["示范: 已批准新建厂房"] * len(permitted),
            "valid_from": [date(2025, 1, 1)] * len(permitted),
            "valid_to": [None] * len(permitted),
        },
        geometry=permitted,
        crs=flight.crs,
    )
    inserted, updated = upsert_permits(engine, permits)
    return SeedReport(report.created, report.updated, written_off, inserted, updated)


def latest_run(engine: Any) -> int | None:
    """The newest matched detection run in the database, or None."""
    from sqlalchemy import text

    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT max(id) FROM detection_run WHERE status = 'matched'")
        ).scalar()
    return int(found) if found is not None else None


def is_demo_run(engine: Any, run_id: int) -> bool:
    """Whether ``run_id`` compares the demo flight's images (its later image is the demo's).

    Notebooks act on a run (e.g. review a few suspects so that every chart has something in
    it) only when it is the demo's: never on an office's real run.
    """
    from sqlalchemy import text

    with engine.connect() as conn:
        path = conn.execute(
            text(
                "SELECT a.path FROM detection_run r JOIN scene a ON a.id = r.after_scene_id "
                "WHERE r.id = :r"
            ),
            {"r": run_id},
        ).scalar()
    return path is not None and Path(path).name == AFTER_NAME


def ensure_demo_run(
    engine: Any, folder: Path, *, crop_px: int | None = 512, n_cases: int = 300
) -> int:
    """A matched run to look at: the newest in the database, else a small demo flight, built.

    Builds, when the database has no run: the demo district (``n_cases`` cases, when it has no
    街镇 yet), the demo flight's images in ``folder`` (``crop_px`` square, None: all 1.05 km²),
    the seeded inventory, and runs the flight (output in ``folder / "flights"``). Returns the
    run's id. For notebooks and benchmarks; ``weijian demo`` is the full version.
    """
    from sqlalchemy import text

    from gis_db.demo_district import generate
    from ingest import describe_scene
    from weijian.cli.flight import flight_config
    from weijian.flight import catalogue_scene, run_flight
    from weijian.settings import get_settings

    found = latest_run(engine)
    if found is not None:
        return found
    settings = get_settings()
    with engine.connect() as conn:
        towns = conn.execute(text("SELECT count(*) FROM street_town")).scalar_one()
    if not towns:
        district = generate(settings.working_crs, n_cases=n_cases)
        district.load(engine, actor="demo")
    flight = write_demo_flight(Path(folder), settings.working_crs, crop_px=crop_px)
    seed_inventory(engine, flight, actor="demo")
    catalogue_scene(engine, describe_scene(flight.before), settings.working_crs)
    config = flight_config(out_root=Path(folder) / "flights")
    result = run_flight(engine, flight.after, before="auto", config=config)
    assert result.run_id is not None
    return result.run_id
