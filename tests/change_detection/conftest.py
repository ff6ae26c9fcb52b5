"""Shared fixtures and helpers: the real change pairs, tiny LEVIR-layout folders, small runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from change_detection import ChangeModel, build_network
from change_detection.training import TrainConfig
from tests.conftest import SHARED_DATA, skip_or_fail

REAL_PAIRS = SHARED_DATA / "change_pairs"


@pytest.fixture(scope="session")
def real_pairs() -> Path:
    """The 24 real pairs (../shared/data/change_pairs)."""
    if not (REAL_PAIRS / "levir_256" / "A").is_dir():
        skip_or_fail(f"the real change pairs are missing at {REAL_PAIRS}")
    return REAL_PAIRS


@pytest.fixture(scope="module")
def model() -> ChangeModel:
    """An untrained tinysiam (seed 0) with fixed normalisation: for the mechanics of inference."""
    torch.manual_seed(0)
    net = build_network("tinysiam").eval()
    return ChangeModel("tinysiam", net, {"mean": [120.0] * 3, "std": [60.0] * 3, "threshold": 0.5})


def history(out: Path) -> list[dict[str, Any]]:
    """The per-epoch rows of a training run's ``out/history.jsonl``."""
    return [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]


def write_folder(root: Path, names: list[str], size: int = 64, seed: int = 0) -> Path:
    """A LEVIR-layout folder of random pairs whose label is where B differs from A."""
    rng = np.random.default_rng(seed)
    for sub in ("A", "B", "label"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name in names:
        a = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        b = a.copy()
        label = np.zeros((size, size), dtype=np.uint8)
        r, c = rng.integers(0, size - 16, 2)
        b[r : r + 16, c : c + 16] = [200, 80, 60]
        label[r : r + 16, c : c + 16] = 255
        Image.fromarray(a).save(root / "A" / f"{name}.png")
        Image.fromarray(b).save(root / "B" / f"{name}.png")
        Image.fromarray(label).save(root / "label" / f"{name}.png")
    return root


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """Six 64-px random pairs in LEVIR layout at ``tmp_path/tiny``."""
    return write_folder(tmp_path / "tiny", [f"p{i}" for i in range(6)])


def tiny_config(**changes: Any) -> TrainConfig:
    """A training run small enough for a test: one epoch of eight 32-px crops, batches of four.

    A ``tinysiam`` on the CPU with one thread; ``changes`` set these or any other field.
    """
    small: dict[str, Any] = {
        "network": "tinysiam",
        "epochs": 1,
        "samples_per_epoch": 8,
        "crop": 32,
        "batch_size": 4,
        "device": "cpu",
        "threads": 1,
    }
    return TrainConfig(**(small | changes))
