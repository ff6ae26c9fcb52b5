"""Training recipes compared over many seeds, as the ensembles they would ship (decision 0030).

One training run of a recipe is mostly its luck (model card, "Seed variance"): a recipe is
judged here by several ensembles of it, each of ``k`` seeds (what would ship), scored with
``weijian detect``'s default polygons on the 6 validation tiles (threshold chosen there per
ensemble, as ``weijian model ensemble`` does); the held-out figures are reported only.

``train`` runs every (recipe, seed) of the grid with the shipped recipe's split and options
(``scripts/train_shipped_weights.sh``) changed only where the recipe says, several runs side
by side, seeds interleaved across recipes so that a run cut short by ``--budget-s`` leaves the
recipes equally served; a finished run (``model.pt``) is never trained again. It needs only
torch, torchvision, Pillow, NumPy and SciPy (a lent GPU machine has them):

    PYTHONPATH=. python scripts/seed_sweep.py train --out out/sweep --seeds 0-11 \
        --device cuda --parallel 5 --budget-s 480

``evaluate`` builds the ensembles of the finished runs (seeds in order, ``k`` at a time, the
last incomplete group dropped) and prints, per recipe, every ensemble's figures and their
mean and standard deviation, then applies decision 0030's rule:

    TORCH_THREADS=1 uv run --frozen python scripts/seed_sweep.py evaluate out/sweep \
        [--json out/sweep.json]

The learning curve (decision 0032): ``--recipes frac12 frac25 frac50`` train on 1/8, 1/4 and
1/2 of each training pair's area; ``evaluate --recipes base1 frac12 frac25 frac50`` scores
each run alone and prints the figures against the training Mpx with their slope per doubling.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "change_pairs"
FOLDERS = ("levir_256", "levir_1024", "dsifn_256")
#: the shipped recipe's held-out and validation patterns (scripts/train_shipped_weights.sh)
HOLDOUT = [
    "levir_1024/test_102",
    "levir_256/test_121_*",
    "levir_256/test_55_*",
    "dsifn_256/0_2",
    "dsifn_256/8_3",
    "dsifn_256/9_3",
]
VALIDATION = [
    "dsifn_256/5_3",
    "dsifn_256/7_4",
    "levir_256/val_27_*",
    "levir_256/test_2_*",
    "levir_256/train_36_*",
]
#: the shipped recipe: ``weijian train`` options of scripts/train_shipped_weights.sh
SHIPPED: dict[str, Any] = {
    "network": "tinysiam",
    "epochs": 32,
    "samples_per_epoch": 256,
    "crop": 128,
    "batch_size": 16,
    "patience": 12,
    "synthetic_fraction": 0.0,
    "gsd_m": 0.5,
    "lr": 3e-3,
    "threads": 1,
}
#: decision 0030's rule: a recipe must beat the shipped one by this much validation object F1
#: (and by twice the standard error of the difference) ...
MIN_GAIN = 0.01
#: ... and lose at most this much validation pixel F1 (decision 0025's noise)
PIXEL_F1_NOISE = 0.005


@dataclass(frozen=True)
class Recipe:
    """A change to the shipped recipe and the size of the ensemble it ships as."""

    name: str
    what: str
    overrides: dict[str, Any] = field(default_factory=dict)
    members: int = 3  #: ensemble size: members x GFLOP per pair stays within 6 GFLOP
    extra_data: tuple[str, ...] = ()  #: more folders of DATA, their test_* pairs held out
    #: < 1: each training pair is cut to a seeded window of this share of its area (the
    #: learning curve of decision 0032); validation and held-out pairs stay whole
    area_fraction: float = 1.0
    #: True: a seeded half of the training scenes, whole (half of the large and half of the
    #: small training pairs: the pixels of ``area_fraction`` 0.5 in fewer places; decision 0032)
    half_scenes: bool = False


RECIPES = {
    r.name: r
    for r in (
        Recipe("base", "the shipped recipe (3 members, 4.35 GFLOP per 256x256 pair)"),
        Recipe(
            "wide",
            "widths 24,32,64,128, decoder 64 (2 members, 4.42 GFLOP: the same cost)",
            {"network_kwargs": {"widths": [24, 32, 64, 128], "decoder": 64}},
            members=2,
        ),
        Recipe(
            "long",
            "64 epochs, patience 24 (2x the training time)",
            {"epochs": 64, "patience": 24},
        ),
        Recipe(
            "egy",
            "egy_256 train/val pairs added to training (decision 0028's data)",
            extra_data=("egy_256",),
        ),
        Recipe("base4", "the shipped recipe, 4 members (5.8 GFLOP)", members=4),
        # the learning curve (decision 0032): single runs on less of the same training data
        Recipe("base1", "the shipped recipe, each run alone (all training data)", members=1),
        Recipe("frac75", "3/4 of each training pair's area", members=1, area_fraction=0.75),
        Recipe("frac50", "half of each training pair's area", members=1, area_fraction=0.5),
        Recipe("frac25", "a quarter of each training pair's area", members=1, area_fraction=0.25),
        Recipe("frac12", "an eighth of each training pair's area", members=1, area_fraction=0.125),
        Recipe(
            "scenes50",
            "half of the training scenes, whole: frac50's pixels from 5 places instead of 10",
            members=1,
            half_scenes=True,
        ),
    )
}
#: recipes whose runs are another recipe's (same training, another ensemble size)
RUNS_OF = {"base4": "base", "base1": "base"}
#: decision 0032: the figures are data-limited if validation object F1 rises per doubling of
#: the training data by more than this and by more than twice the slope's standard error
MIN_SLOPE = 0.01


def parse_seeds(text: str) -> list[int]:
    """``0-11`` or ``0,3,5`` -> the seeds."""
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(s) for s in text.split(",")]


def train_main(args: argparse.Namespace) -> None:
    """Train every missing (recipe, seed), ``--parallel`` at a time, within ``--budget-s``.

    Each run is its own process (``one``), so its data-loading workers are its own children.
    """
    names = list(dict.fromkeys(RUNS_OF.get(n, n) for n in args.recipes))
    queue = [
        (name, seed)
        for seed in parse_seeds(args.seeds)
        for name in names
        if not (args.out / name / f"seed{seed}" / "model.pt").is_file()
    ]
    print(f"{len(queue)} runs to train, {args.parallel} at a time", flush=True)
    start = time.monotonic()
    running: dict[subprocess.Popen[bytes], tuple[str, int, float]] = {}
    done = 0
    while queue or running:
        while queue and len(running) < args.parallel:
            if time.monotonic() - start > args.budget_s:
                print(f"budget of {args.budget_s:.0f} s spent: {len(queue)} runs not started")
                queue.clear()
                break
            name, seed = queue.pop(0)
            log = args.out / name / f"seed{seed}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            command = [sys.executable, __file__, "one", name, str(seed), "--out", str(args.out)]
            command += ["--data", str(args.data), "--device", args.device]
            command += ["--smoke"] if args.smoke else []
            with open(log, "wb") as fh:
                proc = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT)
            running[proc] = (name, seed, time.monotonic())
        time.sleep(1)
        for proc in [p for p in running if p.poll() is not None]:
            name, seed, began = running.pop(proc)
            done += 1
            state = "ok" if proc.returncode == 0 else f"FAILED (see {name}/seed{seed}.log)"
            print(
                f"[{time.monotonic() - start:5.0f} s] {name} seed {seed}: "
                f"{time.monotonic() - began:.0f} s {state} ({done} done)",
                flush=True,
            )


def one_main(args: argparse.Namespace) -> None:
    """One training run of the grid (what ``train`` starts in its own process)."""
    sys.path.insert(0, str(ROOT))
    from change_detection.training import TrainConfig, train

    recipe = RECIPES[args.recipe]
    smoke = {"epochs": 2, "samples_per_epoch": 32} if args.smoke else {}
    config = TrainConfig(
        **{**SHIPPED, **recipe.overrides, **smoke},
        seed=args.seed,
        device=args.device,
        holdout=[*HOLDOUT, *(f"{e}/test_*" for e in recipe.extra_data)],
        validation=list(VALIDATION),
    )
    folders = [args.data / f for f in (*FOLDERS, *recipe.extra_data)]
    run = args.out / recipe.name / f"seed{args.seed}"
    if recipe.area_fraction < 1 or recipe.half_scenes:
        folders = fraction_data(
            folders, recipe.area_fraction, args.seed, run / "data", config, recipe.half_scenes
        )
    train(folders, run, config)


def fraction_data(
    folders: list[Path],
    fraction: float,
    seed: int,
    out: Path,
    config: Any,
    half_scenes: bool = False,
) -> list[Path]:
    """Copies of ``folders`` under ``out`` whose training pairs keep a window of ``fraction``.

    The window of each training pair is a rectangle with the pair's aspect and ``fraction`` of
    its area, at a position drawn from ``(seed, pair name)``. Validation and held-out pairs are
    copied whole; a LEVIR crop whose whole tile is also a training pair is left out, so every
    training pixel is counted once. With ``half_scenes``, only a seeded half of the training
    pairs of at least 0.5 Mpx and a seeded half of the smaller ones are kept (each training
    scene is one pair once the crops are left out). Returns the new folders (same names,
    LEVIR-CD layout).
    """
    import hashlib

    import numpy as np
    from PIL import Image

    from change_detection.data import drop_contained_crops, find_pairs, split_pairs

    files = find_pairs(folders)
    train_f, _, _ = split_pairs(files, config.holdout, 0.0, config.seed, config.validation)
    keep_train = {f.name for f in drop_contained_crops(train_f)}
    train_names = {f.name for f in train_f}
    if half_scenes:
        groups: dict[bool, list[str]] = {True: [], False: []}
        for name in sorted(keep_train):
            with Image.open(next(f.label for f in files if f.name == name)) as im:
                groups[im.size[0] * im.size[1] >= 500_000].append(name)
        rng = np.random.default_rng([seed, 32])
        keep_train = {
            str(name)
            for names in groups.values()
            for name in rng.permutation(names)[: (len(names) + 1) // 2]
        }
    side = fraction**0.5
    for f in files:
        folder = f.name.split("/")[0]
        if f.name in train_names and f.name not in keep_train:
            continue
        box = None
        if f.name in train_names:
            with Image.open(f.label) as im:
                w, h = im.size
            cw, ch = max(1, round(w * side)), max(1, round(h * side))
            digest = hashlib.sha256(f"{seed}:{f.name}".encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            box = (x, y, x + cw, y + ch)
        for sub, path in (("A", f.before), ("B", f.after), ("label", f.label)):
            target = out / folder / sub / f"{path.stem}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(path) as im:
                (im.crop(box) if box else im).save(target)
    return [out / folder.name for folder in folders]


def _summary(rows: list[dict[str, Any]], key: str) -> tuple[float, float]:
    values = [r[key] for r in rows]
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def evaluate_main(args: argparse.Namespace) -> None:
    """Ensembles of the finished runs, scored with the default polygons; decision 0030's rule."""
    import torch

    sys.path.insert(0, str(ROOT / "scripts"))
    from postprocess_eval import load, score

    from change_detection.data import HELDOUT
    from change_detection.evaluation import ensemble_model, threshold_on_validation
    from change_detection.inference import predict_proba
    from change_detection.weights import load_model
    from weijian.settings import DetectionSettings

    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
    val = load(VALIDATION, args.data)
    held = load(list(HELDOUT), args.data)
    results: dict[str, list[dict[str, Any]]] = {}
    for name in args.recipes:
        recipe = RECIPES[name]
        runs = sorted(
            (args.out / RUNS_OF.get(name, name)).glob("seed*/model.pt"),
            key=lambda p: int(p.parent.name.removeprefix("seed")),
        )
        groups = [
            runs[i : i + recipe.members]
            for i in range(0, len(runs) - recipe.members + 1, recipe.members)
        ]
        results[name] = []
        for group in groups:
            model = ensemble_model([load_model(p, device="cpu") for p in group])
            cut, _ = threshold_on_validation(model, val)
            params = DetectionSettings().vectorize_params(cut)  # what `weijian detect` runs
            row: dict[str, Any] = {
                "seeds": [int(p.parent.name.removeprefix("seed")) for p in group],
                "threshold": cut,
            }
            for part, pairs in (("val", val), ("held", held)):
                probas = [predict_proba(model, p.before, p.after) for p in pairs]
                figures = score(probas, pairs, model.gsd_m, params, cut)
                for key in ("f1", "object_f1", "object_recall", "fp_per_km2"):
                    row[f"{part}_{key}"] = figures[key]
            results[name].append(row)
            print(
                f"{name} seeds {row['seeds']}: threshold {cut:.2f} | val pixel F1 "
                f"{row['val_f1']:.3f} object F1 {row['val_object_f1']:.3f} recall "
                f"{row['val_object_recall']:.3f} FP {row['val_fp_per_km2']:.0f}/km² | held-out "
                f"{row['held_f1']:.3f} / {row['held_object_recall']:.3f} / "
                f"{row['held_fp_per_km2']:.0f}",
                flush=True,
            )
    keys = (
        ("val_f1", "val pixel F1"),
        ("val_object_f1", "val object F1"),
        ("val_object_recall", "val object recall"),
        ("val_fp_per_km2", "val FP/km²"),
        ("held_f1", "held-out pixel F1"),
        ("held_object_recall", "held-out object recall"),
        ("held_fp_per_km2", "held-out FP/km²"),
    )
    print("\n| recipe | ensembles | " + " | ".join(label for _, label in keys) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in keys) + " |")
    for name, rows in results.items():
        if not rows:
            continue
        cells = []
        for key, _ in keys:
            mean, sd = _summary(rows, key)
            digits = 0 if "fp" in key else 3
            cells.append(f"{mean:.{digits}f} ± {sd:.{digits}f}")
        print(f"| {name}: {RECIPES[name].what} | {len(rows)} | " + " | ".join(cells) + " |")
    print()
    base = results.get("base") or []
    for name, rows in results.items():
        if name == "base" or len(rows) < 2 or len(base) < 2:
            continue
        gain = _summary(rows, "val_object_f1")[0] - _summary(base, "val_object_f1")[0]
        se = (
            statistics.variance([r["val_object_f1"] for r in rows]) / len(rows)
            + statistics.variance([r["val_object_f1"] for r in base]) / len(base)
        ) ** 0.5
        pixel = _summary(rows, "val_f1")[0] - _summary(base, "val_f1")[0]
        adopted = gain > max(MIN_GAIN, 2 * se) and pixel >= -PIXEL_F1_NOISE
        print(
            f"{name} against base: validation object F1 {gain:+.3f} (2 SE {2 * se:.3f}), "
            f"pixel F1 {pixel:+.3f}: {'ADOPTED' if adopted else 'not adopted'} by decision 0030"
        )
    curve = {name: rows for name, rows in results.items() if name in CURVE and rows}
    if len(curve) >= 2:
        learning_curve(curve, args.data)
    if len(results.get("scenes50") or []) > 1 and len(results.get("frac50") or []) > 1:
        places, wide = results["scenes50"], results["frac50"]
        for key in ("val_object_f1", "val_f1", "held_object_recall", "held_f1"):
            gain = _summary(wide, key)[0] - _summary(places, key)[0]
            se = (
                statistics.variance([r[key] for r in wide]) / len(wide)
                + statistics.variance([r[key] for r in places]) / len(places)
            ) ** 0.5
            print(
                f"frac50 (10 scenes) - scenes50 (5 scenes), {key}: {gain:+.4f} (2 SE {2 * se:.4f})"
            )
            if key == "val_object_f1":
                more = gain > max(MIN_SLOPE, 2 * se)
                print(
                    "decision 0032: at equal pixels, "
                    + ("MORE PLACES ARE BETTER" if more else "more places not shown to be better")
                )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


