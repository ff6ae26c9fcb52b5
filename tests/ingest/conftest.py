from __future__ import annotations

from pathlib import Path

import pytest

from weijian_testdata import rasters as data_gen


@pytest.fixture(scope="session")
def ground(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 512 px, 0.5 m ground-truth scene in EPSG:4549 (256 m square in Baoshan)."""
    return data_gen.make_ground(tmp_path_factory.mktemp("ground") / "ground_20230601.tif")
