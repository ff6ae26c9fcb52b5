"""Evaluate a model on LEVIR-layout pairs: pixel, curve and object figures.

:func:`ensemble_model` makes one model of several trained ones (their probabilities averaged),
so an ensemble is evaluated, thresholded and post-processed like a single network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from change_detection.data import Pair
from change_detection.errors import WeightsError
from change_detection.inference import predict_proba
from change_detection.metrics import ChangeScorer
from change_detection.networks import ProbabilityEnsemble, count_gmacs, count_parameters
from change_detection.weights import ChangeModel


def ensemble_model(models: Sequence[ChangeModel], threshold: float | None = None) -> ChangeModel:
    """One model averaging the change probabilities of ``models`` (a :class:`ProbabilityEnsemble`).

    The members must share the input normalisation (``mean``, ``std``) and GSD, as the same
    recipe trained with different seeds does. The metadata is the first member's with
    ``members`` (each member's epoch, threshold and seed), the summed ``parameters`` and
    ``gmacs_256``, and ``threshold`` (default 0.5: choose it on validation).
    """
    if not models:
        raise WeightsError("an ensemble needs at least one weights file")
    first = models[0]
    for m in models[1:]:
        if (m.mean, m.std, m.gsd_m, m.device) != (first.mean, first.std, first.gsd_m, first.device):
            raise WeightsError(
                "ensemble members must share mean, std, GSD and device (train them with the same "
                f"recipe and data): {m.mean}/{m.std}/{m.gsd_m} m against "
                f"{first.mean}/{first.std}/{first.gsd_m} m"
            )
    net = ProbabilityEnsemble([m.net for m in models]).to(first.device).eval()
    members = [
        {
            "epoch": m.metadata.get("epoch"),
            "threshold": m.threshold,
            "seed": m.metadata.get("config", {}).get("seed"),
        }
        for m in models
    ]
    metadata = {
        **first.metadata,
        "members": members,
        "parameters": count_parameters(net),
        "gmacs_256": round(count_gmacs(net), 4),
        "threshold": 0.5 if threshold is None else threshold,
    }
    return ChangeModel(first.network, net, metadata, first.device)


def evaluate_pairs(
    model: ChangeModel,
    pairs: Sequence[Pair],
    threshold: float | None = None,
    gsd_m: float | None = None,
    min_area_m2: float = 0.0,
    per_pair: bool = False,
    tta: bool = False,
    resample: bool = True,
) -> dict[str, Any]:
    """Score ``model`` on whole pairs (each predicted in one piece).

    ``threshold``: change-probability cut (default: the model's stored best threshold);
    ``gsd_m``: metres per pixel of the data (default: the model's GSD). Pairs at another GSD
    are resampled to the model's GSD for prediction and the probability back to the labels'
    grid, so they are scored as the detection step sees them; false positives per km² and
    ``min_area_m2`` (the smallest predicted object counted, m²) are in ground units.
    ``resample=False`` feeds the pixels as they are (for measuring what resampling is worth).
    ``tta``: flip/rotation test-time augmentation (see :func:`predict_proba`). Returns
    :meth:`ChangeScorer.summary` plus the pair names, and with ``per_pair`` each pair's pixel
    F1/IoU and object recall. Unknown pixels of partly labelled pairs are not counted.
    """
    cut = model.threshold if threshold is None else threshold
    gsd = model.gsd_m if gsd_m is None else gsd_m
    total = ChangeScorer(cut, gsd, min_area_m2)
    rows: list[dict[str, Any]] = []
    for pair in pairs:
        proba = predict_proba(
            model, pair.before, pair.after, tta=tta, gsd_m=gsd if resample else None
        )
        total.add(proba, pair.label, pair.known)
        if per_pair:
            one = ChangeScorer(cut, gsd, min_area_m2)
            one.add(proba, pair.label, pair.known)
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
    summary["model_gsd_m"] = model.gsd_m
    summary["resampled"] = resample and abs(gsd / model.gsd_m - 1) > 0.01
    summary["tta"] = tta
    if per_pair:
        summary["per_pair"] = rows
    return summary
