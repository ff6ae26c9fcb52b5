"""Object-level effect of the detection post-processing, tuned on validation, held-out figures.

The post-processing is change_detection.vectorize's, tuned on validation and reported on the
held-out pairs.
For every pair the change probability is predicted once; each post-processing setting then runs
:func:`change_detection.vectorize.polygons_from_proba` (threshold, opening, closing, hole
filling, outline regularisation, minimum area: exactly what ``weijian detect`` does), the
polygons are burnt back into a mask and scored against the label: pixel F1, object recall
(a building is found when a polygon overlaps it with IoU >= 0.5), false-positive polygons per
km². Each polygon is burnt with its own label, so touching polygons (seeded-core objects share
borders) count as the separate objects ``detect`` writes. "raw" is the plain thresholded mask
with components under 10 m² dropped (the model card's figures). The grid: threshold (the
weights' own +-0.1), opening, closing, hysteresis seed, and seeded cores at the weights' own
threshold (``grow_margin`` 0-0.2, ``core_threshold`` 0.5-0.9, ``core_min_area_m2`` 2-8; decision
0024). The setting with the best object F1 on the validation pairs (named in the weights'
metadata) is marked, ties broken by the validation pixel F1, then by the grid's order; the
held-out figures are never used to choose. Prints Markdown tables.

    uv run --frozen python scripts/postprocess_eval.py [WEIGHTS] [--tta]

``--objects`` measures instead the mask-level object post-processing of
:mod:`change_detection.objects` (threshold, opening, watershed splitting of touching buildings,
minimum area, hysteresis seed, solidity, seeded cores) over a grid (same choice rule);
``--validation PATTERN ...`` chooses the validation pairs (default: the weights' own
validation split).

    uv run --frozen python scripts/postprocess_eval.py [WEIGHTS] --objects [--tta]
        [--validation PATTERN ...] [--json out/objects.json]

``--refine`` measures image-guided refinement and multi-scale inference
(:mod:`change_detection.refine`; decision 0025) against the product's polygons: superpixel
blends (SLIC of the pair, 5-50 m², weights 0.25-1), guided filters (radius 2-8 px, eps
1e-3/1e-2) and a second scale (``--scales``, default 1.5 and 2) alone and combined, each with
seeded-core polygons around the defaults (threshold -0.05 to +0.15, cores 0.5-0.8 from 4 or
8 m²). Same choice rule; a refinement is adopted only if its validation object F1 is higher
than the default's and its validation pixel F1 not lower by more than 0.005. A paired
bootstrap over the validation pairs says how much of each difference is their draw.
Probabilities are predicted once and kept in ``--cache`` (reused on the next run).

    TORCH_THREADS=1 uv run --frozen python scripts/postprocess_eval.py tinysiam_ensemble
        --refine --scales 0.75 1.25 1.5 2 --cache out/proba_cache [--json out/refine.json]

``--misses`` sorts the labelled buildings that ``weijian detect``'s default polygons do not
find whole (IoU >= 0.5) into why, per part and dataset: a speck under the 10 m² minimum area,
missed (under 10 % of it under any polygon), merged (one polygon covers at least half of it but
is too large: it spans neighbours or surrounding change), split (at least half covered, only
by several polygons) or partly covered (10-50 %). A diagnosis of the default, reported only.

    TORCH_THREADS=1 uv run --frozen python scripts/postprocess_eval.py tinysiam_ensemble --misses

Several WEIGHTS files make an ensemble (probabilities averaged); give its threshold chosen on
validation with ``--threshold`` (e.g. from ``scripts/threshold_on_validation.py``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from affine import Affine
from rasterio.features import rasterize

from change_detection.data import (
    HELDOUT,
    Pair,
    drop_contained_crops,
    find_pairs,
    load_pair,
    matches,
)
from change_detection.evaluation import ensemble_model
from change_detection.inference import predict_proba
from change_detection.metrics import object_counts, pixel_scores
from change_detection.objects import ObjectParams, candidate_labels, core_labels, filter_labels
from change_detection.refine import (
    GuidedParams,
    SuperpixelParams,
    guided_filter,
    proba_at_scale,
    superpixel_labels,
    superpixel_refine,
)
from change_detection.vectorize import VectorizeParams, polygons_from_proba
from change_detection.weights import ChangeModel, load_model
from weijian.settings import DetectionSettings
from weijian_testdata.rasters import CHANGE_PAIRS

DATA = CHANGE_PAIRS
FOLDERS = ("levir_256", "levir_1024", "dsifn_256", "egy_256")
MIN_AREA_M2 = 10.0
#: ``--refine``: a refinement must not lose more validation pixel F1 than this (noise)
PIXEL_F1_NOISE = 0.005


def post_mask(
    proba: np.ndarray, gsd: float, params: VectorizeParams | None, cut: float
) -> np.ndarray:
    """The changed mask after post-processing: int32 labels, one per polygon (0: no change).

    Each polygon is burnt with its own label, so polygons that touch (seeded-core objects share
    borders) are scored as the separate objects ``weijian detect`` writes; where regularised
    outlines overlap, the later (smaller) polygon wins. ``params`` ``None``: the raw threshold
    as a bool mask (the object matcher takes its 8-connected components, drops small ones).
    """
    if params is None:
        return proba >= cut
    transform = Affine(gsd, 0, 0, 0, -gsd, 0)
    records = polygons_from_proba(proba, transform, params)
    if not records:
        return np.zeros(proba.shape, np.int32)
    return rasterize(
        [(r["geometry"], i) for i, r in enumerate(records, start=1)],
        out_shape=proba.shape,
        transform=transform,
        dtype="int32",
    )


def figures(
    predictions: Sequence[np.ndarray], pairs: Sequence[Pair], gsd: float, min_px: int
) -> dict[str, Any]:
    """Pixel and object figures of predicted masks or object label arrays (> 0: changed)."""
    tp = fp = fn = 0
    counts = dict.fromkeys(
        ("true_objects", "found", "predicted_objects", "false_positive_objects"), 0
    )
    pixels = 0
    for predicted, pair in zip(predictions, pairs, strict=True):
        pred, truth = predicted > 0, pair.label
        tp += int((pred & truth).sum())
        fp += int((pred & ~truth).sum())
        fn += int((~pred & truth).sum())
        pixels += truth.size
        for k, v in object_counts(predicted, truth, min_px).items():
            if k in counts:
                counts[k] += v
    km2 = pixels * gsd**2 / 1e6
    recall = counts["found"] / max(counts["true_objects"], 1)
    precision = (counts["predicted_objects"] - counts["false_positive_objects"]) / max(
        counts["predicted_objects"], 1
    )
    return {
        "f1": pixel_scores(tp, fp, fn)["f1"],
        "object_recall": recall,
        "object_precision": precision,
        "object_f1": 2 * recall * precision / (recall + precision) if recall + precision else 0.0,
        "fp_per_km2": counts["false_positive_objects"] / km2,
        "buildings": counts["true_objects"],
    }


def score(
    probas: Sequence[np.ndarray],
    pairs: Sequence[Pair],
    gsd: float,
    params: VectorizeParams | None,
    cut: float,
) -> dict[str, Any]:
    """Pixel and object figures of one polygon setting over ``pairs``."""
    min_px = int(np.ceil(MIN_AREA_M2 / gsd**2)) if params is None else 0
    masks = [post_mask(proba, gsd, params, cut) for proba in probas]
    return figures(masks, pairs, gsd, min_px)


def settings(threshold: float) -> list[tuple[str, VectorizeParams | None, float]]:
    """Raw, the detect defaults, and a small grid around them."""
    out: list[tuple[str, VectorizeParams | None, float]] = [("raw", None, threshold)]
    defaults = DetectionSettings().vectorize_params(threshold)  # what `weijian detect` runs
    out.append(
        (
            f"detect defaults: t {threshold:.2f} - {defaults.grow_margin:.1f} open "
            f"{defaults.opening_px} close {defaults.closing_px} core "
            f"{defaults.core_threshold:.1f} >= {defaults.core_min_area_m2:g} m²",
            defaults,
            threshold,
        )
    )
    out.append(("detect defaults without cores", replace(defaults, core_threshold=0.0), threshold))
    for cut, opening, closing, holes, regular in itertools.product(
        (threshold - 0.1, threshold, threshold + 0.1), (0, 1, 2), (0, 2, 4), (100.0,), (True,)
    ):
        params = VectorizeParams(
            threshold=cut,
            opening_px=opening,
            closing_px=closing,
            max_hole_m2=holes,
            regularize=regular,
            min_area_m2=MIN_AREA_M2,
        )
        out.append((f"t {cut:.2f} open {opening} close {closing}", params, cut))
        if closing == 0:
            for seed in (0.7, 0.8, 0.9):
                name = f"t {cut:.2f} open {opening} close 0 seed {seed:.1f}"
                out.append((name, replace(params, min_score_max=seed), cut))
    # seeded-core objects at the weights' threshold, grown grow_margin below it (decision 0024)
    for margin, core, core_m2, opening in itertools.product(
        (0.0, 0.1, 0.2), (0.5, 0.6, 0.7, 0.8, 0.9), (2.0, 4.0, 8.0), (0, 1)
    ):
        params = VectorizeParams(
            threshold=threshold,
            opening_px=opening,
            closing_px=0,
            min_area_m2=MIN_AREA_M2,
            core_threshold=core,
            core_min_area_m2=core_m2,
            grow_margin=margin,
        )
        name = (
            f"t {threshold:.2f} - {margin:.1f} open {opening} close 0 "
            f"core {core:.1f} >= {core_m2:g} m²"
        )
        out.append((name, params, threshold))
    return out


def chosen(rows: Sequence[tuple[str, dict[str, Any], dict[str, Any]]]) -> str:
    """The setting chosen on validation.

    Best validation object F1, ties broken by validation pixel F1, then by the order of the grid
    (held-out figures never enter).
    """
    best = max(
        enumerate(rows),
        key=lambda ir: (round(ir[1][1]["object_f1"], 6), round(ir[1][1]["f1"], 6), -ir[0]),
    )
    return best[1][0]


def load(names: Sequence[str], data: Path) -> list[Pair]:
    """The pairs matching ``names`` (glob patterns), each pixel once."""
    files = find_pairs([data / f for f in FOLDERS if (data / f).is_dir()])
    return [
        load_pair(f) for f in drop_contained_crops([f for f in files if matches(f.name, names)])
    ]


def score_objects(
    labels: Sequence[np.ndarray], pairs: Sequence[Pair], gsd: float
) -> dict[str, Any]:
    """Pixel and object figures of object label arrays over ``pairs`` (no further filtering)."""
    return figures(labels, pairs, gsd, 0)


def object_grid(threshold: float) -> list[ObjectParams]:
    """The object post-processing settings tried: the raw mask first, then the grid."""
    cuts = sorted({round(min(max(threshold + d, 0.05), 0.95), 2) for d in (-0.2, -0.1, 0, 0.1)})
    grid = [ObjectParams(threshold=threshold)]
    for cut, opening, split, area, seed, solid in itertools.product(
        cuts, (0, 1, 2), (0, 4, 8), (10.0, 25.0), (None, 0.8), (0.0, 0.5)
    ):
        if seed is not None and seed <= cut:
            continue
        grid.append(ObjectParams(cut, opening, split, area, seed, solid))
    # seeded cores (decision 0024): objects grown from cores inside the mask at ``cut``
    for cut, opening, core, core_m2 in itertools.product(
        cuts, (0, 1), (0.5, 0.6, 0.7, 0.8, 0.9), (2.0, 4.0, 8.0)
    ):
        if core > cut:
            grid.append(ObjectParams(cut, opening, core_threshold=core, core_min_area_m2=core_m2))
    return grid


def candidates(params: ObjectParams, proba: np.ndarray, gsd: float) -> np.ndarray:
    """Object labels of one setting before the filters of step 3."""
    if params.core_threshold is not None:
        min_px = max(1, int(np.ceil(params.core_min_area_m2 / gsd**2 - 1e-9)))
        return core_labels(
            proba, params.threshold, params.opening_px, params.core_threshold, min_px
        )
    return candidate_labels(proba, params.threshold, params.opening_px, params.split_px)


def choose(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows best first on validation.

    Object F1, ties broken by validation pixel F1, then by the grid's order (held-out figures
    never enter).
    """
    order = sorted(
        range(len(rows)),
        key=lambda i: (
            -round(rows[i]["validation"]["object_f1"], 6),
            -round(rows[i]["validation"]["f1"], 6),
            i,
        ),
    )
    return [rows[i] for i in order]


