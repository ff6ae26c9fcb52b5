"""Pixel and object metrics of change maps.

Conventions: a pixel is predicted "changed" when its probability is ``>= threshold``. Ratios with
a zero denominator are 1.0 (no predictions: no false alarm; nothing changed: nothing missed), so
an empty tile predicted empty scores perfectly. Objects are 8-connected components.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

#: Probability bins of the precision-recall curve: thresholds 0.00, 0.01, ..., 0.99.
CURVE_BINS = 100


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 1.0


def pixel_scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall, F1 and IoU (intersection over union of the changed class)."""
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "iou": _ratio(tp, tp + fp + fn)}


def object_counts(
    pred: np.ndarray, truth: np.ndarray, min_area_px: int = 0, iou: float = 0.5
) -> dict[str, int]:
    """Match predicted components to true changed objects (boolean ``(H, W)`` masks).

    ``pred`` may also be an integer array of object labels (0 = background), e.g. after
    splitting touching objects; its objects are then taken as they are, not as components.

    A true object is *found* when some predicted component overlaps it with IoU ``>= iou``; a
    predicted component (of at least ``min_area_px`` pixels; smaller ones are dropped as a
    vectoriser would) is a *false positive* when it reaches that IoU with no true object, and
    *spurious* when it touches no changed pixel at all (a wasted site visit; fragments of a real
    change are false positives but not spurious). Returns ``true_objects``, ``found``,
    ``predicted_objects``, ``false_positive_objects``, ``spurious_objects``.
    """
    eight = np.ones((3, 3), dtype=bool)
    gt_lab, n_gt = ndimage.label(truth, structure=eight)
    if pred.dtype != bool and np.issubdtype(pred.dtype, np.integer):
        ids, pr_lab = np.unique(pred, return_inverse=True)
        pr_lab = pr_lab.reshape(pred.shape)
        if ids[0] != 0:  # no background pixel: every label is an object
            pr_lab = pr_lab + 1
        n_pr = int(pr_lab.max())
    else:
        pr_lab, n_pr = ndimage.label(pred, structure=eight)
    if n_pr and min_area_px > 0:
        sizes = np.bincount(pr_lab.ravel(), minlength=n_pr + 1)
        keep = sizes >= min_area_px
        keep[0] = False
        relabel = np.zeros(n_pr + 1, dtype=np.int64)
        relabel[keep] = np.arange(1, int(keep.sum()) + 1)
        pr_lab, n_pr = relabel[pr_lab], int(keep.sum())
    if n_gt == 0 or n_pr == 0:
        return {
            "true_objects": n_gt,
            "found": 0,
            "predicted_objects": n_pr,
            "false_positive_objects": n_pr,
            "spurious_objects": n_pr,
        }
    gt_area = np.bincount(gt_lab.ravel(), minlength=n_gt + 1)
    pr_area = np.bincount(pr_lab.ravel(), minlength=n_pr + 1)
    both = (gt_lab > 0) & (pr_lab > 0)
    inter = np.zeros((n_gt + 1, n_pr + 1), dtype=np.int64)
    np.add.at(inter, (gt_lab[both], pr_lab[both]), 1)
    union = gt_area[:, None] + pr_area[None, :] - inter
    good = (inter / np.maximum(union, 1) >= iou)[1:, 1:]
    return {
        "true_objects": n_gt,
        "found": int(good.any(axis=1).sum()),
        "predicted_objects": n_pr,
        "false_positive_objects": int((~good.any(axis=0)).sum()),
        "spurious_objects": int((inter[:, 1:].sum(axis=0) == 0).sum()),
    }


