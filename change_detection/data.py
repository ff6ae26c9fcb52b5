"""Bitemporal change pairs in the LEVIR-CD layout, their split, and augmented training samples.

A data folder holds ``A/`` (earlier image), ``B/`` (later image) and ``label/`` (0 = no change,
non-zero = change) with the same file names; any tile size, all three of one pair the same size.
Partly labelled pairs (the chips cut from the office's reviews) mark pixels nobody decided with
:data:`UNKNOWN` (127): they are neither change nor no change, and the training loss and the
metrics leave them out.
Pairs are named ``<folder>/<stem>``, e.g. ``levir_256/test_7_0256_0512``.

Scenes: LEVIR-CD crops are named ``<tile>_<row>_<col>`` (``test_7_0256_0512`` is cut from the
tile ``test_7``), so a pair's *scene* is its stem without a trailing ``_dddd_dddd``, and pairs of
one scene are never split between training, validation and held-out data (across folders too:
``levir_256/test_7_0256_0512`` and ``levir_1024/test_7`` are one scene when the folders share the
dataset prefix before the first ``_``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from change_detection.errors import DatasetError, DatasetNotFoundError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_CROP_SUFFIX = re.compile(r"_\d{3,5}_\d{3,5}$")
#: label value of a pixel whose state is unknown (partial labels: outside every decided object)
UNKNOWN = 127
#: value of unknown pixels in the float training masks (0 = no change, 1 = change)
IGNORE = -1.0


#: The project's held-out scenes (never trained on, nor used to choose anything; see
#: docs/model_card.md), as glob patterns over ``<folder>/<pair>`` of the shared change pairs.
HELDOUT_LEVIR = ("levir_1024/test_102", "levir_256/test_121_*", "levir_256/test_55_*")
HELDOUT_DSIFN = ("dsifn_256/0_2", "dsifn_256/8_3", "dsifn_256/9_3")
HELDOUT = (*HELDOUT_LEVIR, *HELDOUT_DSIFN)


@dataclass(frozen=True)
class PairFiles:
    """The three files of one pair and its names."""

    name: str  #: ``<folder>/<stem>``
    scene: str  #: ``<dataset>/<scene stem>``, the unit of splitting
    before: Path
    after: Path
    label: Path


@dataclass
class Pair:
    """One pair in memory: ``before``/``after`` uint8 ``(H, W, 3)``, ``label`` bool ``(H, W)``.

    ``known`` (bool ``(H, W)``) marks the labelled pixels of a partly labelled pair; ``None``
    when every pixel is labelled.
    """

    name: str
    before: np.ndarray
    after: np.ndarray
    label: np.ndarray
    known: np.ndarray | None = None

    @property
    def pixels(self) -> int:
        """Number of pixels."""
        return int(self.label.size)


def scene_of(folder: str, stem: str) -> str:
    """The scene key of a pair: dataset prefix of the folder plus the stem without a crop suffix."""
    return f"{folder.split('_')[0]}/{_CROP_SUFFIX.sub('', stem)}"


def find_pairs(folders: Sequence[Path | str]) -> list[PairFiles]:
    """All pairs in LEVIR-CD-layout ``folders``, sorted by name; checks the layout and names."""
    pairs: list[PairFiles] = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise DatasetNotFoundError(f"data folder {folder} does not exist")
        subdirs = {sub: folder / sub for sub in ("A", "B", "label")}
        missing = [sub for sub, path in subdirs.items() if not path.is_dir()]
        if missing:
            raise DatasetError(
                f"{folder} lacks {', '.join(m + '/' for m in missing)}: a data folder needs A/ "
                "(earlier images), B/ (later images) and label/ (change masks) with the same "
                "file names (the LEVIR-CD layout)"
            )
        stems = {
            sub: {p.stem: p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
            for sub, path in subdirs.items()
        }
        names = set(stems["A"])
        if not names:
            raise DatasetError(f"{folder / 'A'} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        for sub in ("B", "label"):
            if set(stems[sub]) != names:
                odd = sorted(names ^ set(stems[sub]))[:5]
                raise DatasetError(
                    f"{folder}: A/ and {sub}/ do not hold the same file names (e.g. {odd}); "
                    "every pair needs A/<name>, B/<name> and label/<name>"
                )
        for stem in sorted(names):
            pairs.append(
                PairFiles(
                    name=f"{folder.name}/{stem}",
                    scene=scene_of(folder.name, stem),
                    before=stems["A"][stem],
                    after=stems["B"][stem],
                    label=stems["label"][stem],
                )
            )
    return sorted(pairs, key=lambda p: p.name)


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def load_pair(files: PairFiles) -> Pair:
    """Read one pair into memory and check that the three images have one size."""
    before, after = _read_rgb(files.before), _read_rgb(files.after)
    with Image.open(files.label) as im:
        grey = np.asarray(im.convert("L"))
    values = np.unique(grey)
    labelled = values[values != UNKNOWN]
    if len(labelled) > 2 or (len(labelled) == 2 and labelled[0] != 0):
        shown = ", ".join(str(v) for v in values[:6]) + (" ..." if len(values) > 6 else "")
        raise DatasetError(
            f"label of pair {files.name} is not binary (values {shown}): a label must be 0 for "
            f"no change and one other value (255 or 1) for change ({UNKNOWN} marks unknown "
            "pixels of a partly labelled chip)"
        )
    known = grey != UNKNOWN if UNKNOWN in values else None
    label = (grey > 0) if known is None else (grey > 0) & known
    if not before.shape[:2] == after.shape[:2] == label.shape:
        raise DatasetError(
            f"pair {files.name}: sizes differ (A {before.shape[:2]}, B {after.shape[:2]}, "
            f"label {label.shape}); the images of a pair must be co-registered and equal in size"
        )
    return Pair(files.name, before, after, label, known)


def matches(name: str, patterns: Sequence[str]) -> bool:
    """Whether a pair name ``<folder>/<stem>`` matches a glob pattern (``levir_1024/test_102``)."""
    return any(fnmatch.fnmatch(name, pat) for pat in patterns)


def split_pairs(
    pairs: Sequence[PairFiles],
    holdout: Sequence[str] = (),
    val_fraction: float = 0.15,
    seed: int = 0,
    validation: Sequence[str] = (),
) -> tuple[list[PairFiles], list[PairFiles], list[PairFiles]]:
    """Split pairs by scene into (train, validation, held-out).

    Held-out: every pair matching a ``holdout`` glob pattern, *and every pair of the same scene*
    (so holding out ``levir_1024/test_102`` also holds out its crop
    ``levir_256/test_102_0512_0000``).
    Validation: a seeded choice of whole scenes, about ``val_fraction`` of the remaining pixels
    counted by pairs (at least one scene when ``val_fraction > 0``). The choice depends only on
    the scene names and ``seed``, not on file order. With ``validation`` glob patterns (e.g.
    ``val/*`` for the official LEVIR-CD split), the scenes of the matching pairs are the
    validation set instead.
    """
    held_scenes = {p.scene for p in pairs if matches(p.name, holdout)}
    held = [p for p in pairs if p.scene in held_scenes]
    rest = [p for p in pairs if p.scene not in held_scenes]
    scenes = sorted({p.scene for p in rest})

    def key(scene: str) -> str:
        return hashlib.sha256(f"{seed}:{scene}".encode()).hexdigest()

    if validation:
        val_scenes = {p.scene for p in rest if matches(p.name, validation)}
    else:
        n_val = (
            0 if val_fraction <= 0 or len(scenes) < 2 else max(1, round(val_fraction * len(scenes)))
        )
        val_scenes = set(sorted(scenes, key=key)[:n_val])
    train = [p for p in rest if p.scene not in val_scenes]
    val = [p for p in rest if p.scene in val_scenes]
    if not train:
        raise DatasetError("no training pairs left after the held-out and validation split")
    return train, val, held


def drop_contained_crops(pairs: Sequence[PairFiles]) -> list[PairFiles]:
    """``pairs`` without LEVIR crops (``<tile>_<row>_<col>``) whose whole tile ``<tile>`` is there.

    Evaluation counts every pixel once: ``levir_256/test_102_0512_0000`` is part of
    ``levir_1024/test_102`` and is dropped when both are evaluated.
    """
    whole = {(p.scene, p.before.stem) for p in pairs}
    return [
        p
        for p in pairs
        if not (_CROP_SUFFIX.search(p.before.stem) and (p.scene, p.scene.split("/", 1)[1]) in whole)
    ]


def to_chw_float(image: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` -> float32 tensor ``(3, H, W)`` in 0..255 (not yet normalised)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()


class TrainingSamples(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Augmented crops of training pairs, optionally mixed with synthetic pairs.

    Sample ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``: call :meth:`set_epoch`
    before each epoch. Each sample: a pair drawn with probability proportional to its pixels
    (or, with probability ``synthetic_fraction``, a synthetic pair made from a training
    background), a random window of ``crop`` x ``crop`` pixels at a random scale in ``scale_range``
    (log-uniform; 0.75-1.33 by default, 0.6-2 imitates 0.3-1 m imagery of a 0.5 m model),
    then jointly for both epochs and the mask: horizontal/vertical flips and a 90-degree rotation
    (torchvision.transforms.v2), then independently per epoch: brightness, contrast, saturation
    and hue jitter and Gaussian noise, so lighting differences are not learned as change.
    Returns ``before, after`` float ``(3, crop, crop)`` in 0..255 and ``mask`` float
    ``(1, crop, crop)`` (1 change, 0 no change, :data:`IGNORE` for the unknown pixels of a
    partly labelled pair).
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        crop: int,
        length: int,
        seed: int = 0,
        synthetic_fraction: float = 0.0,
        scale_range: tuple[float, float] = (0.75, 1.33),
    ) -> None:
        if not 0 < scale_range[0] <= scale_range[1]:
            raise DatasetError(
                f"scale range {scale_range} must be two positive numbers, the smaller first"
            )
        self.pairs = list(pairs)
        self.scale_range = scale_range
        self.crop = crop
        self.length = length
        self.seed = seed
        self.synthetic_fraction = synthetic_fraction
        weights = np.array([p.pixels for p in self.pairs], dtype=float)
        self.weights = weights / weights.sum()
        self.epoch = 0
        self.joint = v2.Compose([v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()])
        self.photometric = v2.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.03)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose samples ``__getitem__`` returns."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _window(self, pair: Pair, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        h, w = pair.label.shape
        low, high = (math.log(v) for v in self.scale_range)
        size = round(self.crop * math.exp(rng.uniform(low, high)))
        size = min(size, h, w)
        r, c = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        sl = np.s_[r : r + size, c : c + size]
        label = pair.label[sl].astype(np.float32)
        if pair.known is not None:
            label[~pair.known[sl]] = IGNORE
        return pair.before[sl], pair.after[sl], label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from change_detection.synthetic import synthetic_pair

        rng = np.random.default_rng([self.seed, self.epoch, index])
        torch.manual_seed(int(rng.integers(2**62)))
        pair = self.pairs[int(rng.choice(len(self.pairs), p=self.weights))]
        before, after, label = self._window(pair, rng)
        if rng.random() < self.synthetic_fraction:
            background = before if rng.random() < 0.5 else after
            before, after, label = synthetic_pair(background, rng)
        a = tv_tensors.Image(to_chw_float(before) / 255)
        b = tv_tensors.Image(to_chw_float(after) / 255)
        m = tv_tensors.Mask(
            torch.from_numpy(np.ascontiguousarray(label, dtype=np.float32))[None].float()
        )
        if a.shape[-1] != self.crop or a.shape[-2] != self.crop:
            size = [self.crop, self.crop]
            a, b = TF.resize(a, size, antialias=True), TF.resize(b, size, antialias=True)
            m = TF.resize(m, size, interpolation=v2.InterpolationMode.NEAREST)
        a, b, m = self.joint(a, b, m)
        k = int(rng.integers(4))
        a, b, m = (torch.rot90(t, k, dims=(-2, -1)) for t in (a, b, m))
        a, b = (
            (self.photometric(t) + torch.randn_like(t) * float(rng.uniform(0, 0.02))).clamp(0, 1)
            for t in (a, b)
        )
        return a * 255, b * 255, m
