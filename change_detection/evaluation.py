"""Evaluate a model on LEVIR-layout pairs: pixel, curve and object figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from change_detection.data import Pair
from change_detection.inference import predict_proba
from change_detection.metrics import ChangeScorer
from change_detection.weights import ChangeModel


def evaluate_pairs(
    model: ChangeModel,
    pairs: Sequence[Pair],
    threshold: float | None = None,
    gsd_m: float = 0.5,
    min_area_m2: float = 0.0,
    per_pair: bool = False,
) -> dict[str, Any]:
    """Score ``model`` on whole pairs (each predicted in one piece).

    ``threshold``: change-probability cut (default: the model's stored best threshold);
    ``gsd_m``: metres per pixel of the data (for false positives per km² and ``min_area_m2``,
    the smallest predicted object counted, m²). Returns :meth:`ChangeScorer.summary` plus the
    pair names, and with ``per_pair`` each pair's pixel F1/IoU and object recall.
    """
    cut = model.threshold if threshold is None else threshold
    total = ChangeScorer(cut, gsd_m, min_area_m2)
    rows: list[dict[str, Any]] = []
    for pair in pairs:
        proba = predict_proba(model, pair.before, pair.after)
        total.add(proba, pair.label)
        if per_pair:
            one = ChangeScorer(cut, gsd_m, min_area_m2)
            one.add(proba, pair.label)
            s = one.summary()
            rows.append(
                {
                    "pair": pair.name,
                    "f1": s["f1"],
                    "iou": s["iou"],
                    "object_recall": s["objects"]["recall"],
                }
            )
    summary = total.summary()
    summary["pairs"] = [p.name for p in pairs]
    if per_pair:
        summary["per_pair"] = rows
    return summary
