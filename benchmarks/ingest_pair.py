"""Benchmark: align and tile a generated N x N px RGB pair; prints Mpx/s and peak RSS per case.

Usage::

    uv run --frozen python benchmarks/ingest_pair.py                 # sizes 10000 and 30000
    uv run --frozen python benchmarks/ingest_pair.py --sizes 4000 --workdir /tmp/b

For each size one RGB GeoTIFF (EPSG:4549, tiled 512, DEFLATE) is generated window by window into
the work folder (kept for the next run). Two cases wrap it in small VRTs (the pixels are read from
the one file, through GDAL, as for any VRT):

* ``drone``: both epochs at 5 cm (N x N px), the later one displaced by (+0.37 m, -0.21 m) and
  brightened, aligned onto a 0.5 m grid ((N/10)² px): area-average downsampling;
* ``same``: both epochs at 0.5 m, aligned onto the 0.5 m grid (N² px): bilinear.

Each case runs in its own subprocess: ``prepare_pair`` (describe, working grid, co-registration,
histogram tables) then every tile of ``iter_tiles`` (512 px, 32 px overlap) read through one
``PairReader``. Peak RSS is the subprocess's ``ru_maxrss``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHIFT_M = (0.37, -0.21)
ORIGIN = (637980.0, 3470688.0)  # 121.45 E 31.35 N in EPSG:4549, whole metres


def _texture(period: int, seed: int) -> np.ndarray:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    img = np.zeros((3, period, period), np.float32)
    for sigma, amp in ((40, 45), (8, 25), (2, 12)):
        noise = ndimage.gaussian_filter(
            rng.standard_normal((period, period)).astype(np.float32), sigma, mode="wrap"
        )
        img += amp * noise / noise.std()
    for _ in range(period * period // 4000):
        h, w = rng.integers(8, 60, size=2)
        r, c = rng.integers(0, period - h), rng.integers(0, period - w)
        img[:, r : r + h, c : c + w] = rng.uniform(-80, 80, size=(3, 1, 1))
    return img


def generate(path: Path, size: int) -> None:
    """An RGB uint8 size x size GeoTIFF, written 512 rows at a time (two co-prime textures)."""
    import rasterio
    from affine import Affine

    textures = [_texture(p, s) for p, s in ((2039, 1), (1531, 2))]
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:4549",
        "transform": Affine(0.05, 0, ORIGIN[0], 0, -0.05, ORIGIN[1]),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "DEFLATE",
        "zlevel": 1,
        "predictor": 2,
        "BIGTIFF": "YES",
    }
    tmp = path.with_suffix(".part.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        for r0 in range(0, size, 512):
            h = min(512, size - r0)
            strip = np.full((3, h, size), 110, np.float32)
            for tex in textures:
                p = tex.shape[1]
                rows = tex[:, (r0 + np.arange(h)) % p, :]
                strip += np.tile(rows, (1, 1, size // p + 1))[:, :, :size]
            dst.write(np.clip(strip, 1, 255).astype(np.uint8), window=((r0, r0 + h), (0, size)))
    tmp.rename(path)


def wrap(
    tif: Path,
    out: Path,
    gsd: float,
    offset: tuple[float, float],
    scale: float = 1.0,
    add: float = 0.0,
) -> Path:
    """A VRT of ``tif`` at ``gsd`` m/px, origin moved by ``offset`` m, with a gain/offset."""
    import rasterio

    with rasterio.open(tif) as ds:
        w, h, crs = ds.width, ds.height, ds.crs.to_wkt()
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><ColorInterp>{ci}</ColorInterp><ComplexSource>'
        f'<SourceFilename relativeToVRT="0">{tif}</SourceFilename><SourceBand>{b}</SourceBand>'
        f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/><DstRect xOff="0" yOff="0" '
        f'xSize="{w}" ySize="{h}"/>'
        f"<ScaleOffset>{add}</ScaleOffset><ScaleRatio>{scale}</ScaleRatio></ComplexSource></VRTRasterBand>"
        for b, ci in ((1, "Red"), (2, "Green"), (3, "Blue"))
    )
    gt = f"{ORIGIN[0] + offset[0]}, {gsd}, 0, {ORIGIN[1] + offset[1]}, 0, {-gsd}"
    out.write_text(
        f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}"><SRS>{crs}</SRS>'
        f"<GeoTransform>{gt}</GeoTransform>{bands}</VRTDataset>"
    )
    return out


def run_case(workdir: Path, size: int, case: str, tile: int, overlap: int) -> dict[str, object]:
    """One case, in this process: prepare + read every tile; returns timings and peak RSS."""
    from ingest import PairReader, iter_tiles, prepare_pair

    tif = workdir / f"ortho_{size}.tif"
    gsd = 0.05 if case == "drone" else 0.5
    before = wrap(tif, workdir / f"{case}_{size}_20230601.vrt", gsd, (0.0, 0.0))
    after = wrap(tif, workdir / f"{case}_{size}_20240315.vrt", gsd, SHIFT_M, scale=0.9, add=12)
    t0 = time.perf_counter()
    pair = prepare_pair(before, after, working_crs="EPSG:4549", gsd_m=0.5, max_shift_m=5.0)
    t1 = time.perf_counter()
    n_tiles, valid = 0, 0
    with PairReader(pair) as reader:
        for task in iter_tiles(pair, tile, overlap):
            t = reader.read(task.window)
            n_tiles += 1
            valid += int(t.valid.sum())
    t2 = time.perf_counter()
    grid_mpx = pair.width * pair.height / 1e6
    return {
        "size": size,
        "case": case,
        "grid": f"{pair.width}x{pair.height}",
        "tiles": n_tiles,
        "shift_m": [round(v, 3) for v in pair.shift_m],
        "prepare_s": round(t1 - t0, 1),
        "tiles_s": round(t2 - t1, 1),
        "grid_mpx_s": round(grid_mpx / (t2 - t0), 2),
        "source_mpx_s": round(2 * size * size / 1e6 / (t2 - t0), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 30000])
    parser.add_argument("--cases", nargs="+", default=["drone", "same"], choices=["drone", "same"])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/weijian_ingest_bench"))
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--run", nargs=2, metavar=("SIZE", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.run:
        print(
            json.dumps(
                run_case(args.workdir, int(args.run[0]), args.run[1], args.tile, args.overlap)
            )
        )
        return
    rows = []
    for size in args.sizes:
        tif = args.workdir / f"ortho_{size}.tif"
        if not tif.exists():
            t = time.perf_counter()
            generate(tif, size)
            print(
                f"generated {tif} ({tif.stat().st_size / 1e9:.2f} GB) in "
                f"{time.perf_counter() - t:.0f} s",
                flush=True,
            )
        for case in args.cases:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--run",
                    str(size),
                    case,
                    "--workdir",
                    str(args.workdir),
                    "--tile",
                    str(args.tile),
                    "--overlap",
                    str(args.overlap),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode:
                sys.exit(f"case {size} {case} failed:\n{proc.stderr}")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    cols = [
        "size",
        "case",
        "grid",
        "tiles",
        "shift_m",
        "prepare_s",
        "tiles_s",
        "grid_mpx_s",
        "source_mpx_s",
        "peak_rss_mb",
    ]
    print()
    print(" | ".join(f"{c:>12}" for c in cols))
    for r in rows:
        print(" | ".join(f"{r[c]!s:>12}" for c in cols))


if __name__ == "__main__":
    main()
