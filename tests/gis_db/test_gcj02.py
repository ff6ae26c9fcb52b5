"""GCJ-02 / BD-09 conversion: accuracy in metres over Shanghai, independent reference values."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import Geod

from gis_db.gcj02 import (
    bd09_to_gcj02,
    bd09_to_wgs84,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    offset_system,
    to_wgs84,
    wgs84_to_gcj02,
)

GEOD = Geod(ellps="WGS84")
#: Shanghai, a 50 x 50 grid of lon/lat (degrees)
LON, LAT = np.meshgrid(np.linspace(120.85, 122.15, 50), np.linspace(30.65, 31.85, 50))


def metres(lon1: np.ndarray, lat1: np.ndarray, lon2: np.ndarray, lat2: np.ndarray) -> np.ndarray:
    return np.asarray(GEOD.inv(lon1, lat1, lon2, lat2)[2])


def test_gcj02_offset_in_shanghai_is_hundreds_of_metres() -> None:
    gx, gy = wgs84_to_gcj02(LON, LAT)
    offset = metres(LON, LAT, gx, gy)
    # the reason for the whole module: 高德 points are ~450-500 m off in Shanghai
    assert 400 < offset.min() and offset.max() < 550
    # the shift is east and south here
    assert (gx > LON).all() and (gy < LAT).all()


def test_inverse_reproduces_the_forward_offset_within_a_millimetre() -> None:
    gx, gy = wgs84_to_gcj02(LON, LAT)
    wx, wy = gcj02_to_wgs84(gx, gy)
    error = metres(LON, LAT, wx, wy)
    print(f"GCJ-02 round trip: max {error.max() * 1000:.6f} mm over {error.size} points")
    assert error.max() < 0.001


def test_bd09_round_trip_within_a_millimetre() -> None:
    gx, gy = wgs84_to_gcj02(LON, LAT)
    bx, by = gcj02_to_bd09(gx, gy)
    assert 800 < metres(gx, gy, bx, by).min()  # Baidu adds roughly another 0.9-1 km
    hx, hy = bd09_to_gcj02(bx, by)
    assert metres(gx, gy, hx, hy).max() < 0.001
    wx, wy = bd09_to_wgs84(bx, by)
    assert metres(LON, LAT, wx, wy).max() < 0.001


def test_independent_reference_values() -> None:
    # gcoord (hujiulong/gcoord, MIT) unit tests: GCJ02 -> WGS84 and GCJ02 -> BD09 of (123, 45),
    # given there to 5 decimal places (~1 m)
    wx, wy = gcj02_to_wgs84(123.0, 45.0)
    assert (float(wx), float(wy)) == pytest.approx((122.99395597, 44.99804071), abs=5e-6)
    bx, by = gcj02_to_bd09(123.0, 45.0)
    assert (float(bx), float(by)) == pytest.approx((123.00636499, 45.00636899), abs=5e-6)


def test_nan_stays_nan_and_does_not_spoil_other_points() -> None:
    wx, wy = gcj02_to_wgs84([121.48, np.nan], [31.23, 31.2])
    assert np.isnan(wx[1]) and np.isfinite(wx[0]) and np.isfinite(wy[0])
    back = wgs84_to_gcj02(wx[0], wy[0])
    assert metres(back[0], back[1], np.array(121.48), np.array(31.23)) < 0.001


@pytest.mark.parametrize(
    ("name", "system"),
    [
        ("GCJ-02", "GCJ-02"),
        ("gcj02", "GCJ-02"),
        ("火星坐标", "GCJ-02"),
        ("高德", "GCJ-02"),
        ("BD-09", "BD-09"),
        ("百度", "BD-09"),
        ("EPSG:4490", None),
        ("", None),
    ],
)
def test_names(name: str, system: str | None) -> None:
    assert offset_system(name) == system


def test_to_wgs84_refuses_other_systems() -> None:
    with pytest.raises(ValueError, match="GCJ-02 or BD-09"):
        to_wgs84("EPSG:4326", 121.0, 31.0)
