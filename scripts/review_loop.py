"""Simulated review loop: does fine-tuning on N office decisions improve the held-out figures?

An office on real imagery, simulated: the shipped ``tinysiam`` detects changes on review scenes
that neither its training nor the held-out evaluation touched (the 9 EGY-BCD pairs of
``egy_256``, New Cairo, and the shipped split's validation pairs, which only chose its epoch and
threshold); every predicted object (8-connected, at least 10 m²) is a detection, and
the label plays the reviewer in a seeded random order: a detection with at least half of its
pixels on a labelled change is *confirmed*, any other one is a *false positive*. After N
decisions, chips are cut exactly as ``weijian train --from-reviews`` cuts them (128 px around
each decided detection, partly labelled: confirmed detections are change, false positives no
change, every other pixel unknown and ignored by the loss) and the shipped model is fine-tuned
with the same settings (:data:`weijian.learning.FINE_TUNE`, keeping its threshold). Each
fine-tuned model is scored on the project's held-out pairs (LEVIR-CD and DSIFN-CD), which no step
above saw. Prints one Markdown table.

    uv run --frozen python scripts/review_loop.py [--decisions 0 50 200 1000] [--out out/loop]
        [--pool PATTERN ...] [--no-egy]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from change_detection.data import (
    HELDOUT,
    UNKNOWN,
    drop_contained_crops,
    find_pairs,
    load_pair,
    matches,
)
from change_detection.evaluation import evaluate_pairs
from change_detection.inference import predict_proba
from change_detection.training import TrainConfig, summary_line, train
from change_detection.weights import load_model, shipped_weights
from weijian.learning import CHIP_PX, FINE_TUNE
from weijian_testdata.rasters import CHANGE_PAIRS

DATA = CHANGE_PAIRS
MIN_AREA_M2 = 10.0


def detections(pool: list[Any], model: Any) -> list[dict[str, Any]]:
    """Every predicted object of the review scenes with the simulated reviewer's decision."""
    out = []
    min_px = int(np.ceil(MIN_AREA_M2 / model.gsd_m**2))
    for index, pair in enumerate(pool):
        pred = predict_proba(model, pair.before, pair.after) >= model.threshold
        labels, n = ndimage.label(pred, structure=np.ones((3, 3), bool))
        for k in range(1, n + 1):
            mask = labels == k
            if mask.sum() < min_px:
                continue
            changed = pair.label[mask].mean()
            out.append({"pair": index, "mask": mask, "confirmed": bool(changed >= 0.5)})
    return out


