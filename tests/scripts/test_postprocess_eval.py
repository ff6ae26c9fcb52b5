"""``scripts/postprocess_eval.py --misses``: why a labelled building is not found whole."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from tests.scripts.conftest import load_script

GSD = 0.5  # m/px: 40 px = 10 m²


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_script("postprocess_eval")


def _box(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    mask = np.zeros((64, 64), bool)
    mask[r0:r1, c0:c1] = True
    return mask


def test_each_reason_for_a_building_not_found_whole(script: ModuleType) -> None:
    building = _box(10, 20, 10, 20)  # 100 px = 25 m²
    polygons = np.zeros((64, 64), np.int32)

    def kind(*shapes: np.ndarray, of: np.ndarray = building) -> str:
        polygons[:] = 0
        for i, shape in enumerate(shapes, start=1):
            polygons[shape] = i
        return str(script.miss_kind(of, polygons, GSD))

    assert kind(_box(10, 20, 11, 20)) == "found"  # IoU 0.9
    assert kind(_box(2, 3, 2, 3), of=_box(2, 5, 2, 5)) == "speck"  # 9 px = 2.25 m²
    assert kind() == "missed"
    assert kind(_box(19, 30, 19, 30)) == "missed"  # 1 px of 100 under a polygon
    assert kind(_box(5, 40, 5, 40)) == "merged"  # all of it, inside a polygon 12x its size
    assert kind(_box(10, 20, 10, 15), _box(10, 20, 15, 20)) == "found"  # halves: IoU 0.5 counts
    thirds = (_box(10, 20, 10, 13), _box(10, 20, 13, 16), _box(10, 20, 16, 20))
    assert kind(*thirds) == "split"  # all of it, no polygon over half of it
    assert kind(_box(10, 20, 10, 14), _box(10, 20, 16, 20)) == "split"  # 80 %, two polygons
    assert kind(_box(0, 30, 10, 17)) == "merged"  # 70 % of it in one polygon 3x its size
    assert kind(_box(10, 13, 10, 20)) == "partly covered"  # 30 %
    assert script.MISS_KINDS[0] == "found"