def objects_main(
    model: ChangeModel,
    probas: dict[str, list[np.ndarray]],
    pairs: dict[str, list[Pair]],
    json_path: Path | None,
) -> None:
    """Score every object setting on validation and held-out pairs; print the chosen ones."""
    gsd = model.gsd_m
    grid = object_grid(model.threshold)
    cache: dict[tuple[Any, ...], list[np.ndarray]] = {}
    rows: list[dict[str, Any]] = []
    for params in grid:
        result: dict[str, Any] = {"setting": params.name(), "params": params.to_dict()}
        for part in ("validation", "held-out"):
            key = (
                part,
                params.threshold,
                params.opening_px,
                params.split_px,
                params.core_threshold,
                params.core_min_area_m2 if params.core_threshold is not None else None,
            )
            if key not in cache:
                cache[key] = [candidates(params, p, gsd) for p in probas[part]]
            labels = [
                filter_labels(lab, p, params, gsd)
                for lab, p in zip(cache[key], probas[part], strict=True)
            ]
            result[part] = score_objects(labels, pairs[part], gsd)
        rows.append(result)
    raw = rows[0]
    by_val = choose(rows[1:])
    print(
        f"validation {len(pairs['validation'])} pairs ({raw['validation']['buildings']} "
        f"buildings), held-out {len(pairs['held-out'])} pairs "
        f"({raw['held-out']['buildings']} buildings), {len(grid)} settings\n"
    )
    print(
        "| setting | val pixel F1 | val object F1 | val object recall | val FP/km² "
        "| held-out pixel F1 | held-out object recall | held-out object precision "
        "| held-out FP/km² |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    best_core = next(r for r in by_val if r["params"]["core_threshold"] is not None)
    best_plain = next(r for r in by_val if r["params"]["core_threshold"] is None)
    shown = [raw, *by_val[:12]]
    shown += [r for r in (best_core, best_plain) if not any(r is q for q in shown)]
    for i, r in enumerate(shown):
        v, h = r["validation"], r["held-out"]
        mark = " (raw mask)" if i == 0 else (" (chosen on validation)" if i == 1 else "")
        if i > 1 and r is best_core:
            mark = " (best seeded-core setting on validation)"
        elif i > 1 and r is best_plain:
            mark = " (best setting without cores on validation)"
        print(
            f"| {r['setting']}{mark} | {v['f1']:.3f} | {v['object_f1']:.3f} "
            f"| {v['object_recall']:.3f} | {v['fp_per_km2']:.0f} | {h['f1']:.3f} "
            f"| {h['object_recall']:.3f} | {h['object_precision']:.3f} "
            f"| {h['fp_per_km2']:.0f} |",
            flush=True,
        )
    print(
        "\nchosen on validation (best object F1; ties: validation pixel F1, then grid order): "
        f"{by_val[0]['setting']}"
    )
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"chosen": by_val[0], "rows": rows}, indent=1))


