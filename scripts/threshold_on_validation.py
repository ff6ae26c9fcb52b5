"""Held-out figures of weights at a threshold chosen on validation pairs (with or without TTA).

The threshold is the best-F1 one on the validation pairs (``--validation`` glob patterns; default
the weights' own validation split), never chosen on the held-out pairs; the held-out figures are
then printed for all held-out pairs, LEVIR-CD and DSIFN-CD apart, as one Markdown table, and
each held-out pair's pixel F1 and object recall. Several weights files make an ensemble
(their probabilities averaged, :func:`change_detection.evaluation.ensemble_model`).

    uv run --frozen python scripts/threshold_on_validation.py WEIGHTS [WEIGHTS ...] [--tta]
        [--validation PATTERN ...] [--json out/x.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from change_detection.data import (
    HELDOUT_DSIFN,
    HELDOUT_LEVIR,
    drop_contained_crops,
    find_pairs,
    load_pair,
    matches,
)
from change_detection.errors import WeightsError
from change_detection.evaluation import (
    ensemble_model,
    evaluate_pairs,
    threshold_on_validation,
    validation_pairs,
)
from change_detection.training import summary_line
from change_detection.weights import load_model
from weijian_testdata.rasters import CHANGE_PAIRS

DATA = CHANGE_PAIRS
FOLDERS = ("levir_256", "levir_1024", "dsifn_256")
HELDOUT = {"levir": list(HELDOUT_LEVIR), "dsifn": list(HELDOUT_DSIFN)}
MIN_AREA_M2 = 10.0


def main() -> None:
    """Choose the threshold on validation, print the held-out figures at it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="+", help="one file, or several for an ensemble")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--validation", nargs="*")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = [load_model(w, device="cpu") for w in args.weights]
    model = models[0] if len(models) == 1 else ensemble_model(models)
    files = find_pairs([args.data / f for f in FOLDERS])
    try:
        val = validation_pairs(model, [args.data / f for f in FOLDERS], args.validation)
    except WeightsError as exc:
        parser.error(str(exc))
    held_all = HELDOUT["levir"] + HELDOUT["dsifn"]
    cut, chosen = threshold_on_validation(model, val, MIN_AREA_M2, tta=args.tta)
    rows = {"validation": summary_line(chosen)}
    for part, names in (
        ("all", held_all),
        ("levir", HELDOUT["levir"]),
        ("dsifn", HELDOUT["dsifn"]),
    ):
        pairs = [
            load_pair(f) for f in drop_contained_crops([f for f in files if matches(f.name, names)])
        ]
        full = evaluate_pairs(model, pairs, cut, None, MIN_AREA_M2, tta=args.tta, per_pair=True)
        rows[part] = {**summary_line(full), "per_pair": full["per_pair"]}
    print(
        f"{' + '.join(args.weights)}{' (TTA x8)' if args.tta else ''}: threshold {cut:.2f} "
        f"chosen on {len(val)} validation pairs\n"
    )
    print(
        "| part | pixel P | pixel R | pixel F1 | best F1 (oracle) | object recall "
        "| FP objects /km² | spurious /km² |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for part, s in rows.items():
        print(
            f"| {part} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} "
            f"| {s['best_f1']:.3f} @ {s['best_threshold']:.2f} | {s['object_recall']:.3f} "
            f"| {s['fp_objects_per_km2']:.0f} | {s['spurious_objects_per_km2']:.0f} |"
        )
    print()
    for row in rows["all"]["per_pair"]:
        print(f"{row['pair']}: pixel F1 {row['f1']:.3f}, object recall {row['object_recall']:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"threshold": cut, "tta": args.tta, **rows}, indent=1))


if __name__ == "__main__":
    main()
