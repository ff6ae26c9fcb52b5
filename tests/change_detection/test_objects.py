"""Object post-processing: splitting touching buildings, weak, small and ragged objects."""

from __future__ import annotations

import numpy as np

from change_detection.metrics import object_counts
from change_detection.objects import ObjectParams, object_labels


def test_touching_houses_are_split_and_matched_as_two() -> None:
    proba = np.zeros((40, 60), np.float32)
    proba[10:30, 5:25] = 0.9  # two 20 x 20 houses joined by a 4-px bridge
    proba[10:30, 35:55] = 0.9
    proba[18:22, 25:35] = 0.9
    truth = np.zeros_like(proba, dtype=bool)
    truth[10:30, 5:25] = truth[10:30, 35:55] = True
    whole = object_labels(proba, ObjectParams(threshold=0.5, min_area_m2=0), gsd_m=1.0)
    split = object_labels(proba, ObjectParams(threshold=0.5, split_px=8, min_area_m2=0), 1.0)
    assert whole.max() == 1 and object_counts(whole, truth)["found"] == 0
    assert len(np.unique(split[split > 0])) == 2
    assert object_counts(split, truth)["found"] == 2


def test_weak_small_and_ragged_objects_are_dropped() -> None:
    proba = np.zeros((60, 60), np.float32)
    proba[5:15, 5:15] = 0.95  # a confident house
    proba[5:15, 30:40] = 0.55  # a weak response: above the threshold, never confident
    proba[30:32, 5:7] = 0.95  # 4 m²
    proba[40:58, 30:58] = 0.95  # a ring (e.g. a fence line), not building-like
    proba[43:55, 33:55] = 0.0
    labels = object_labels(proba, ObjectParams(threshold=0.5, min_area_m2=0), 1.0)
    assert len(np.unique(labels[labels > 0])) == 4
    params = ObjectParams(threshold=0.5, min_area_m2=10, seed_threshold=0.8, min_solidity=0.5)
    kept = object_labels(proba, params, 1.0)
    assert np.array_equal(kept > 0, labels == labels[10, 10])  # only the confident house
    assert "seed 0.80" in params.name() and "solidity 0.5" in params.name()


def test_seeded_cores_split_houses_joined_by_a_weak_halo_and_drop_coreless_objects() -> None:
    proba = np.zeros((40, 90), np.float32)
    proba[10:30, 5:25] = proba[10:30, 35:55] = 0.9  # two houses ...
    proba[14:26, 25:35] = 0.4  # ... joined by a weak halo, over the threshold, under the cores
    proba[10:30, 65:85] = 0.6  # a weak response without a core
    truth = np.zeros_like(proba, dtype=bool)
    truth[10:30, 5:25] = truth[10:30, 35:55] = True
    plain = object_labels(proba, ObjectParams(threshold=0.3, min_area_m2=0), gsd_m=1.0)
    assert object_counts(plain, truth)["found"] == 0
    params = ObjectParams(threshold=0.3, min_area_m2=0, core_threshold=0.7, core_min_area_m2=4)
    cored = object_labels(proba, params, gsd_m=1.0)
    assert len(np.unique(cored[cored > 0])) == 2 and not cored[:, 60:].any()
    assert object_counts(cored, truth)["found"] == 2
    assert "core 0.70 >= 4 m²" in params.name()
    small = object_labels(proba, ObjectParams(0.3, core_threshold=0.7, core_min_area_m2=500), 1.0)
    assert not small.any()  # every core under the smallest core area: nothing seeds an object