#: A refinement of ``--refine``: (name, extra scale or None, image filter or None).
Refinement = tuple[str, float | None, SuperpixelParams | GuidedParams | None]


def refinements(scales: Sequence[float]) -> list[Refinement]:
    """The refinements measured by ``--refine``: none, superpixels, guided filter, scales.

    Then each scale combined with the lightest guided filter and the smallest superpixels.
    """
    out: list[Refinement] = [("none (the product)", None, None)]
    filters: list[SuperpixelParams | GuidedParams] = [
        SuperpixelParams(m2, 10.0, weight)
        for m2, weight in itertools.product((5.0, 10.0, 25.0, 50.0), (0.25, 0.5, 1.0))
    ]
    filters.append(SuperpixelParams(10.0, 30.0, 0.5))
    filters += [GuidedParams(r, eps) for r, eps in itertools.product((2, 4, 8), (1e-3, 1e-2))]
    out += [(f.name(), None, f) for f in filters]
    for s in scales:
        out.append((f"scales 1 + {s:g}", s, None))
    for s in scales:
        for f in (GuidedParams(2, 1e-3), SuperpixelParams(5.0, 10.0, 0.5)):
            out.append((f"scales 1 + {s:g}, {f.name()}", s, f))
    return out


def refine_grid(threshold: float) -> list[tuple[str, VectorizeParams]]:
    """Seeded-core polygon settings around the defaults: threshold +-0.05, cores 0.5-0.7."""
    defaults = DetectionSettings().vectorize_params(threshold)
    out = []
    for cut, core, core_m2 in itertools.product(
        [threshold + d for d in (-0.05, 0.0, 0.05, 0.1, 0.15)], (0.5, 0.6, 0.7, 0.8), (4.0, 8.0)
    ):
        if core <= cut:
            continue
        params = replace(
            defaults, threshold=round(cut, 4), core_threshold=core, core_min_area_m2=core_m2
        )
        name = f"t {cut:.2f} - {defaults.grow_margin:.1f} core {core:.1f} >= {core_m2:g} m²"
        out.append((name, params))
    return out


