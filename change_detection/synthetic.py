"""Seeded synthetic change pairs: new roofs with shadows pasted onto real backgrounds.

From one real image (a background), :func:`synthetic_pair` makes a pair whose earlier image is
the background and whose later image is the same background under a different illumination
(global gain, gamma, colour cast, a soft brightness gradient, a sub-pixel shift), with, in most
pairs, a few new roof-like polygons: rectangles and L-shapes of 4-30 m (in 30 % of the pairs also
one factory or warehouse roof of 30-120 m), in the roof
colours of Shanghai's suburbs (blue steel sheet, grey concrete, red tile, white), with a ridge
line, texture noise and a cast shadow on the side away from a random sun azimuth. The mask marks
the roofs only, not their shadows. A share of the pairs (``negative_share``) carries no roof:
illumination change alone, labelled "no change", so the network learns that lighting is not change.

Everything is a pure function of the numpy ``Generator`` passed in. ``python -m
change_detection.synthetic OUT --backgrounds DATA... --count N --seed S`` writes a LEVIR-layout
folder for inspection.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.draw import polygon as draw_polygon

#: Roof colours (RGB 0..255): blue steel sheet, grey concrete, red tile, white/light steel, dark.
ROOF_COLOURS = np.array(
    [
        [70, 110, 170],
        [95, 140, 200],
        [150, 150, 150],
        [185, 185, 180],
        [165, 80, 60],
        [220, 222, 225],
        [90, 90, 95],
    ],
    dtype=float,
)


def _roof_outline(
    rng: np.random.Generator, centre: tuple[float, float], gsd_m: float, large: bool = False
) -> np.ndarray:
    """Polygon vertices (row, col) of a rectangle or L-shaped roof, rotated.

    Houses and sheds are 4-30 m long and 4-15 m wide; ``large`` roofs (factories, warehouses,
    steel-sheet halls) 30-120 m long and 15-45 m wide.
    """
    if large:
        length = rng.uniform(30, 120) / gsd_m
        width = rng.uniform(15, 45) / gsd_m
    else:
        length = rng.uniform(4, 30) / gsd_m
        width = rng.uniform(4, min(15, length * gsd_m)) / gsd_m
    if rng.random() < 0.3:  # L-shape
        wing = rng.uniform(0.4, 0.7)
        pts = np.array(
            [
                [0, 0],
                [length, 0],
                [length, width],
                [wing * length, width],
                [wing * length, width * 2.2],
                [0, width * 2.2],
            ]
        )
    else:
        pts = np.array([[0, 0], [length, 0], [length, width], [0, width]])
    pts = pts - pts.mean(axis=0)
    angle = rng.choice([0.0, math.pi / 2]) + rng.normal(0, 0.25)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return pts @ rot.T + np.array(centre)


def _illumination(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The image (float 0..255) under another light: gain, gamma, colour cast, gradient, shift."""
    h, w, _ = image.shape
    x = image / 255.0
    x = x ** rng.uniform(0.75, 1.35)
    x = x * rng.uniform(0.75, 1.25) * rng.uniform(0.9, 1.1, size=3)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    theta = rng.uniform(0, 2 * math.pi)
    x = (
        x
        * (1 + rng.uniform(-0.15, 0.15) * (np.cos(theta) * xx + np.sin(theta) * yy - 0.5))[
            ..., None
        ]
    )
    if rng.random() < 0.5:  # mis-registration and resampling blur of a second flight/sensor
        x = ndimage.shift(x, (*rng.uniform(-1, 1, size=2), 0), order=1, mode="nearest")
        x = ndimage.gaussian_filter(x, (rng.uniform(0, 0.8),) * 2 + (0,))
    return np.clip(x * 255, 0, 255)


def synthetic_pair(
    background: np.ndarray,
    rng: np.random.Generator,
    gsd_m: float = 0.5,
    negative_share: float = 0.25,
    max_roofs: int = 6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(before, after, mask)`` from a uint8 ``(H, W, 3)`` background; see the module docstring.

    ``before`` and ``after`` are uint8 ``(H, W, 3)``, ``mask`` is bool ``(H, W)``; ``gsd_m`` is
    the background's metres per pixel (sets roof sizes).
    """
    h, w, _ = background.shape
    before = background.copy()
    after = _illumination(background.astype(float), rng)
    mask = np.zeros((h, w), dtype=bool)
    if rng.random() >= negative_share:
        sun = rng.uniform(0, 2 * math.pi)
        for i in range(int(rng.integers(1, max_roofs + 1))):
            large = i == 0 and rng.random() < 0.3
            outline = _roof_outline(rng, (rng.uniform(0, h), rng.uniform(0, w)), gsd_m, large)
            rr, cc = draw_polygon(outline[:, 0], outline[:, 1], shape=(h, w))
            if rr.size < 16:
                continue
            # cast shadow: the footprint shifted away from the sun by 1-4 m, darkened
            reach = rng.uniform(1, 4) / gsd_m
            shadow = outline + reach * np.array([math.sin(sun), math.cos(sun)])
            sr, sc = draw_polygon(shadow[:, 0], shadow[:, 1], shape=(h, w))
            after[sr, sc] *= rng.uniform(0.35, 0.6)
            # roof: base colour, lit by the same illumination, with texture and a ridge line
            colour = ROOF_COLOURS[rng.integers(len(ROOF_COLOURS))] * rng.uniform(0.85, 1.15)
            roof = np.broadcast_to(colour, (rr.size, 3)).copy()
            roof += rng.normal(0, rng.uniform(2, 10), size=(rr.size, 1))
            centre = outline.mean(axis=0)
            axis = outline[1] - outline[0]
            axis = axis / (np.linalg.norm(axis) + 1e-9)
            side = (rr - centre[0]) * -axis[1] + (cc - centre[1]) * axis[0]
            roof[side > 0] *= rng.uniform(0.8, 1.0)  # two roof planes
            after[rr, cc] = roof
            mask[rr, cc] = True
        edge = ndimage.gaussian_filter(mask.astype(float), 0.6)[..., None]
        after = after * (1 - 0.15 * (edge * (1 - edge)))  # slightly soft edges
    return before, np.clip(after, 0, 255).astype(np.uint8), mask


def write_dataset(
    out: Path, backgrounds: Sequence[np.ndarray], count: int, seed: int = 0, size: int = 256
) -> None:
    """Write ``count`` synthetic pairs (``size`` px crops of ``backgrounds``), LEVIR layout."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for sub in ("A", "B", "label"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        bg = backgrounds[int(rng.integers(len(backgrounds)))]
        r = int(rng.integers(0, bg.shape[0] - size + 1))
        c = int(rng.integers(0, bg.shape[1] - size + 1))
        a, b, m = synthetic_pair(bg[r : r + size, c : c + size], rng)
        Image.fromarray(a).save(out / "A" / f"syn_{i:04d}.png")
        Image.fromarray(b).save(out / "B" / f"syn_{i:04d}.png")
        Image.fromarray(m.astype(np.uint8) * 255).save(out / "label" / f"syn_{i:04d}.png")


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: write a synthetic LEVIR-layout folder from the A/ images of real folders."""
    from change_detection.data import find_pairs, load_pair

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--backgrounds", nargs="+", required=True, type=Path)
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    backgrounds = [load_pair(p).before for p in find_pairs(args.backgrounds)]
    write_dataset(args.out, backgrounds, args.count, args.seed)


if __name__ == "__main__":
    main()
