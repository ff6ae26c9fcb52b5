"""GCJ-02 (高德/腾讯 "火星坐标") and BD-09 (百度) lon/lat back to WGS 84 ≈ CGCS2000.

Web maps in China show coordinates with a deliberate, non-linear offset: GCJ-02 (the national
"encryption" of WGS 84, used by 高德/AMap, 腾讯 and Google's China tiles) and BD-09 (Baidu's
further rotation-and-shift of GCJ-02). A point copied from 高德 is some 400-500 m off in
Shanghai. Nothing in EPSG or PROJ describes these, so a file whose columns say GCJ-02 or BD-09
must be converted here before it is reprojected to the working CRS.

Method (written here from the public description of the transforms):

* **Forward GCJ-02** (WGS 84 → GCJ-02): the widely published reconstruction of the offset:
  two polynomial-plus-sine series in (lon - 105°, lat - 35°) giving metres-like shifts, scaled
  to degrees on the Krasovsky ellipsoid (a = 6,378,245 m, e² = 0.006693421622965943).
* **Forward BD-09** (GCJ-02 → BD-09): ``z = r + 2e-5·sin(lat·π·3000/180)``,
  ``θ = atan2(lat, lon) + 3e-6·cos(lon·π·3000/180)``, then ``(z cos θ + 0.0065,
  z sin θ + 0.006)``.
* **Inverses** are not closed-form: they are found by fixed-point iteration,
  ``p ← p - (forward(p) - target)``, starting from the target itself. The offset's derivative is
  about 10⁻³, so each step gains about three decimal digits; iteration stops when
  ``forward(p)`` reproduces the input within 1e-10° (about 0.01 mm), at most 30 steps.

Accuracy, stated in metres (``tests/gis_db/test_gcj02.py`` measures it over Shanghai):

* the inversion reproduces the forward formulas to better than **1 mm** (round trip
  WGS 84 → GCJ-02 → WGS 84 and GCJ-02 → BD-09 → GCJ-02 over a grid of the city);
* the forward formulas are a public reconstruction of the official (unpublished) algorithm;
  they are reported to agree with it within about a metre, which cannot be checked here. The
  point a user picks on a web map is itself rarely better than a few metres.

WGS 84 and CGCS2000: the two datums use nearly identical ellipsoids (semi-minor axes differ by
0.1 mm) and their frames agree to centimetres at epoch 2000; a current GPS (WGS 84) position
differs from the same point's CGCS2000 coordinates by the plate motion since 2000 (about 3 cm a
year in Shanghai, so a few decimetres by now). PROJ treats EPSG:4326 → EPSG:4490 as a null
transform; so do we: the result of :func:`gcj02_to_wgs84` is used as CGCS2000 (EPSG:4490).
That residual is far below the footprint sizes and the 400-500 m offset being removed.

Outside mainland China GCJ-02 applies no offset; this module applies the formulas everywhere
(callers only use it for files that say GCJ-02 or BD-09, and check the Shanghai extent after).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Krasovsky 1940 ellipsoid, used by the GCJ-02 formulas: semi-major axis (m), e².
KRASOVSKY_A: Final = 6_378_245.0
KRASOVSKY_E2: Final = 0.006693421622965943
#: BD-09's angular frequency, radians per degree.
_BD_K: Final = np.pi * 3000.0 / 180.0
#: Inverse iteration: stop when forward(p) is within this of the target, degrees (~0.01 mm).
TOLERANCE_DEG: Final = 1e-10
MAX_ITERATIONS: Final = 30

#: Names by which files and users call the two systems (compared in lower case, no spaces,
#: hyphens or underscores).
GCJ02_NAMES: Final = frozenset(
    {"gcj02", "gcj", "gcj02坐标", "火星坐标", "火星坐标系", "高德", "高德坐标", "amap", "国测局"}
)
BD09_NAMES: Final = frozenset({"bd09", "bd09ll", "bd", "百度", "百度坐标", "baidu"})

Floats = NDArray[np.float64]
Forward = Callable[[ArrayLike, ArrayLike], tuple[Floats, Floats]]


def offset_system(name: str | None) -> str | None:
    """``"GCJ-02"`` or ``"BD-09"`` when ``name`` (a header's ``(...)`` or ``--crs``) means one."""
    if not name:
        return None
    key = "".join(ch for ch in str(name).strip().lower() if ch not in " -_:")
    if key in GCJ02_NAMES:
        return "GCJ-02"
    if key in BD09_NAMES:
        return "BD-09"
    return None


def _shift_m(x: Floats, y: Floats) -> tuple[Floats, Floats]:
    """The GCJ-02 series: (easting-like, northing-like) shift in "metres" before scaling."""
    common = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    lat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
    lat += common
    lat += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    lat += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    lon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
    lon += common
    lon += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    lon += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    return lon, lat


def _as_arrays(lon: ArrayLike, lat: ArrayLike) -> tuple[Floats, Floats]:
    x = np.asarray(lon, dtype=np.float64)
    y = np.asarray(lat, dtype=np.float64)
    return np.broadcast_arrays(x, y)  # type: ignore[return-value]


def wgs84_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[Floats, Floats]:
    """WGS 84 (≈ CGCS2000) lon/lat degrees to GCJ-02 lon/lat degrees (the forward offset)."""
    x, y = _as_arrays(lon, lat)
    d_lon, d_lat = _shift_m(x - 105.0, y - 35.0)
    rad = np.radians(y)
    s = 1.0 - KRASOVSKY_E2 * np.sin(rad) ** 2
    d_lat = d_lat * 180.0 / ((KRASOVSKY_A * (1.0 - KRASOVSKY_E2)) / (s * np.sqrt(s)) * np.pi)
    d_lon = d_lon * 180.0 / (KRASOVSKY_A / np.sqrt(s) * np.cos(rad) * np.pi)
    return x + d_lon, y + d_lat


def gcj02_to_bd09(lon: ArrayLike, lat: ArrayLike) -> tuple[Floats, Floats]:
    """GCJ-02 lon/lat degrees to BD-09 (Baidu) lon/lat degrees."""
    x, y = _as_arrays(lon, lat)
    z = np.hypot(x, y) + 0.00002 * np.sin(y * _BD_K)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * _BD_K)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def _invert(forward: Forward, lon: ArrayLike, lat: ArrayLike) -> tuple[Floats, Floats]:
    """Solve ``forward(p) = (lon, lat)`` for p by fixed-point iteration (see module docstring)."""
    tx, ty = _as_arrays(lon, lat)
    x, y = tx.copy(), ty.copy()
    finite = np.isfinite(tx) & np.isfinite(ty)
    for _ in range(MAX_ITERATIONS):
        fx, fy = forward(x, y)
        ex, ey = fx - tx, fy - ty
        x = x - np.where(finite, ex, 0.0)
        y = y - np.where(finite, ey, 0.0)
        worst = np.max(np.abs(np.where(finite, np.maximum(np.abs(ex), np.abs(ey)), 0.0)), initial=0)
        if worst < TOLERANCE_DEG:
            break
    return x, y