def cached_proba(cache: Path | None, key: str, compute: Any) -> np.ndarray:
    """``compute()`` stored as ``cache/key.npy`` (recomputed when there is no cache folder)."""
    if cache is None:
        return np.asarray(compute(), np.float32)
    path = cache / (key.replace("/", "__") + ".npy")
    if path.exists():
        return np.load(path)
    out = np.asarray(compute(), np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, out)
    tmp.replace(path)
    return out


def pair_counts(
    probas: Sequence[np.ndarray], pairs: Sequence[Pair], gsd: float, params: VectorizeParams
) -> np.ndarray:
    """Per pair: pixel tp, fp, fn, true objects, found, predicted objects, false positives."""
    out = []
    for proba, pair in zip(probas, pairs, strict=True):
        predicted = post_mask(proba, gsd, params, params.threshold)
        pred, truth = predicted > 0, pair.label
        c = object_counts(predicted, truth, 0)
        out.append(
            [
                int((pred & truth).sum()),
                int((pred & ~truth).sum()),
                int((~pred & truth).sum()),
                c["true_objects"],
                c["found"],
                c["predicted_objects"],
                c["false_positive_objects"],
            ]
        )
    return np.asarray(out, np.float64)


def _f1s(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel F1 and object F1 of summed per-pair counts (last axis: :func:`pair_counts`)."""
    tp, fp, fn, true_obj, found, pred_obj, fp_obj = np.moveaxis(counts, -1, 0)
    pixel = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    recall = found / np.maximum(true_obj, 1)
    precision = (pred_obj - fp_obj) / np.maximum(pred_obj, 1)
    obj = np.where(recall + precision > 0, 2 * recall * precision / (recall + precision + 1e-12), 0)
    return pixel, obj


def paired_bootstrap(
    candidate: np.ndarray, default: np.ndarray, n: int = 2000, seed: int = 0
) -> dict[str, float]:
    """How often the candidate's object F1 beats the default's over resampled pairs.

    The pairs are drawn with replacement, the same draw for both (``candidate``/``default``:
    :func:`pair_counts` rows); returns that share and the 5-95 % range of the object-F1 and
    pixel-F1 differences.
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(candidate), (n, len(candidate)))
    cp, co = _f1s(candidate[idx].sum(axis=1))
    dp, do = _f1s(default[idx].sum(axis=1))
    d_obj, d_pix = co - do, cp - dp
    return {
        "p_object_f1_better": float((d_obj > 0).mean()),
        "object_f1_diff_5": float(np.percentile(d_obj, 5)),
        "object_f1_diff_95": float(np.percentile(d_obj, 95)),
        "pixel_f1_diff_5": float(np.percentile(d_pix, 5)),
        "pixel_f1_diff_95": float(np.percentile(d_pix, 95)),
    }