@dataclass
class ChangeScorer:
    """Accumulates pixel counts, the precision-recall curve and object matches over tiles.

    ``threshold`` is the change-probability cut; ``gsd_m`` the metres per pixel (for the
    false-positive density per km²); ``min_area_m2`` drops smaller predicted components.
    """

    threshold: float = 0.5
    gsd_m: float = 0.5
    min_area_m2: float = 0.0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    pixels: int = 0
    hist_pos: np.ndarray = field(default_factory=lambda: np.zeros(CURVE_BINS, dtype=np.int64))
    hist_neg: np.ndarray = field(default_factory=lambda: np.zeros(CURVE_BINS, dtype=np.int64))
    objects: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            (
                "true_objects",
                "found",
                "predicted_objects",
                "false_positive_objects",
                "spurious_objects",
            ),
            0,
        )
    )

    def add(self, proba: np.ndarray, truth: np.ndarray, known: np.ndarray | None = None) -> None:
        """Add one tile: change probability ``(H, W)`` in 0..1 and boolean truth ``(H, W)``.

        ``known`` (boolean ``(H, W)``, partly labelled tiles): only those pixels are counted,
        and predicted objects are cut to them (an object outside every decided area is not
        counted as a false positive); the area is that of the known pixels.
        """
        truth = truth.astype(bool)
        pred = proba >= self.threshold
        if known is not None:
            known = known.astype(bool)
            truth, pred = truth & known, pred & known
            proba = proba[known]
        self.tp += int((pred & truth).sum())
        self.fp += int((pred & ~truth).sum())
        self.fn += int((~pred & truth).sum())
        self.pixels += truth.size if known is None else int(known.sum())
        bins = np.clip((proba * CURVE_BINS).astype(np.int64), 0, CURVE_BINS - 1)
        pos = truth if known is None else truth[known]
        self.hist_pos += np.bincount(bins[pos], minlength=CURVE_BINS)
        self.hist_neg += np.bincount(bins[~pos], minlength=CURVE_BINS)
        min_px = int(np.ceil(self.min_area_m2 / self.gsd_m**2))
        for key, value in object_counts(pred, truth, min_px).items():
            self.objects[key] += value

    def curve(self) -> list[dict[str, float]]:
        """Precision, recall and F1 at thresholds ``k / CURVE_BINS`` (exact at these thresholds)."""
        tp = np.cumsum(self.hist_pos[::-1])[::-1]  # positives with probability >= k / BINS
        fp = np.cumsum(self.hist_neg[::-1])[::-1]
        fn = int(self.hist_pos.sum()) - tp
        rows = []
        for k in range(CURVE_BINS):
            s = pixel_scores(int(tp[k]), int(fp[k]), int(fn[k]))
            rows.append(
                {
                    "threshold": k / CURVE_BINS,
                    "precision": s["precision"],
                    "recall": s["recall"],
                    "f1": s["f1"],
                }
            )
        return rows

    def best_threshold(self) -> tuple[float, float]:
        """The curve threshold with the highest F1 and that F1."""
        best = max(self.curve(), key=lambda r: (r["f1"], -abs(r["threshold"] - 0.5)))
        return best["threshold"], best["f1"]

    def summary(self) -> dict[str, Any]:
        """All figures as a JSON-ready dict (pixel scores at ``threshold``, curve, objects)."""
        area_km2 = self.pixels * self.gsd_m**2 / 1e6
        best_t, best_f1 = self.best_threshold()
        obj = dict(self.objects)
        return {
            "threshold": self.threshold,
            "pixels": self.pixels,
            **pixel_scores(self.tp, self.fp, self.fn),
            "best_threshold": best_t,
            "best_f1": best_f1,
            "objects": {
                **obj,
                "recall": _ratio(obj["found"], obj["true_objects"]),
                "precision": _ratio(
                    obj["predicted_objects"] - obj["false_positive_objects"],
                    obj["predicted_objects"],
                ),
                "false_positives_per_km2": obj["false_positive_objects"] / area_km2
                if area_km2
                else 0.0,
                "spurious_per_km2": obj["spurious_objects"] / area_km2 if area_km2 else 0.0,
                "area_km2": area_km2,
                "gsd_m": self.gsd_m,
                "min_area_m2": self.min_area_m2,
                "match_iou": 0.5,
            },
            "curve": self.curve(),
        }
