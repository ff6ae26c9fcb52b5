"""Held-out figures of change weights on imagery at other ground sample distances.

The held-out pairs of the shipped split (0.5 m/px) are resampled to 0.3, 0.5 and 1.0 m/px
(images antialiased bilinear, labels by nearest neighbour) and scored twice: as the detection
step sees them when it knows the GSD (``gsd_m`` given: resampled back to the model's GSD), and
fed to the network as they are (the model sees 0.3 m or 1 m pixels). Densities are per km² of
ground at the true GSD, the smallest object counted is 10 m². Prints one Markdown table.

    uv run --frozen python scripts/gsd_robustness.py [WEIGHTS ...] [--tta]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from change_detection.data import (
    HELDOUT,
    Pair,
    drop_contained_crops,
    find_pairs,
    load_pair,
    matches,
)
from change_detection.evaluation import evaluate_pairs
from change_detection.inference import model_grid_size, resample
from change_detection.weights import load_model
from weijian_testdata.rasters import CHANGE_PAIRS

DATA = CHANGE_PAIRS
NATIVE_GSD = 0.5


def at_gsd(pair: Pair, gsd: float) -> Pair:
    """``pair`` (at 0.5 m/px) resampled to ``gsd`` m/px."""
    size = model_grid_size(pair.label.shape, NATIVE_GSD, gsd)
    with Image.fromarray(pair.label) as im:
        label = np.asarray(im.resize(size[::-1], Image.Resampling.NEAREST))
    return Pair(pair.name, resample(pair.before, size), resample(pair.after, size), label)


def main() -> None:
    """Score each weights file at each GSD, with and without resampling, and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="*", default=["tinysiam"])
    parser.add_argument("--tta", action="store_true", help="flip/rotation test-time augmentation")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))
    folders = [args.data / f for f in ("levir_256", "levir_1024", "dsifn_256")]
    files = drop_contained_crops([f for f in find_pairs(folders) if matches(f.name, HELDOUT)])
    pairs = [load_pair(f) for f in files]
    print("| weights | data GSD m | resampled | pixel F1 | object recall | FP objects /km² |")
    print("| --- | --- | --- | --- | --- | --- |")
    for weights in args.weights:
        model = load_model(weights, device="cpu")
        for gsd in (0.3, 0.5, 1.0):
            moved = [at_gsd(p, gsd) for p in pairs] if gsd != NATIVE_GSD else pairs
            for resampled in (True, False) if gsd != NATIVE_GSD else (True,):
                s = evaluate_pairs(
                    model, moved, gsd_m=gsd, min_area_m2=10.0, tta=args.tta, resample=resampled
                )
                fp_km2 = s["objects"]["false_positives_per_km2"]
                print(
                    f"| {weights} | {gsd} | {'yes' if resampled else 'no'} | {s['f1']:.3f} "
                    f"| {s['objects']['recall']:.3f} | {fp_km2:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
