"""Object-aware training loss: per-pixel weights that reward whole, separate buildings.

The object figures count a building as found only when one predicted component covers it with
IoU >= 0.5. Plain BCE + Dice weighs every pixel alike, so a large roof dominates a batch, small
houses are learned last, and the few background pixels between two neighbouring houses (which
keep them apart as two components) count for almost nothing. :func:`object_weights` builds the
weight map of the U-Net paper (Ronneberger et al. 2015) for that, plus a size term:

* pixels of a changed object of ``A`` pixels get ``clip(sqrt(size_ref_px / A), 1, size_max)``:
  a house a quarter of the reference size counts twice per pixel;
* background pixels get ``1 + border_w0 * exp(-(d1 + d2)^2 / (2 border_sigma^2))``, ``d1`` and
  ``d2`` the distances (px) to the nearest and second-nearest changed object: high in the narrow
  gaps between neighbouring buildings, about 1 elsewhere.

:func:`weighted_bce_dice_loss` is BCE weighted by that map (normalised by its sum) plus the same
soft Dice as :func:`change_detection.training.bce_dice_loss`. :func:`bce_lovasz_loss` is BCE
plus the Lovász hinge (Berman et al. 2018), a convex surrogate of the IoU of each crop's change
class, in place of Dice.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

#: Loss names accepted by the training configuration (``TrainConfig.loss``).
LOSSES = ("bce_dice", "objects", "lovasz")


def object_weights(
    mask: np.ndarray,
    size_ref_px: float = 600.0,
    size_max: float = 3.0,
    border_w0: float = 5.0,
    border_sigma: float = 3.0,
) -> np.ndarray:
    """Per-pixel loss weights ``(H, W)`` float32 for a boolean change mask ``(H, W)``.

    ``size_ref_px``: object area (px) from which on pixels weigh 1 (600 px = 150 m² at 0.5 m);
    ``size_max``: the largest size weight; ``border_w0`` and ``border_sigma`` (px): height and
    width of the weight in gaps between objects (see the module docstring).
    """
    eight = np.ones((3, 3), dtype=bool)
    labels, n = ndimage.label(mask, structure=eight)
    weights = np.ones(mask.shape, dtype=np.float32)
    if n == 0:
        return weights
    areas = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float64)
    size_w = np.clip(np.sqrt(size_ref_px / np.maximum(areas, 1.0)), 1.0, size_max)
    size_w[0] = 1.0
    weights = size_w[labels].astype(np.float32)
    if n >= 2 and border_w0 > 0:
        # beyond ``reach`` px from an object the gap weight is below 1 % of border_w0:
        # distances are computed in each object's box grown by that much
        reach = int(np.ceil(3 * border_sigma)) + 1
        d1 = np.full(mask.shape, np.inf)
        d2 = np.full(mask.shape, np.inf)
        for k, box in enumerate(ndimage.find_objects(labels), start=1):
            if box is None:
                continue
            grown = tuple(
                slice(max(s.start - reach, 0), min(s.stop + reach, size))
                for s, size in zip(box, mask.shape, strict=True)
            )
            d = ndimage.distance_transform_edt(labels[grown] != k)
            near, second = d1[grown], d2[grown]
            d2[grown] = np.where(d < near, near, np.minimum(second, d))
            d1[grown] = np.minimum(near, d)
        gap = border_w0 * np.exp(-((d1 + d2) ** 2) / (2 * border_sigma**2))
        weights = np.where(labels == 0, 1.0 + gap, weights).astype(np.float32)
    return weights


def batch_object_weights(target: torch.Tensor) -> torch.Tensor:
    """:func:`object_weights` of each mask of a ``(N, 1, H, W)`` 0/1 target batch."""
    masks = (target.detach().cpu().numpy() > 0.5)[:, 0]
    w = np.stack([object_weights(m) for m in masks])[:, None]
    return torch.from_numpy(w).to(target.device, target.dtype)


def weighted_bce_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE weighted by :func:`object_weights` plus soft Dice, for fully labelled targets."""
    weights = batch_object_weights(target)
    per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    bce = (per_pixel * weights).sum() / weights.sum()
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    return bce + dice


def _lovasz_grad(sorted_truth: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss for errors sorted descending."""
    positives = sorted_truth.sum()
    intersection = positives - sorted_truth.cumsum(0)
    union = positives + (1 - sorted_truth).cumsum(0)
    jaccard = 1 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_hinge(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Lovász hinge of the change class, per image of ``(N, 1, H, W)`` logits, averaged."""
    losses = []
    for lg, tg in zip(logits.flatten(1), target.flatten(1), strict=True):
        signs = 2 * tg - 1
        errors = 1 - lg * signs
        errors_sorted, order = torch.sort(errors, descending=True)
        grad = _lovasz_grad(tg[order])
        losses.append(torch.dot(F.relu(errors_sorted), grad))
    return torch.stack(losses).mean()


def bce_lovasz_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE plus the Lovász hinge, for fully labelled ``(N, 1, H, W)`` 0/1 targets."""
    return F.binary_cross_entropy_with_logits(logits, target) + lovasz_hinge(logits, target)