def write_chips(folder: Path, pool: list[Any], decided: list[dict[str, Any]]) -> None:
    """LEVIR-layout chips around each decided detection (the --from-reviews rule).

    Partly labelled like ``--from-reviews`` chips: 255 inside confirmed detections, 0 inside
    false positives, :data:`UNKNOWN` wherever nobody decided.
    """
    for sub in ("A", "B", "label"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    labels = {i: np.full(p.label.shape, UNKNOWN, np.uint8) for i, p in enumerate(pool)}
    for d in decided:
        if not d["confirmed"]:
            labels[d["pair"]][d["mask"]] = 0
    for d in decided:
        if d["confirmed"]:
            labels[d["pair"]][d["mask"]] = 255
    for n, d in enumerate(decided):
        pair = pool[d["pair"]]
        rows, cols = np.nonzero(d["mask"])
        h, w = pair.label.shape
        side = min(CHIP_PX, h, w)
        r0 = int(np.clip((rows.min() + rows.max()) // 2 - side // 2, 0, h - side))
        c0 = int(np.clip((cols.min() + cols.max()) // 2 - side // 2, 0, w - side))
        window = np.s_[r0 : r0 + side, c0 : c0 + side]
        name = f"d{n:04d}"
        Image.fromarray(pair.before[window]).save(folder / "A" / f"{name}.png")
        Image.fromarray(pair.after[window]).save(folder / "B" / f"{name}.png")
        Image.fromarray(labels[d["pair"]][window]).save(folder / "label" / f"{name}.png")


def main() -> None:
    """Run the loop for each number of decisions and print the curve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, nargs="+", default=[0, 50, 200, 1000])
    parser.add_argument("--out", type=Path, default=Path("out/loop"))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--pool",
        nargs="*",
        default=None,
        help="more review scenes (glob patterns of LEVIR/DSIFN pairs); default: the shipped "
        "model's validation pairs, neither trained on nor held out",
    )
    parser.add_argument(
        "--no-egy", dest="egy", action="store_false", help="leave egy_256 out of the review pool"
    )
    parser.add_argument(
        "--distill",
        type=float,
        default=FINE_TUNE["distill_unknown"],
        help="weight of distillation on unknown pixels (0: off; for the side-by-side figures)",
    )
    parser.add_argument(
        "--train-norm",
        action="store_true",
        help="re-estimate batch-norm statistics on the chips (off in --from-reviews)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model("tinysiam", device="cpu")
    files = find_pairs([args.data / f for f in ("levir_256", "levir_1024", "dsifn_256")])
    pool_files = find_pairs([args.data / "egy_256"]) if args.egy else []
    patterns = model.metadata["split"]["validation"] if args.pool is None else args.pool
    pool_files += [f for f in files if matches(f.name, patterns)]
    if any(matches(f.name, HELDOUT) for f in pool_files):
        parser.error("a review scene is one of the held-out pairs")
    shipped_split = model.metadata.get("split", {})
    trained = [f.name for f in pool_files if f.name in shipped_split.get("train", [])]
    if trained:
        parser.error(f"review scenes the shipped model was trained on: {trained}")
    pool = [load_pair(f) for f in pool_files]
    held = [
        load_pair(f) for f in drop_contained_crops([f for f in files if matches(f.name, HELDOUT)])
    ]
    found = detections(pool, model)
    order = np.random.default_rng(args.seed).permutation(len(found))
    found = [found[i] for i in order]
    n_true = sum(d["confirmed"] for d in found)
    print(f"review pool: {len(pool)} pairs, {len(found)} detections ({n_true} real changes)\n")
    print(
        "| decisions | confirmed | false positives | held-out pixel F1 | object recall "
        "| FP objects /km² | threshold | minutes |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for wanted in args.decisions:
        decided = found[: min(wanted, len(found))]
        start = time.monotonic()
        if decided:
            run = args.out / f"n{len(decided)}"
            shutil.rmtree(run, ignore_errors=True)
            write_chips(run / "chips", pool, decided)
            config = TrainConfig(
                network=model.network,
                crop=CHIP_PX,
                gsd_m=model.gsd_m,
                min_area_m2=MIN_AREA_M2,
                device="cpu",
                threads=1,
                seed=args.seed,
                init_weights=str(shipped_weights(model.network)),
                fixed_threshold=model.threshold,
                **{
                    **FINE_TUNE,
                    "distill_unknown": args.distill,
                    "freeze_norm": not args.train_norm,
                },
            )
            tuned = load_model(train([run / "chips"], run, config).weights, "cpu")
        else:
            tuned = model
        s = summary_line(evaluate_pairs(tuned, held, None, None, MIN_AREA_M2))
        row = {
            "decisions": len(decided),
            "confirmed": sum(d["confirmed"] for d in decided),
            "false_positives": sum(not d["confirmed"] for d in decided),
            **s,
            "minutes": round((time.monotonic() - start) / 60, 1),
        }
        rows.append(row)
        print(
            f"| {row['decisions']} | {row['confirmed']} | {row['false_positives']} | {s['f1']:.3f} "
            f"| {s['object_recall']:.3f} | {s['fp_objects_per_km2']:.0f} | {s['threshold']:.2f} "
            f"| {row['minutes']} |",
            flush=True,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "curve.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