def gcj02_to_wgs84(lon: ArrayLike, lat: ArrayLike) -> tuple[Floats, Floats]:
    """GCJ-02 lon/lat degrees to WGS 84 (≈ CGCS2000, EPSG:4490) lon/lat degrees.

    The forward offset inverted by iteration; the result reproduces the input through
    :func:`wgs84_to_gcj02` within 1e-10° (< 1 mm). NaN stays NaN.
    """
    return _invert(wgs84_to_gcj02, lon, lat)


def bd09_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[Floats, Floats]:
    """BD-09 (Baidu) lon/lat degrees to GCJ-02 lon/lat degrees (iterated inverse, < 1 mm)."""
    return _invert(gcj02_to_bd09, lon, lat)


def bd09_to_wgs84(lon: ArrayLike, lat: ArrayLike) -> tuple[Floats, Floats]:
    """BD-09 (Baidu) lon/lat degrees to WGS 84 (≈ CGCS2000, EPSG:4490) lon/lat degrees."""
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


def to_wgs84(system: str, lon: ArrayLike, lat: ArrayLike) -> tuple[Floats, Floats]:
    """Lon/lat in ``system`` (``"GCJ-02"`` or ``"BD-09"``) to WGS 84 ≈ CGCS2000 degrees."""
    if system == "GCJ-02":
        return gcj02_to_wgs84(lon, lat)
    if system == "BD-09":
        return bd09_to_wgs84(lon, lat)
    raise ValueError(f"unknown offset coordinate system {system!r}; use GCJ-02 or BD-09")
