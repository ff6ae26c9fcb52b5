"""Opening and validating rasters: every malformed input gives its clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image

import ingest
from ingest.raster import (
    MOSAIC_NAME,
    build_mosaic_vrt,
    open_raster,
    parse_crs,
    projected_metres_crs,
)
from weijian_testdata import rasters as data_gen

pytestmark = pytest.mark.filterwarnings("ignore::ingest.AcquisitionDateWarning")


def test_png_without_georeference(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    Image.fromarray(data_gen.texture(64, 64).transpose(1, 2, 0)).save(path)
    with pytest.raises(ingest.NotGeoreferencedError, match="no georeference"):
        ingest.describe_scene(path)


@pytest.mark.parametrize(
    ("name", "crs", "transform", "error", "match"),
    [
        pytest.param(
            "nocrs.tif",
            None,
            Affine(0.5, 0, 1000, 0, -0.5, 2000),
            ingest.NotGeoreferencedError,
            "gdal_edit",
            id="geotiff_without_crs",
        ),
        pytest.param(
            "rot.tif",
            "EPSG:4549",
            Affine(0.5, 0.1, 638000, 0.1, -0.5, 3470000),
            ingest.RotatedGridError,
            "gdalwarp",
            id="rotated_geotransform",
        ),
        pytest.param(
            "local.tif",
            'LOCAL_CS["site grid",UNIT["metre",1]]',
            Affine(0.5, 0, 0, 0, -0.5, 100),
            ingest.UnknownCRSError,
            "engineering",
            id="engineering_crs_is_unknown",
        ),
    ],
)
def test_unusable_georeference(
    tmp_path: Path,
    name: str,
    crs: str | None,
    transform: Affine,
    error: type[Exception],
    match: str,
) -> None:
    """No CRS, a rotated grid or a local engineering CRS: each its own error and fix."""
    path = data_gen.write_raster(
        tmp_path / name, data_gen.texture(64, 64), crs=crs, transform=transform
    )
    with pytest.raises(error, match=match):
        ingest.describe_scene(path)


def test_unparsable_and_unprojected_working_crs() -> None:
    with pytest.raises(ingest.UnknownCRSError, match="EPSG:4549"):
        parse_crs("EPSG:999999")
    with pytest.raises(ingest.UnknownCRSError, match="projected in metres"):
        projected_metres_crs("EPSG:4490")
    assert projected_metres_crs(
        "+proj=tmerc +lat_0=0 +lon_0=121.46 +k=1 +x_0=0 +y_0=0 +ellps=GRS80 +units=m"
    ).is_projected


def test_not_a_raster_and_missing_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"this is not a tiff" * 100)
    with pytest.raises(ingest.CorruptRasterError, match="cannot be opened"):
        ingest.describe_scene(junk)
    with pytest.raises(ingest.CorruptRasterError, match="does not exist"):
        ingest.describe_scene(tmp_path / "missing.tif")


def test_truncated_file(tmp_path: Path) -> None:
    path = data_gen.write_raster(
        tmp_path / "full.tif",
        data_gen.texture(512, 512),
        crs="EPSG:4549",
        transform=data_gen.ground_transform(0.5),
    )
    cut = tmp_path / "cut.tif"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ingest.CorruptRasterError, match="truncated"):
        ingest.describe_scene(cut)


def test_all_nodata_is_empty(tmp_path: Path) -> None:
    path = data_gen.write_raster(
        tmp_path / "empty.tif",
        np.zeros((3, 64, 64), np.uint8),
        crs="EPSG:4549",
        transform=data_gen.ground_transform(0.5),
        nodata=0,
    )
    with pytest.raises(ingest.EmptyRasterError, match="no valid pixel"):
        ingest.describe_scene(path)


def _tiles(folder: Path, crs: str = "EPSG:4549", gap: bool = True, **kw: object) -> None:
    folder.mkdir()
    img = data_gen.texture(256, 384, seed=3)
    # three 128-px-wide tiles at 5 cm; the third is moved one tile right, leaving a gap
    for i in range(3):
        col = i * 128 + (128 if gap and i == 2 else 0)
        t = data_gen.ground_transform(0.05, crs) @ Affine.translation(col, 0)
        data_gen.write_raster(
            folder / f"tile_{i}.tif", img[:, :, i * 128 : (i + 1) * 128], crs=crs, transform=t, **kw
        )


def test_folder_of_tiles_is_one_mosaic_with_gap_masked(tmp_path: Path) -> None:
    _tiles(tmp_path / "flight_20240315")
    scene = ingest.describe_scene(tmp_path / "flight_20240315")
    assert scene.source.endswith(MOSAIC_NAME)
    assert (scene.width, scene.height) == (512, 256)
    assert scene.valid_fraction == pytest.approx(0.75, abs=0.01)
    assert scene.footprint.area == pytest.approx(0.75 * 512 * 256 * 0.05**2, rel=0.02)
    assert scene.platform == "drone" and scene.acquired is not None and scene.acquired.day == 15
    stac = ingest.stac_item(scene)
    assert stac.assets["image"].href == MOSAIC_NAME and stac.properties["gsd"] == pytest.approx(
        0.05, rel=0.01
    )
    with rasterio.open(scene.source) as ds:
        np.testing.assert_array_equal(
            ds.read(window=((0, 256), (0, 384)))[:, :, :256],
            data_gen.texture(256, 384, seed=3)[:, :, :256],
        )


def test_a_tile_half_copied_in_the_middle_of_a_flight_is_named(tmp_path: Path) -> None:
    """Before, only the mosaic's first and last blocks were read: the middle tile passed."""
    _tiles(tmp_path / "flight_20240315", gap=False)
    middle = tmp_path / "flight_20240315" / "tile_1.tif"
    data = middle.read_bytes()
    middle.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ingest.CorruptRasterError, match=r"tile tile_1\.tif of .*truncated"):
        ingest.describe_scene(tmp_path / "flight_20240315")


def test_mosaic_refuses_mixed_crs(tmp_path: Path) -> None:
    _tiles(tmp_path / "mixed", gap=False)
    data_gen.write_raster(
        tmp_path / "mixed" / "tile_9.tif",
        data_gen.texture(64, 64),
        crs="EPSG:32651",
        transform=data_gen.ground_transform(0.05, "EPSG:32651"),
    )
    with pytest.raises(ingest.MosaicError, match=r"tile_9\.tif.*CRS"):
        build_mosaic_vrt(tmp_path / "mixed")


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ingest.MosaicError, match="no raster tiles"):
        build_mosaic_vrt(tmp_path)


def test_open_raster_returns_validated_dataset(ground: Path) -> None:
    with open_raster(ground) as ds:
        assert ds.count == 3 and ds.crs.to_epsg() == 4549
