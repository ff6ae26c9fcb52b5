"""Orthophoto map tiles and before/after image chips, read from the registered scenes' COGs.

Only files registered as a scene (``scene.path``) are ever opened: a request names a scene id,
never a path, so no request can read another file (no path traversal). Images that are not
8-bit are stretched linearly between their 2nd and 98th percentiles, computed once per scene
from its overview and cached, so adjacent tiles match.
"""

from __future__ import annotations

import functools
import io
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from rio_tiler.errors import RioTilerError, TileOutsideBounds
from rio_tiler.io import Reader
from sqlalchemy import Connection, text

from web_map.errors import ImageryUnavailableError

TILE_SIZE = 256
_STRETCH: dict[str, tuple[float, float]] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class SceneImage:
    """A registered scene's image file."""

    scene_id: int
    path: Path


def scene_image(conn: Connection, scene_id: int) -> SceneImage:
    """The image file of registered scene ``scene_id`` (404 when missing or unreadable)."""
    stored = conn.execute(text("SELECT path FROM scene WHERE id = :i"), {"i": scene_id}).scalar()
    if not stored:
        raise ImageryUnavailableError(f"scene {scene_id} has no image file registered")
    path = Path(stored)
    if not path.is_file():
        raise ImageryUnavailableError(f"the image of scene {scene_id} is not on disk any more")
    return SceneImage(scene_id, path)


def _indexes(reader: Reader) -> list[int]:
    count = int(reader.dataset.count)  # type: ignore[union-attr]
    return [1, 2, 3] if count >= 3 else [1]


def _stretch(reader: Reader, key: str) -> tuple[float, float]:
    with _LOCK:
        if key in _STRETCH:
            return _STRETCH[key]
    preview = reader.preview(indexes=_indexes(reader), max_size=512)
    data = preview.array.compressed() if np.ma.isMaskedArray(preview.array) else preview.array
    lo, hi = np.percentile(data, (2, 98)) if data.size else (0.0, 255.0)
    if hi <= lo:
        hi = lo + 1
    with _LOCK:
        _STRETCH[key] = (float(lo), float(hi))
    return float(lo), float(hi)


def _png(reader: Reader, image: object, key: str, zlevel: int = 6) -> bytes:
    from rio_tiler.models import ImageData

    assert isinstance(image, ImageData)
    if reader.dataset.dtypes[0] != "uint8":  # type: ignore[union-attr]
        lo, hi = _stretch(reader, key)
        image = image.rescale(in_range=[(lo, hi)] * image.count)
    return image.render(img_format="PNG", ZLEVEL=zlevel)


@functools.cache
def empty_tile() -> bytes:
    """A transparent 256 px PNG: the answer for a tile outside the scene (no console noise)."""
    buf = io.BytesIO()
    Image.new("RGBA", (TILE_SIZE, TILE_SIZE), (0, 0, 0, 0)).save(buf, "PNG")
    return buf.getvalue()


def render_tile(image: SceneImage, z: int, x: int, y: int) -> bytes:
    """A 256 px Web Mercator tile (PNG, transparent outside the image) of the scene."""
    if not (0 <= z <= 24 and 0 <= x < 2**z and 0 <= y < 2**z):
        raise ImageryUnavailableError(f"tile {z}/{x}/{y} does not exist")
    try:
        with Reader(str(image.path)) as reader:
            if not reader.tile_exists(x, y, z):
                return empty_tile()
            tile = reader.tile(x, y, z, tilesize=TILE_SIZE, indexes=_indexes(reader))
            return _png(reader, tile, str(image.path))
    except TileOutsideBounds:
        return empty_tile()
    except (RioTilerError, OSError) as exc:
        raise ImageryUnavailableError(f"scene {image.scene_id} cannot be read: {exc}") from None


def render_part(
    image: SceneImage,
    bounds: tuple[float, float, float, float],
    bounds_crs: str,
    max_size: int = 256,
    dst_crs: str | None = None,
    zlevel: int = 6,
) -> bytes:
    """The part of the scene inside ``bounds`` (in ``bounds_crs``) as a PNG.

    At most ``max_size`` pixels on its longer side; ``dst_crs``: the output CRS (default the
    image's own); ``zlevel``: PNG compression 1 (fastest, a few % larger) to 9.
    """
    from rasterio.crs import CRS

    try:
        with Reader(str(image.path)) as reader:
            part = reader.part(
                bounds,
                bounds_crs=CRS.from_user_input(bounds_crs),
                dst_crs=CRS.from_user_input(dst_crs) if dst_crs else reader.crs,
                max_size=max_size,
                indexes=_indexes(reader),
            )
            return _png(reader, part, str(image.path), zlevel=zlevel)
    except (RioTilerError, OSError) as exc:
        raise ImageryUnavailableError(
            f"scene {image.scene_id} cannot be read there: {exc}"
        ) from None
