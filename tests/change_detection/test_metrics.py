"""Metrics checked against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from change_detection.metrics import ChangeScorer, object_counts, pixel_scores


def test_pixel_scores_by_hand() -> None:
    # tp 6, fp 2, fn 4: P = 6/8, R = 6/10, F1 = 2PR/(P+R) = 2/3, IoU = 6/12
    s = pixel_scores(6, 2, 4)
    assert s["precision"] == pytest.approx(0.75)
    assert s["recall"] == pytest.approx(0.6)
    assert s["f1"] == pytest.approx(2 / 3)
    assert s["iou"] == pytest.approx(0.5)
    assert pixel_scores(0, 0, 0) == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "iou": 1.0}
    assert pixel_scores(0, 5, 0)["f1"] == 0.0


def test_scorer_pixels_and_curve() -> None:
    proba = np.array([[0.9, 0.8, 0.3, 0.1], [0.6, 0.2, 0.7, 0.05]])
    truth = np.array([[1, 1, 1, 0], [0, 0, 1, 0]], dtype=bool)
    scorer = ChangeScorer(threshold=0.5, gsd_m=1.0)
    scorer.add(proba, truth)
    # at 0.5: predicted {0.9, 0.8, 0.6, 0.7}; tp = 0.9, 0.8, 0.7 -> 3; fp = 0.6 -> 1; fn = 0.3 -> 1
    s = scorer.summary()
    assert (scorer.tp, scorer.fp, scorer.fn) == (3, 1, 1)
    assert s["f1"] == pytest.approx(0.75)
    curve = {round(r["threshold"], 2): r for r in s["curve"]}
    # at 0.25 all positives found and fp = 0.6 only: P 4/5, R 1, F1 = 8/9 (the best)
    assert curve[0.25]["precision"] == pytest.approx(0.8)
    assert curve[0.25]["recall"] == pytest.approx(1.0)
    assert s["best_f1"] == pytest.approx(8 / 9)
    assert 0.21 <= s["best_threshold"] <= 0.3
    assert curve[0.0]["recall"] == 1.0 and curve[0.0]["precision"] == pytest.approx(4 / 8)


def test_objects_iou_rule_and_fp_density() -> None:
    truth = np.zeros((100, 100), dtype=bool)
    truth[10:20, 10:20] = True  # object 1: 100 px
    truth[50:60, 50:60] = True  # object 2: 100 px
    pred = np.zeros_like(truth)
    pred[10:20, 12:20] = True  # IoU 80/100 with object 1: found
    pred[50:60, 50:53] = True  # IoU 30/100 with object 2: missed and a false positive
    pred[80:90, 80:90] = True  # nowhere near: false positive
    pred[0, 99] = True  # 1 px: dropped by min_area
    counts = object_counts(pred, truth, min_area_px=4)
    # the 30-px fragment of object 2 is a false positive but not spurious; the far one is both
    assert counts == {
        "true_objects": 2,
        "found": 1,
        "predicted_objects": 3,
        "false_positive_objects": 2,
        "spurious_objects": 1,
    }
    scorer = ChangeScorer(threshold=0.5, gsd_m=10.0, min_area_m2=400.0)  # 400 m² = 4 px
    scorer.add(pred.astype(float), truth)
    obj = scorer.summary()["objects"]
    assert obj["recall"] == 0.5
    # 100 x 100 px at 10 m = 1 km²: 2 false positives per km²
    assert obj["area_km2"] == pytest.approx(1.0)
    assert obj["false_positives_per_km2"] == pytest.approx(2.0)
    assert obj["spurious_per_km2"] == pytest.approx(1.0)


def test_empty_tile_predicted_empty_is_perfect() -> None:
    scorer = ChangeScorer()
    scorer.add(np.zeros((8, 8)), np.zeros((8, 8), dtype=bool))
    s = scorer.summary()
    assert s["f1"] == 1.0 and s["objects"]["recall"] == 1.0
    assert s["objects"]["false_positives_per_km2"] == 0.0


def test_unknown_pixels_are_not_counted() -> None:
    """Partly labelled tiles: only the known pixels count, in pixels, curve and objects."""
    proba = np.zeros((20, 20))
    proba[2:6, 2:6] = 0.9  # a hit on a decided change
    proba[12:16, 12:16] = 0.9  # a detection where nobody decided: not a false alarm
    truth = np.zeros((20, 20), bool)
    truth[2:6, 2:6] = True
    known = np.zeros((20, 20), bool)
    known[:10, :10] = True
    scorer = ChangeScorer(0.5, 1.0, 0.0)
    scorer.add(proba, truth, known)
    s = scorer.summary()
    assert (scorer.tp, scorer.fp, scorer.fn, scorer.pixels) == (16, 0, 0, 100)
    assert s["f1"] == 1.0 and s["objects"]["false_positive_objects"] == 0
    assert int(scorer.hist_pos.sum() + scorer.hist_neg.sum()) == 100
    everything = ChangeScorer(0.5, 1.0, 0.0)
    everything.add(proba, truth)
    assert everything.fp == 16 and everything.summary()["objects"]["false_positive_objects"] == 1
