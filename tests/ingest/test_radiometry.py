"""Histogram matching suppresses changes of light and season."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

import ingest
from ingest.radiometry import apply_histogram, histogram_tables
from weijian_testdata import rasters as data_gen

pytestmark = pytest.mark.filterwarnings("ignore::ingest.AcquisitionDateWarning")


def test_tables_undo_a_monotonic_change() -> None:
    rng = np.random.default_rng(1)
    before = rng.uniform(0, 255, (3, 64, 64))
    after = 0.6 * before**1.1 / 255**0.1 + 30  # darker, different contrast
    tables = histogram_tables([(before, after, np.ones((64, 64), bool))])
    assert tables is not None and len(tables) == 3
    np.testing.assert_allclose(apply_histogram(after, tables), before, atol=2.5)
    assert histogram_tables([(before, after, np.zeros((64, 64), bool))]) is None


def test_pair_reads_matched_later_epoch(tmp_path: Path, ground: Path) -> None:
    with rasterio.open(ground) as src:
        img = src.read().astype(np.float32)
    # a brighter, 16-bit later epoch of the same ground
    after16 = np.clip(img * 180 + 2000, 0, 65535).astype(np.uint16)
    after = data_gen.write_raster(
        tmp_path / "after_20240315.tif",
        after16,
        crs="EPSG:4549",
        transform=data_gen.ground_transform(0.5),
    )
    pair = ingest.prepare_pair(ground, after, histogram_match=True)
    assert pair.histogram is not None and pair.after.dtype == "uint16"
    w = rasterio.windows.Window(64, 64, 256, 256)
    matched = ingest.read_window(pair, w)
    with ingest.PairReader(pair, histogram_match=False) as reader:
        raw = reader.read(w)
    before_mean = matched.data[0][:, matched.valid].mean()
    assert matched.data[1][:, matched.valid].mean() == pytest.approx(before_mean, rel=0.03)
    assert raw.data[1][:, raw.valid].mean() > 10 * before_mean
    assert np.abs(matched.data[0] - matched.data[1])[:, matched.valid].mean() < 3
