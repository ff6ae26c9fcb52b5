"""Tiling: a lazy iterator of independent, picklable tasks that skips empty windows."""

from __future__ import annotations

import itertools
import pickle

import dask
import numpy as np
import pytest

import ingest
from ingest.tiles import TileTask, iter_tiles, read_tiles
from weijian_testdata import rasters as data_gen

pytestmark = pytest.mark.filterwarnings("ignore::ingest.AcquisitionDateWarning")


@pytest.fixture(scope="module")
def triangle_pair(tmp_path_factory: pytest.TempPathFactory) -> ingest.AlignedPair:
    """600 x 600 px at 0.5 m; the later epoch is valid only on the upper-left triangle."""
    d = tmp_path_factory.mktemp("tri")
    img = data_gen.texture(600, 600, seed=2)
    before = data_gen.write_raster(
        d / "before_20230101.tif", img, crs="EPSG:4549", transform=data_gen.ground_transform(0.5)
    )
    yy, xx = np.mgrid[:600, :600]
    after_img = img.copy()
    after_img[:, xx + yy > 600] = 0
    after = data_gen.write_raster(
        d / "after_20240101.tif",
        after_img,
        crs="EPSG:4549",
        transform=data_gen.ground_transform(0.5),
        nodata=0,
    )
    return ingest.prepare_pair(before, after, min_overlap_fraction=0.1)


def test_windows_cover_grid_with_overlap_and_skip_empty(triangle_pair: ingest.AlignedPair) -> None:
    pair = triangle_pair
    tasks = iter_tiles(pair, size=128, overlap=16)
    assert not isinstance(tasks, list)  # lazy
    tasks = list(tasks)
    cols = sorted({t.col_off for t in tasks})
    assert cols[:3] == [0, 112, 224]
    assert max(t.col_off + t.width for t in tasks) == pair.width
    assert all(t.width <= 128 and t.height <= 128 for t in tasks)
    full = len(range(0, pair.width - 16, 112)) * len(range(0, pair.height - 16, 112))
    assert len(tasks) < full  # the lower-right windows are outside the common footprint
    covered = np.zeros((pair.height, pair.width), bool)
    for t in tasks:
        covered[t.row_off : t.row_off + t.height, t.col_off : t.col_off + t.width] = True
    yy, xx = np.mgrid[: pair.height, : pair.width]
    assert covered[xx + yy < pair.width - 4].all()


def test_tile_contents(triangle_pair: ingest.AlignedPair) -> None:
    tile = next(iter(read_tiles(triangle_pair, size=128, overlap=16)))
    assert tile.data.shape == (2, 3, 128, 128) and tile.data.dtype == np.float32
    assert tile.masks.shape == (2, 128, 128) and tile.valid.all()
    assert tile.transform.c == triangle_pair.transform[2]
    last = list(itertools.islice(iter_tiles(triangle_pair, 128, 16), 0, None))[-1].read()
    assert not last.masks[1].all() and last.masks[0].any()
    assert (last.data[1][:, ~last.masks[1]] == 0).all()


def test_tasks_are_independent_and_picklable(triangle_pair: ingest.AlignedPair) -> None:
    tasks = list(itertools.islice(iter_tiles(triangle_pair, 128, 16), 4))
    clones = [pickle.loads(pickle.dumps(t)) for t in tasks]
    assert clones == tasks and len(pickle.dumps(tasks[0])) < 50_000
    results = dask.compute(*[dask.delayed(TileTask.read)(t) for t in clones], scheduler="threads")
    for task, tile in zip(tasks, results, strict=True):
        np.testing.assert_array_equal(tile.data, task.read().data)


def test_bad_tile_arguments(triangle_pair: ingest.AlignedPair) -> None:
    with pytest.raises(ValueError, match="overlap"):
        next(iter_tiles(triangle_pair, size=64, overlap=64))
