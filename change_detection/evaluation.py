"""Evaluate a model on LEVIR-layout pairs: pixel, curve and object figures.

:func:`ensemble_model` makes one model of several trained ones (their probabilities averaged),
so an ensemble is evaluated, thresholded and post-processed like a single network;
:func:`build_ensemble` makes one from weights files, chooses its threshold on the members'
validation pairs (:func:`threshold_on_validation`, the rule of
``scripts/threshold_on_validation.py``) and writes an ensemble weights file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from change_detection.data import (
    HELDOUT,
    Pair,
    drop_contained_crops,
    find_pairs,
    load_pair,
    matches,
)
from change_detection.errors import WeightsError
from change_detection.inference import predict_proba
from change_detection.metrics import ChangeScorer
from change_detection.networks import ProbabilityEnsemble, count_gmacs, count_parameters
from change_detection.weights import ChangeModel, load_model, save_weights

#: metadata of a member's own training run, not true of an ensemble of it
_MEMBER_ONLY = (
    "epoch",
    "threshold",
    "training_seconds",
    "training_device",
    "trained_at",
    "metrics_validation",
    "metrics_heldout",
    "averaged_epochs",
    "config",
    "lineage",
    "parameters",
    "gmacs_256",
    "members",
    "ensemble_size",
)
#: smallest predicted object counted when choosing an ensemble's threshold, m² (as the scripts)
VALIDATION_MIN_AREA_M2 = 10.0


def _member_record(model: ChangeModel) -> dict[str, Any]:
    meta = model.metadata
    return {
        "epoch": meta.get("epoch"),
        "threshold": model.threshold,
        "seed": (meta.get("config") or {}).get("seed"),
        "trained_at": meta.get("trained_at"),
        "code_version": meta.get("code_version"),
        "metrics_validation": meta.get("metrics_validation"),
    }


def ensemble_model(models: Sequence[ChangeModel], threshold: float | None = None) -> ChangeModel:
    """One model averaging the change probabilities of ``models`` (a :class:`ProbabilityEnsemble`).

    The members must be single networks of one kind built alike (``network``,
    ``network_kwargs``) and share the input normalisation (``mean``, ``std``), GSD and
    device, as the same recipe trained with different seeds does (an ensemble file given alone
    is returned as it is). The metadata is the first
    member's without what belongs to its own training run (epoch, threshold, metrics, ...),
    with ``members`` (each member's epoch, threshold, seed, training time and validation
    figures), ``ensemble_size``, the summed ``parameters`` and ``gmacs_256``, and ``threshold``
    (default 0.5: choose it on validation, :func:`threshold_on_validation`).
    """
    if not models:
        raise WeightsError("an ensemble needs at least one weights file")
    first = models[0]
    if len(models) == 1 and first.ensemble_size > 1:  # an ensemble file given alone: as it is
        return (
            first
            if threshold is None
            else replace(first, metadata={**first.metadata, "threshold": threshold})
        )
    for m in models:
        if m.ensemble_size > 1:
            raise WeightsError(
                f"a member is itself an ensemble of {m.ensemble_size} {m.network} networks: "
                "give the single networks' weights files as members"
            )
    for m in models[1:]:
        if (m.network, m.network_kwargs) != (first.network, first.network_kwargs):
            raise WeightsError(
                "ensemble members must be the same network built alike (train them with the same "
                f"recipe): {m.network} {m.network_kwargs or '(defaults)'} against "
                f"{first.network} {first.network_kwargs or '(defaults)'}"
            )
        if (m.mean, m.std, m.gsd_m, m.device) != (first.mean, first.std, first.gsd_m, first.device):
            raise WeightsError(
                "ensemble members must share mean, std, GSD and device (train them with the same "
                f"recipe and data): {m.mean}/{m.std}/{m.gsd_m} m against "
                f"{first.mean}/{first.std}/{first.gsd_m} m"
            )
    net = ProbabilityEnsemble([m.net for m in models]).to(first.device).eval()
    metadata = {
        **{k: v for k, v in first.metadata.items() if k not in _MEMBER_ONLY},
        "members": [_member_record(m) for m in models],
        "ensemble_size": len(models),
        "parameters": count_parameters(net),
        "gmacs_256": round(count_gmacs(net), 4),
        "threshold": 0.5 if threshold is None else threshold,
    }
    return ChangeModel(first.network, net, metadata, first.device, dict(first.network_kwargs))


def validation_pairs(
    model: ChangeModel, folders: Sequence[Path | str], patterns: Sequence[str] | None = None
) -> list[Pair]:
    """The validation pairs of ``model`` found in ``folders`` (LEVIR layout).

    ``patterns``: globs ``<folder>/<stem>`` (default: the weights' own validation split,
    metadata ``split.validation``). Crops contained in a listed tile are dropped. Refuses a
    held-out pair (:data:`change_detection.data.HELDOUT`) and an empty result.
    """
    chosen = list(patterns or (model.metadata.get("split") or {}).get("validation") or [])
    if not chosen:
        raise WeightsError(
            "the weights record no validation split: give the validation pairs' patterns"
        )
    files = [f for f in find_pairs(folders) if matches(f.name, chosen)]
    pairs = [load_pair(f) for f in drop_contained_crops(files)]
    if not pairs:
        raise WeightsError(
            f"none of the validation pairs {', '.join(chosen)} is in "
            f"{', '.join(map(str, folders))}: give the folders the members were trained on"
        )
    held = [p.name for p in pairs if matches(p.name, HELDOUT)]
    if held:
        raise WeightsError(
            f"validation pairs {', '.join(held)} are held out: a threshold must not be chosen "
            "on held-out data"
        )
    return pairs


def threshold_on_validation(
    model: ChangeModel,
    pairs: Sequence[Pair],
    min_area_m2: float = VALIDATION_MIN_AREA_M2,
    tta: bool = False,
) -> tuple[float, dict[str, Any]]:
    """The best-F1 change-probability threshold on ``pairs`` and the figures at it.

    The threshold is the best pixel-F1 cut of the validation curve (steps of 0.01); the
    figures (:func:`evaluate_pairs`' summary) are measured at it, objects of at least
    ``min_area_m2`` m². This is the rule of ``scripts/threshold_on_validation.py`` and of
    ``weijian train``.
    """
    first = evaluate_pairs(model, pairs, 0.5, None, min_area_m2, tta=tta)
    cut = float(first["best_threshold"])
    return cut, evaluate_pairs(model, pairs, cut, None, min_area_m2, tta=tta)


def build_ensemble(
    weights: Sequence[Path | str],
    out: Path | str,
    data: Sequence[Path | str],
    validation: Sequence[str] | None = None,
    min_area_m2: float = VALIDATION_MIN_AREA_M2,
    code_version: str | None = None,
) -> tuple[ChangeModel, dict[str, Any]]:
    """Combine single-network weights files into an ensemble file at ``out``.

    The members must have been trained with the same validation split (a member must not have
    trained on another's validation pairs); the threshold is chosen on those pairs found in
    ``data`` (or on ``validation`` patterns) by :func:`threshold_on_validation`, and the
    validation figures at it go into the metadata (``metrics_validation``) with each member's
    provenance (source path, SHA-256, seed, epoch, own threshold and validation figures).
    Returns the model and the validation summary.
    """
    if not weights:
        raise WeightsError("an ensemble needs at least one weights file: give two or more")
    models = [load_model(w, device="cpu") for w in weights]
    splits = {tuple((m.metadata.get("split") or {}).get("validation") or []) for m in models}
    if validation is None and len(splits) > 1:
        raise WeightsError(
            "the members were validated on different pairs, so one may have trained on "
            "another's validation pairs: train them with the same --validation patterns"
        )
    model = ensemble_model(models)
    pairs = validation_pairs(model, data, validation)
    names = [p.name for p in pairs]
    for path, member in zip(weights, models, strict=True):
        trained = (member.metadata.get("split") or {}).get("train") or []
        leaked = [n for n in names if n in trained]
        if leaked:
            raise WeightsError(
                f"{path} was trained on validation pair(s) {', '.join(leaked)}: the ensemble's "
                "threshold would be chosen on training data; give other validation patterns"
            )
    cut, summary = threshold_on_validation(model, pairs, min_area_m2)
    from ingest.scene import sha256_file  # here: ingest loads GDAL, which evaluation does not need

    for record, path in zip(model.metadata["members"], weights, strict=True):
        record["source"] = str(path)
        record["sha256"] = sha256_file(Path(path))
    from change_detection.training import summary_line  # training imports this module

    model.metadata.update(
        {
            "threshold": cut,
            "metrics_validation": summary_line(summary),
            "validation_pairs": names,
            "combination": "mean of the members' change probabilities",
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **({"code_version": code_version} if code_version else {}),
        }
    )
    save_weights(out, model.net, model.network, model.metadata, model.network_kwargs)
    return model, summary


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
