"""Tiling the working grid: a lazy iterator of small, picklable, independent tile tasks.

Each :class:`TileTask` carries the pair spec and a window; ``task.read()`` opens the sources
itself, so tasks can be shipped to Dask workers (``dask.delayed(TileTask.read)(task)``) with no
shared state. For a sequential loop, :func:`read_tiles` keeps the sources open.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from rasterio.windows import Window
from shapely.prepared import prep

from ingest.align import AlignedPair, PairReader, Tile, window_box


@dataclass(frozen=True)
class TileTask:
    """One window of the working grid: (col_off, row_off, width, height) in pixels."""

    pair: AlignedPair
    col_off: int
    row_off: int
    width: int
    height: int

    @property
    def window(self) -> Window:
        """The rasterio window."""
        return Window(self.col_off, self.row_off, self.width, self.height)

    def read(self) -> Tile:
        """Read both epochs of this window (opens and closes the sources)."""
        with PairReader(self.pair) as reader:
            return reader.read(self.window)


def _offsets(length: int, size: int, step: int) -> range:
    # the last window ends at the grid edge; none starts inside the previous window's overlap only
    return range(0, max(length - (size - step), 1), step)


def iter_tiles(pair: AlignedPair, size: int = 512, overlap: int = 32) -> Iterator[TileTask]:
    """Windows of ``size`` px overlapping by ``overlap`` px, row by row, lazily.

    Windows at the right and bottom edges are cut to the grid. Windows outside the common valid
    footprint (valid in neither or only one epoch) are skipped.
    """
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError(
            f"tile size {size} and overlap {overlap}: need size > 0 and 0 <= overlap < size"
        )
    step = size - overlap
    footprint = prep(pair.footprint.buffer(pair.gsd_m))
    for row in _offsets(pair.height, size, step):
        for col in _offsets(pair.width, size, step):
            w, h = min(size, pair.width - col), min(size, pair.height - row)
            if footprint.intersects(window_box(Window(col, row, w, h), pair.affine)):
                yield TileTask(pair, col, row, w, h)


def read_tiles(pair: AlignedPair, size: int = 512, overlap: int = 32) -> Iterator[Tile]:
    """Read the tiles of :func:`iter_tiles` in one process, keeping the sources open."""
    with PairReader(pair) as reader:
        for task in iter_tiles(pair, size, overlap):
            yield reader.read(task.window)
