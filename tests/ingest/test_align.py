"""Aligning pairs: working grid, cross-CRS alignment, resampling, overlap/band checks, spec I/O."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

import ingest
from ingest.align import working_grid
from weijian_testdata import rasters as data_gen

pytestmark = pytest.mark.filterwarnings("ignore::ingest.AcquisitionDateWarning")


@pytest.mark.parametrize(
    ("crs", "gsd", "offset"),
    [
        ("EPSG:4326", 0.3, (0.35, -0.6)),
        ("EPSG:3857", 0.3, (-0.8, 0.45)),
        ("EPSG:32651", 1.0, (1.3, 0.2)),
        ("EPSG:4549", 0.5, (0.0, 0.0)),
    ],
)
def test_cross_crs_pair_recovers_known_shift(
    tmp_path: Path, ground: Path, crs: str, gsd: float, offset: tuple[float, float]
) -> None:
    after = data_gen.resample_to(ground, tmp_path / "after_20240315.tif", crs, gsd, offset_m=offset)
    pair = ingest.prepare_pair(
        ground, after, working_crs="EPSG:4549", gsd_m=0.5, histogram_match=False
    )
    assert pair.overlap_fraction > 0.95
    assert pair.shift_tiles_used >= 10
    # within 0.2 working-grid pixel (0.1 m)
    assert pair.shift_m[0] == pytest.approx(offset[0], abs=0.1)
    assert pair.shift_m[1] == pytest.approx(offset[1], abs=0.1)
    assert pair.after.resampling == ("average" if gsd < 0.5 else "bilinear")
    # after correction the epochs agree pixel for pixel in the interior
    tile = ingest.read_window(pair, rasterio.windows.Window(100, 100, 256, 256))
    diff = np.abs(tile.data[0] - tile.data[1])[:, tile.valid].mean()
    assert diff < (12 if gsd < 1 else 25)


def test_grid_is_snapped_to_gsd_multiples() -> None:
    from shapely import box

    t, w, h = working_grid(box(100.3, 200.2, 160.9, 230.1), 0.5)
    assert (t.c, t.f, t.a, t.e) == (100.0, 230.5, 0.5, -0.5)
    assert (w, h) == (122, 61)


def test_drone_downsampling_uses_area_average(tmp_path: Path) -> None:
    img = data_gen.texture(400, 400, seed=5)
    drone = data_gen.write_raster(
        tmp_path / "drone_20240315.tif",
        img,
        crs="EPSG:4549",
        transform=data_gen.ground_transform(0.05),
    )
    pair = ingest.prepare_pair(drone, drone, gsd_m=0.5, coregister=False, histogram_match=False)
    assert pair.before.resampling == "average" and (pair.width, pair.height) == (40, 40)
    tile = ingest.read_window(pair, rasterio.windows.Window(0, 0, 40, 40))
    expected = img.reshape(3, 40, 10, 40, 10).mean(axis=(2, 4))
    np.testing.assert_allclose(tile.data[0], expected, atol=1.0)


def test_masks_and_nodata_follow_into_the_grid(tmp_path: Path, ground: Path) -> None:
    img = data_gen.texture(512, 512, seed=0)
    alpha = np.full((512, 512), 255, np.uint8)
    alpha[:, :128] = 0
    after = data_gen.write_raster(
        tmp_path / "rgba_20240315.tif",
        img,
        crs="EPSG:4549",
        transform=data_gen.ground_transform(0.5),
        alpha=alpha,
    )
    pair = ingest.prepare_pair(ground, after, gsd_m=0.5, coregister=False, histogram_match=False)
    assert pair.after.has_alpha and pair.after.bands == (1, 2, 3)
    assert pair.overlap_fraction == pytest.approx(1.0, abs=0.02)
    assert pair.width == pytest.approx(384, abs=2)
    tile = ingest.read_window(pair, rasterio.windows.Window(0, 0, pair.width, pair.height))
    assert tile.data.shape == (2, 3, pair.height, pair.width)
    assert tile.valid.mean() > 0.98


def test_no_overlap_and_insufficient_overlap(tmp_path: Path, ground: Path) -> None:
    img = data_gen.texture(128, 128)
    far = data_gen.write_raster(
        tmp_path / "far.tif",
        img,
        crs="EPSG:4549",
        transform=data_gen.ground_transform(0.5, offset_m=(5000, 0)),
    )
    with pytest.raises(ingest.NoOverlapError, match="do not overlap"):
        ingest.prepare_pair(ground, far)
    edge = data_gen.write_raster(
        tmp_path / "edge.tif",
        img,
        crs="EPSG:4549",
        transform=data_gen.ground_transform(0.5, offset_m=(250, 0)),
    )
    with pytest.raises(ingest.InsufficientOverlapError, match="MIN_OVERLAP_FRACTION"):
        ingest.prepare_pair(ground, edge, min_overlap_fraction=0.2)
    pair = ingest.prepare_pair(ground, edge, min_overlap_fraction=0.05, coregister=False)
    assert pair.overlap_fraction == pytest.approx(6 / 64, abs=0.02)


def test_band_matching(tmp_path: Path, ground: Path) -> None:
    t = data_gen.ground_transform(0.5)
    grey = data_gen.write_raster(
        tmp_path / "grey.tif", data_gen.texture(128, 128, bands=1), crs="EPSG:4549", transform=t
    )
    with pytest.raises(ingest.BandMismatchError, match="gdal_translate"):
        ingest.prepare_pair(ground, grey)
    ms = data_gen.texture(128, 128, bands=4)
    path = data_gen.write_raster(tmp_path / "ms.tif", ms, crs="EPSG:4549", transform=t)
    with rasterio.open(path, "r+") as ds:
        ds.colorinterp = [
            rasterio.enums.ColorInterp[c] for c in ("blue", "green", "red", "undefined")
        ]
    pair = ingest.prepare_pair(ground, path, coregister=False, histogram_match=False)
    assert pair.after.bands == (3, 2, 1)


def test_shift_beyond_limit_is_refused(tmp_path: Path, ground: Path) -> None:
    after = data_gen.resample_to(
        ground, tmp_path / "moved.tif", "EPSG:4549", 0.5, offset_m=(3.0, 2.0)
    )
    with pytest.raises(ingest.ShiftTooLargeError, match="MAX_SHIFT_M"):
        ingest.prepare_pair(ground, after, max_shift_m=2.0)
    pair = ingest.prepare_pair(ground, after, max_shift_m=5.0)
    assert pair.shift_m == pytest.approx((3.0, 2.0), abs=0.1)


def test_textureless_pair_warns_and_applies_no_shift(tmp_path: Path) -> None:
    flat = data_gen.write_raster(
        tmp_path / "flat.tif",
        np.full((3, 300, 300), 90, np.uint8),
        crs="EPSG:4549",
        transform=data_gen.ground_transform(0.5),
    )
    with pytest.warns(ingest.CoregistrationWarning, match="texture"):
        pair = ingest.prepare_pair(flat, flat)
    assert pair.shift_m == (0.0, 0.0)


def test_spec_round_trips_through_json_and_pickle(tmp_path: Path, ground: Path) -> None:
    pair = ingest.prepare_pair(ground, ground)
    again = ingest.AlignedPair.load(pair.save(tmp_path / "pair.json"))
    assert again == pair
    assert pickle.loads(pickle.dumps(pair)) == pair
    assert again.epoch_transform("after") == Affine.translation(*pair.shift_m) @ pair.affine
    with pytest.raises(ingest.PairSpecError, match="pair prepare"):
        ingest.AlignedPair.from_json('{"version": 99}')