#: the recipes of decision 0032's learning curve
CURVE = ("frac12", "frac25", "frac50", "frac75", "base1")


def training_mpx(data: Path, fraction: float) -> float:
    """Training pixels (Mpx) of the shipped split, cut to ``fraction`` as :func:`one_main` does."""
    from PIL import Image

    from change_detection.data import drop_contained_crops, find_pairs, split_pairs

    files = find_pairs([data / f for f in FOLDERS])
    train_f, _, _ = split_pairs(files, HOLDOUT, 0.0, 0, VALIDATION)
    if fraction < 1:  # the crops of a whole training tile are left out (fraction_data)
        train_f = drop_contained_crops(train_f)
    total = 0
    for f in train_f:
        with Image.open(f.label) as im:
            total += im.size[0] * im.size[1]
    return fraction * total / 1e6


def slope(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope of ``ys`` on ``xs`` and its standard error."""
    n = len(xs)
    mx, my = statistics.mean(xs), statistics.mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    rss = sum((y - my - b * (x - mx)) ** 2 for x, y in zip(xs, ys, strict=True))
    return b, (rss / (n - 2) / sxx) ** 0.5 if n > 2 else float("nan")


def learning_curve(results: dict[str, list[dict[str, Any]]], data: Path) -> None:
    """Figures against training Mpx, their slope per doubling, and decision 0032's reading."""
    keys = (
        ("val_object_f1", "val object F1"),
        ("val_object_recall", "val object recall"),
        ("val_f1", "val pixel F1"),
        ("held_object_recall", "held-out object recall"),
        ("held_f1", "held-out pixel F1"),
        ("held_fp_per_km2", "held-out FP/km²"),
    )
    xs: dict[str, list[float]] = {key: [] for key, _ in keys}
    ys: dict[str, list[float]] = {key: [] for key, _ in keys}
    print("\nLearning curve (decision 0032): single runs, mean ± sd over seeds")
    print("| training Mpx | runs | " + " | ".join(label for _, label in keys) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in keys) + " |")
    for name, rows in sorted(results.items(), key=lambda kv: RECIPES[kv[0]].area_fraction):
        mpx = training_mpx(data, RECIPES[name].area_fraction)
        cells = []
        for key, _ in keys:
            mean, sd = _summary(rows, key)
            digits = 0 if "fp" in key else 3
            cells.append(f"{mean:.{digits}f} ± {sd:.{digits}f}")
            xs[key] += [math.log2(mpx)] * len(rows)
            ys[key] += [r[key] for r in rows]
        print(f"| {mpx:.2f} ({name}) | {len(rows)} | " + " | ".join(cells) + " |")
    print()
    for key, label in keys:
        b, se = slope(xs[key], ys[key])
        print(f"{label}: {b:+.4f} per doubling of the training data (SE {se:.4f})")
    b, se = slope(xs["val_object_f1"], ys["val_object_f1"])
    limited = b > max(MIN_SLOPE, 2 * se)
    print(
        f"decision 0032: validation object F1 {b:+.4f} per doubling (2 SE {2 * se:.4f}): "
        + ("DATA-LIMITED" if limited else "not shown to be data-limited")
    )


