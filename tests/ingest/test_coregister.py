"""Co-registration on real imagery: known sub-pixel shifts are recovered within 0.2 pixel.

The real LEVIR-CD tile is placed on the nominal transform documented in
``weijian_testdata.rasters`` (EPSG:4549,
0.5 m, top-left at 121.45 E 31.35 N); the later epoch is the same pixels declared at a position
moved by a known sub-pixel amount, so the working grid resamples it by that fraction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from scipy import ndimage

import ingest
from ingest.coregister import estimate_shift, tile_shift
from weijian_testdata import rasters as data_gen

pytestmark = pytest.mark.filterwarnings("ignore::ingest.AcquisitionDateWarning")

SHIFTS_PX = [(0.3, -0.45), (-1.7, 0.25), (0.05, 0.8)]


@pytest.mark.parametrize(("dx_px", "dy_px"), SHIFTS_PX)
def test_real_image_known_subpixel_shift(tmp_path: Path, dx_px: float, dy_px: float) -> None:
    a, _, _ = data_gen.real_pair_geotiffs(tmp_path, "test_7")
    # the later epoch: the earlier image's own pixels, declared at a moved position
    with rasterio.open(a) as src:
        moved_a = data_gen.write_raster(
            tmp_path / "moved_A.tif",
            src.read(),
            crs="EPSG:4549",
            transform=data_gen.ground_transform(0.5, offset_m=(dx_px * 0.5, dy_px * 0.5)),
        )
    pair = ingest.prepare_pair(a, moved_a, gsd_m=0.5, histogram_match=False)
    assert pair.shift_m[0] / 0.5 == pytest.approx(dx_px, abs=0.2)
    assert pair.shift_m[1] / 0.5 == pytest.approx(dy_px, abs=0.2)


def test_pixel_shift_of_real_image_with_fourier_shift() -> None:
    from PIL import Image

    img = np.asarray(Image.open(data_gen.CHANGE_PAIRS / "levir_1024" / "A" / "test_12.png"))[
        ..., :3
    ]
    grey = img.mean(axis=2)
    shifted = np.fft.ifft2(
        ndimage.fourier_shift(np.fft.fft2(grey), (0.37, -0.62))
    ).real  # rows down, cols
    samples = []
    for r in range(64, 1024 - 320, 192):
        for c in range(64, 1024 - 320, 192):
            win = (slice(r, r + 256), slice(c, c + 256))
            samples.append((grey[win][None], shifted[win][None], np.ones((256, 256), bool)))
    est = estimate_shift(samples)
    # content moved 0.37 px down (south) and 0.62 px left (west)
    assert est.dx_px == pytest.approx(-0.62, abs=0.1) and est.dy_px == pytest.approx(-0.37, abs=0.1)
    assert est.reliable and est.tiles_used >= 12


def test_tile_shift_rejects_invalid_or_flat_tiles() -> None:
    rng = np.random.default_rng(0)
    img = rng.normal(100, 20, (1, 64, 64))
    half = np.ones((64, 64), bool)
    half[:, :40] = False
    assert tile_shift(img, img, half) is None
    assert (
        tile_shift(np.full((1, 64, 64), 7.0), np.full((1, 64, 64), 7.0), np.ones((64, 64), bool))
        is None
    )
    assert estimate_shift([]).tiles_used == 0