def refine_main(
    model: ChangeModel,
    tag: str,
    pairs: dict[str, list[Pair]],
    scales: Sequence[float],
    tta: bool,
    cache: Path | None,
    json_path: Path | None,
) -> None:
    """Score every refinement x polygon setting on validation and held-out pairs; print tables.

    Probabilities (scale 1 and each of ``scales``) are predicted once per pair and cached in
    ``cache``; superpixel labels once per pair and size. The network time of each scale is
    printed (seconds per Mpx, this machine, this load).
    """
    gsd = model.gsd_m
    base: dict[str, list[np.ndarray]] = {}
    at_scale: dict[float, dict[str, list[np.ndarray]]] = {s: {} for s in scales}
    timing: dict[float, float] = {}
    for part, prs in pairs.items():
        base[part] = []
        for p in prs:
            key = f"{tag}_tta{int(tta)}_s1_{p.name}"
            t0 = time.perf_counter()
            base[part].append(
                cached_proba(
                    cache, key, lambda p=p: predict_proba(model, p.before, p.after, tta=tta)
                )
            )
            timing.setdefault(1.0, 0.0)
            timing[1.0] += time.perf_counter() - t0
            for s in scales:
                key = f"{tag}_tta{int(tta)}_s{s:g}_{p.name}"
                t0 = time.perf_counter()
                at_scale[s].setdefault(part, []).append(
                    cached_proba(
                        cache,
                        key,
                        lambda p=p, s=s: proba_at_scale(model, p.before, p.after, s, tta=tta),
                    )
                )
                timing[s] = timing.get(s, 0.0) + time.perf_counter() - t0
    mpx = sum(p.pixels for prs in pairs.values() for p in prs) / 1e6
    print(
        "network seconds per Mpx of the pairs (0 when read from the cache): "
        + ", ".join(f"scale {s:g}: {t / mpx:.1f}" for s, t in sorted(timing.items()))
    )
    labels: dict[tuple[float, float], dict[str, list[np.ndarray]]] = {}
    grid = refine_grid(model.threshold)
    rows: list[dict[str, Any]] = []
    refine_seconds: dict[str, float] = {}
    label_seconds: dict[tuple[float, float], float] = {}
    kept_validation: dict[str, list[np.ndarray]] = {}
    for rname, scale, rparams in refinements(scales):
        refined: dict[str, list[np.ndarray]] = {}
        t0 = time.perf_counter()
        spent = 0.0  # superpixel labels computed in this round (counted below)
        for part, prs in pairs.items():
            out = []
            for i, p in enumerate(prs):
                proba = base[part][i]
                if scale is not None:
                    proba = (proba + at_scale[scale][part][i]) / 2
                if isinstance(rparams, SuperpixelParams):
                    k = (rparams.superpixel_m2, rparams.compactness)
                    lab = labels.setdefault(k, {}).setdefault(part, [])
                    if len(lab) <= i:
                        t1 = time.perf_counter()
                        lab.append(superpixel_labels(p.before, p.after, gsd, *k))
                        dt = time.perf_counter() - t1
                        label_seconds[k] = label_seconds.get(k, 0.0) + dt
                        spent += dt
                    proba = superpixel_refine(proba, p.before, p.after, gsd, rparams, lab[i])
                elif isinstance(rparams, GuidedParams):
                    proba = guided_filter(proba, p.before, p.after, rparams)
                out.append(np.asarray(proba, np.float32))
            refined[part] = out
        kept_validation[rname] = refined["validation"]
        seconds = time.perf_counter() - t0 - spent
        if isinstance(rparams, SuperpixelParams):  # labels computed once, counted every time
            seconds += label_seconds[(rparams.superpixel_m2, rparams.compactness)]
        refine_seconds[rname] = seconds / mpx
        for pname, params in grid:
            result: dict[str, Any] = {"refinement": rname, "polygons": pname, "params": params}
            for part, prs in pairs.items():
                result[part] = score(refined[part], prs, gsd, params, params.threshold)
            rows.append(result)
    ranked = choose(rows)
    defaults = DetectionSettings().vectorize_params(model.threshold)
    default_name = next(
        n
        for n, q in grid
        if q.threshold == defaults.threshold and q.core_threshold == defaults.core_threshold
    )
    print(
        f"\nvalidation {len(pairs['validation'])} pairs "
        f"({rows[0]['validation']['buildings']} buildings), held-out "
        f"{len(pairs['held-out'])} pairs ({rows[0]['held-out']['buildings']} buildings), "
        f"{len(rows)} settings\n"
    )
    print(
        "| refinement | polygons | s/Mpx | val pixel F1 | val object F1 | val object recall "
        "| val FP/km² | held-out pixel F1 | held-out object recall | held-out object precision "
        "| held-out FP/km² |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    # s/Mpx: the refinement's own time (superpixel labels included), without the network
    best_of: dict[str, dict[str, Any]] = {}
    for r in ranked:
        best_of.setdefault(r["refinement"], r)
    shown = [
        r
        for r in rows
        if r["refinement"] == rows[0]["refinement"] and r["polygons"] == default_name
    ]
    shown += [r for r in best_of.values() if r not in shown]
    for r in shown:
        v, h = r["validation"], r["held-out"]
        mark = " (chosen on validation)" if r is ranked[0] else ""
        if r is shown[0]:
            mark += " (the product's default)"
        print(
            f"| {r['refinement']}{mark} | {r['polygons']} | {refine_seconds[r['refinement']]:.1f} "
            f"| {v['f1']:.3f} | {v['object_f1']:.3f} | {v['object_recall']:.3f} "
            f"| {v['fp_per_km2']:.0f} | {h['f1']:.3f} | {h['object_recall']:.3f} "
            f"| {h['object_precision']:.3f} | {h['fp_per_km2']:.0f} |",
            flush=True,
        )
    print(
        "\nchosen on validation (best object F1; ties: validation pixel F1, then grid order): "
        f"{ranked[0]['refinement']}, {ranked[0]['polygons']}"
    )
    best, v0 = ranked[0], shown[0]["validation"]
    gain = best["validation"]["object_f1"] - v0["object_f1"]
    loss = v0["f1"] - best["validation"]["f1"]
    adopt = best["refinement"] != shown[0]["refinement"] and gain > 0 and loss <= PIXEL_F1_NOISE
    print(
        f"against the product's default: validation object F1 {gain:+.3f}, pixel F1 {-loss:+.3f} "
        f"(adopted only if object F1 is higher and pixel F1 not lower by more than "
        f"{PIXEL_F1_NOISE}): {'adopt' if adopt else 'not adopted'}"
    )
    # How much of each difference is the draw of the 6 validation tiles: a paired bootstrap
    # over the tiles of the rows shown against the product's default.
    base_row = shown[0]
    default_counts = pair_counts(
        kept_validation[base_row["refinement"]], pairs["validation"], gsd, base_row["params"]
    )
    print(
        "\npaired bootstrap over the validation pairs (2,000 draws) against the product's "
        "default:\n\n| refinement | polygons | P(object F1 better) | object F1 difference "
        "5-95 % | pixel F1 difference 5-95 % |\n| --- | --- | --- | --- | --- |"
    )
    for r in shown[1:]:
        counts = pair_counts(
            kept_validation[r["refinement"]], pairs["validation"], gsd, r["params"]
        )
        b = paired_bootstrap(counts, default_counts)
        r["bootstrap"] = b
        print(
            f"| {r['refinement']} | {r['polygons']} | {b['p_object_f1_better']:.2f} "
            f"| {b['object_f1_diff_5']:+.3f} to {b['object_f1_diff_95']:+.3f} "
            f"| {b['pixel_f1_diff_5']:+.3f} to {b['pixel_f1_diff_95']:+.3f} |",
            flush=True,
        )
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        for r in rows:
            r["params"] = r["params"].to_dict()
        json_path.write_text(json.dumps({"chosen": ranked[0], "rows": rows}, indent=1))


#: ``--misses``: why a labelled building is not found whole, in the order they are tested
MISS_KINDS = ("found", "speck", "missed", "merged", "split", "partly covered")


def miss_kind(building: np.ndarray, polygons: np.ndarray, gsd: float) -> str:
    """Why the labelled building (bool mask) is or is not found by ``polygons`` (int labels)."""
    area = int(building.sum())
    ids, inter = np.unique(polygons[building], return_counts=True)
    inter, ids = inter[ids > 0], ids[ids > 0]
    if ids.size:
        sizes = np.bincount(polygons.ravel())[ids]
        if (inter / (area + sizes - inter)).max() >= 0.5:
            return "found"
    if area * gsd**2 < MIN_AREA_M2:
        return "speck"
    covered = inter.sum() / area
    if covered < 0.1:
        return "missed"
    if inter.max() >= 0.5 * area:
        return "merged"
    return "split" if covered >= 0.5 else "partly covered"


def misses_main(
    model: ChangeModel, probas: dict[str, list[np.ndarray]], parts: dict[str, list[Pair]]
) -> None:
    """Print why the default polygons miss the buildings they miss, per part and dataset."""
    from scipy import ndimage

    params = DetectionSettings().vectorize_params(model.threshold)
    print(
        f"`weijian detect`'s default polygons (threshold {params.threshold:.2f}, grown to "
        f"{params.mask_threshold:.3f}, cores {params.core_threshold:g} from "
        f"{params.core_min_area_m2:g} m²); labelled buildings: 8-connected parts of the label\n"
    )
    print("| part | dataset | buildings | " + " | ".join(MISS_KINDS) + " |")
    print("| --- " * (len(MISS_KINDS) + 3) + "|")
    for part, pairs in parts.items():
        table: dict[str, dict[str, int]] = {}
        for proba, pair in zip(probas[part], pairs, strict=True):
            polygons = post_mask(proba, model.gsd_m, params, params.threshold)
            parts_of_label, n = ndimage.label(pair.label, structure=np.ones((3, 3), bool))
            row = table.setdefault(
                pair.name.split("/")[0].split("_")[0], dict.fromkeys(MISS_KINDS, 0)
            )
            for k in range(1, n + 1):
                row[miss_kind(parts_of_label == k, polygons, model.gsd_m)] += 1
        for dataset, row in sorted(table.items()):
            print(
                f"| {part} | {dataset} | {sum(row.values())} | "
                + " | ".join(str(row[k]) for k in MISS_KINDS)
                + " |"
            )


def main() -> None:
    """Predict once, score every setting on validation and held-out pairs, print tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "weights", nargs="*", default=["tinysiam"], help="one, or several for an ensemble"
    )
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--objects", action="store_true", help="object post-processing grid")
    parser.add_argument("--validation", nargs="*", help="validation pairs (glob patterns)")
    parser.add_argument("--threshold", type=float, help="centre of the threshold grid")
    parser.add_argument("--json", type=Path, help="write every row here (--objects, --refine)")
    parser.add_argument(
        "--refine", action="store_true", help="image-guided refinement and multi-scale grid"
    )
    parser.add_argument(
        "--misses", action="store_true", help="why the default polygons miss buildings"
    )
    parser.add_argument(
        "--scales", type=float, nargs="*", default=[1.5, 2.0], help="with --refine: scales tried"
    )
    parser.add_argument(
        "--cache", type=Path, help="with --refine: keep the predicted probabilities here"
    )
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))
    models = [load_model(w, device="cpu") for w in args.weights]
    model: ChangeModel = models[0] if len(models) == 1 else ensemble_model(models)
    if args.threshold is not None:
        model.metadata["threshold"] = args.threshold
    val = load(args.validation or model.metadata["split"]["validation"], args.data)
    held = load(HELDOUT, args.data)
    if {p.name for p in val} & {p.name for p in held}:
        parser.error("validation and held-out pairs overlap")
    gsd = model.gsd_m
    if args.refine:
        tag = "+".join(Path(w).stem for w in args.weights)
        refine_main(
            model,
            tag,
            {"validation": val, "held-out": held},
            args.scales,
            args.tta,
            args.cache,
            args.json,
        )
        return
    probas = {
        part: [predict_proba(model, p.before, p.after, tta=args.tta) for p in pairs]
        for part, pairs in (("validation", val), ("held-out", held))
    }
    if args.objects:
        objects_main(model, probas, {"validation": val, "held-out": held}, args.json)
        return
    if args.misses:
        misses_main(model, probas, {"validation": val, "held-out": held})
        return
    rows = []
    for name, params, cut in settings(model.threshold):
        v = score(probas["validation"], val, gsd, params, cut)
        h = score(probas["held-out"], held, gsd, params, cut)
        rows.append((name, v, h))
    best = chosen(rows[1:])
    cored = chosen([r for r in rows[1:] if " core " in r[0]])
    print(
        f"weights {' + '.join(args.weights)}, validation {len(val)} pairs "
        f"({rows[0][1]['buildings']} buildings), held-out {len(held)} pairs "
        f"({rows[0][2]['buildings']} buildings)\n"
    )
    print(
        "| setting | val pixel F1 | val object F1 | val object recall | val FP/km² "
        "| held-out pixel F1 | held-out object recall | held-out object precision "
        "| held-out FP/km² |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, v, h in rows:
        mark = " (chosen on validation)" if name == best else ""
        if name == cored and name != best:
            mark = " (best seeded-core setting on validation)"
        print(
            f"| {name}{mark} | {v['f1']:.3f} | {v['object_f1']:.3f} | {v['object_recall']:.3f} "
            f"| {v['fp_per_km2']:.0f} | {h['f1']:.3f} | {h['object_recall']:.3f} "
            f"| {h['object_precision']:.3f} | {h['fp_per_km2']:.0f} |",
            flush=True,
        )
    print(
        "\nchosen on validation (best object F1; ties: validation pixel F1, then grid order): "
        f"{best}\nbest seeded-core setting on validation: {cored}"
    )


if __name__ == "__main__":
    main()