def main() -> None:
    """Parse the command line and run ``train`` or ``evaluate``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train the grid's missing runs")
    tr.add_argument("--out", type=Path, required=True)
    tr.add_argument("--data", type=Path, default=DATA)
    tr.add_argument("--recipes", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    tr.add_argument("--seeds", default="0-8", help="e.g. 0-8 or 0,1,2")
    tr.add_argument("--device", default="cpu")
    tr.add_argument("--parallel", type=int, default=2)
    tr.add_argument("--budget-s", type=float, default=float("inf"), help="start no run after")
    tr.add_argument("--smoke", action="store_true", help="2 short epochs per run: a check")
    one = sub.add_parser("one", help="one run of the grid (started by train)")
    one.add_argument("recipe", choices=[n for n in RECIPES if n not in RUNS_OF])
    one.add_argument("seed", type=int)
    one.add_argument("--out", type=Path, required=True)
    one.add_argument("--data", type=Path, default=DATA)
    one.add_argument("--device", default="cpu")
    one.add_argument("--smoke", action="store_true")
    ev = sub.add_parser("evaluate", help="score the ensembles of the finished runs")
    ev.add_argument("out", type=Path)
    ev.add_argument("--data", type=Path, default=DATA)
    ev.add_argument("--recipes", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    ev.add_argument("--json", type=Path)
    args = parser.parse_args()
    {"train": train_main, "one": one_main, "evaluate": evaluate_main}[args.command](args)


if __name__ == "__main__":
    main()
