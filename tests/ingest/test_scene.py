"""Describing scenes: footprint, GSD in metres in any CRS, masks, dates, STAC."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
from affine import Affine

import ingest
from weijian_testdata import rasters as data_gen


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:3857", "EPSG:32651", "EPSG:4549"])
@pytest.mark.parametrize("gsd", [0.05, 0.3, 1.0])
def test_gsd_and_footprint_in_any_crs(tmp_path: Path, ground: Path, crs: str, gsd: float) -> None:
    size = 256 if gsd == 0.05 else None
    path = data_gen.resample_to(ground, tmp_path / "v.tif", crs, gsd, size=size)
    scene = ingest.describe_scene(path, acquired="2024-03-15")
    assert scene.gsd_m == pytest.approx(gsd, rel=0.01)
    assert scene.platform == ("drone" if gsd < 0.25 else "satellite")
    side = (size or round(256 / gsd)) * gsd
    area = scene.footprint_in("EPSG:4549").area
    assert area == pytest.approx(side**2, rel=0.03)
    assert scene.epsg == int(crs.split(":")[1])


def test_footprint_is_valid_area_not_bbox(tmp_path: Path) -> None:
    img = data_gen.texture(256, 256)
    img[:, :, :] = np.maximum(img, 1)
    yy, xx = np.mgrid[:256, :256]
    outside = (xx + yy) > 256  # a triangle of valid data, as after orthorectification
    img[:, outside] = 0
    path = data_gen.write_raster(
        tmp_path / "tri.tif",
        img,
        crs="EPSG:4549",
        transform=data_gen.ground_transform(0.5),
        nodata=0,
    )
    scene = ingest.describe_scene(path, acquired="2024-03-15")
    assert scene.mask == "nodata"
    assert scene.footprint.area == pytest.approx(0.5 * 128**2, rel=0.03)
    assert scene.valid_fraction == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("kind", ["alpha", "internal", "nodata"])
def test_masks(tmp_path: Path, kind: str) -> None:
    img = data_gen.texture(128, 128)
    valid = np.ones((128, 128), bool)
    valid[:, :32] = False
    kw: dict[str, object] = {}
    if kind == "alpha":
        kw["alpha"] = valid * 255
    elif kind == "internal":
        kw["mask"] = valid
    else:
        img[:, ~valid] = 0
        kw["nodata"] = 0
    path = data_gen.write_raster(
        tmp_path / f"{kind}.tif",
        img,
        crs="EPSG:4549",
        transform=data_gen.ground_transform(0.5),
        **kw,
    )
    scene = ingest.describe_scene(path, acquired="2024-03-15")
    assert scene.mask == kind
    assert scene.bands == (1, 2, 3)
    assert scene.valid_fraction == pytest.approx(0.75, abs=0.01)


def test_16bit_multiband(tmp_path: Path) -> None:
    img = data_gen.texture(128, 128, bands=4).astype(np.uint16) * 40
    path = data_gen.write_raster(
        tmp_path / "ms.tif",
        img,
        crs="EPSG:32651",
        transform=data_gen.ground_transform(2.0, "EPSG:32651"),
    )
    scene = ingest.describe_scene(path, acquired="2024-03-15")
    assert scene.dtype == "uint16" and len(scene.bands) == 4 and scene.platform == "satellite"


def test_acquisition_date_sources(tmp_path: Path) -> None:
    img, t = data_gen.texture(64, 64), data_gen.ground_transform(0.05)
    p = data_gen.write_raster(
        tmp_path / "baoshan_20240315_101500.tif", img, crs="EPSG:4549", transform=t
    )
    s = ingest.describe_scene(p)
    assert (s.acquired, s.acquired_source) == (
        datetime.fromisoformat("2024-03-15T10:15:00+08:00"),
        "filename",
    )
    p = data_gen.write_raster(
        tmp_path / "tagged.tif",
        img,
        crs="EPSG:4549",
        transform=t,
        tags={"TIFFTAG_DATETIME": "2023:11:02 09:30:00"},
    )
    s = ingest.describe_scene(p)
    assert (s.acquired.isoformat(), s.acquired_source) == ("2023-11-02T09:30:00+08:00", "tiff-tag")
    p.with_suffix(".json").write_text(
        json.dumps({"acquired": "2023-10-01T02:00:00Z", "sensor": "DJI P1"})
    )
    s = ingest.describe_scene(p)
    assert (s.acquired.astimezone(UTC).hour, s.acquired_source, s.sensor) == (
        2,
        "sidecar",
        "DJI P1",
    )
    s = ingest.describe_scene(p, acquired="2022-01-05", platform="satellite", sensor="GF-2")
    assert (s.acquired.date().isoformat(), s.acquired_source, s.platform, s.sensor) == (
        "2022-01-05",
        "explicit",
        "satellite",
        "GF-2",
    )
    with pytest.raises(ingest.InvalidDateError, match="ISO 8601"):
        ingest.describe_scene(p, acquired="15/03/2024")
    p = data_gen.write_raster(tmp_path / "nodate.tif", img, crs="EPSG:4549", transform=t)
    with pytest.warns(ingest.AcquisitionDateWarning, match="--acquired"):
        s = ingest.describe_scene(p)
    with pytest.raises(ingest.MissingAcquisitionDateError, match="--acquired"):
        ingest.write_stac_item(s)


def test_sha256_and_stac_item(ground: Path) -> None:
    scene = ingest.describe_scene(ground)
    assert scene.sha256 == hashlib.sha256(ground.read_bytes()).hexdigest()
    out = ingest.write_stac_item(scene)
    assert out == ground.with_name("ground_20230601.stac.json")
    item = pystac.Item.from_file(str(out))
    assert item.datetime == datetime(2023, 5, 31, 16, tzinfo=UTC)
    assert item.properties["gsd"] == pytest.approx(0.5, rel=0.01)
    assert item.properties["proj:code"] == "EPSG:4549"
    assert item.properties["weijian:sha256"] == scene.sha256
    lon, lat = item.geometry["coordinates"][0][0]
    assert abs(lon - 121.45) < 0.01 and abs(lat - 31.35) < 0.01
    assert item.assets["image"].href == "ground_20230601.tif"


@pytest.mark.parametrize(
    ("crs", "bounds", "message"),
    [
        ("EPSG:4326", (500.0, 30.0, 500.01, 30.01), "impossible in WGS 84"),
        ("EPSG:4326", (121.4, 95.0, 121.41, 95.01), "impossible"),
        # a zone-prefixed Gauss-Kruger easting (EPSG:4528 style) declared as EPSG:4549
        ("EPSG:4549", (40_637_980.0, 3_470_000.0, 40_638_100.0, 3_470_120.0), "impossible"),
        ("EPSG:3857", (1e8, 0.0, 1e8 + 100, 100.0), "impossible"),
        # Baoshan's northing with the sign lost: the southern hemisphere, far outside China
        ("EPSG:4549", (637_980.0, -3_470_120.0, 638_100.0, -3_470_000.0), "area of use"),
        ("EPSG:4490", (2.0, 48.0, 2.01, 48.01), "area of use"),  # CGCS2000 degrees in Paris
    ],
)
def test_impossible_bounds_are_refused(
    tmp_path: Path, crs: str, bounds: tuple[float, float, float, float], message: str
) -> None:
    with pytest.raises(ingest.ImplausibleBoundsError, match=message) as info:
        ingest.check_plausible_bounds(crs, bounds, name="flight.tif")
    assert "\n" not in str(info.value) and "gdal_edit.py -a_srs" in str(info.value)
    assert isinstance(info.value, ingest.IngestError)
    # the same image on disk is refused by describe_scene (and so by `scene add`/`pair prepare`)
    left, bottom, right, top = bounds
    transform = Affine((right - left) / 16, 0, left, 0, -(top - bottom) / 16, top)
    path = data_gen.write_raster(
        tmp_path / "bad.tif", data_gen.texture(16, 16), crs=crs, transform=transform
    )
    with pytest.raises(ingest.ImplausibleBoundsError):
        ingest.describe_scene(path)


@pytest.mark.parametrize(
    ("crs", "bounds"),
    [
        ("EPSG:4549", (637_980.0, 3_470_000.0, 640_000.0, 3_470_688.0)),  # Baoshan
        ("EPSG:4549", (680_000.0, 3_500_000.0, 681_000.0, 3_501_000.0)),  # Chongming, past 121.5 E
        ("EPSG:4326", (121.45, 31.34, 121.46, 31.35)),
        ("EPSG:4326", (301.45, 31.34, 301.46, 31.35)),  # 0..360 longitudes are legal
        ("EPSG:32651", (350_000.0, 3_468_000.0, 351_000.0, 3_469_000.0)),
        (
            "+proj=tmerc +lat_0=31.2363 +lon_0=121.4645 +k=1 +ellps=GRS80 +units=m",
            (-50, -50, 50, 50),
        ),
    ],
)
def test_plausible_bounds_pass(crs: str, bounds: tuple[float, float, float, float]) -> None:
    west, south, east, north = ingest.check_plausible_bounds(crs, bounds)
    assert -180 <= west < east <= 180 and -90 <= south < north <= 90
