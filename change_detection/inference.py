"""Change probability of one in-memory tile pair.

:func:`predict_proba` is what whole-orthophoto sliding-window inference calls per tile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from change_detection.errors import InputError
from change_detection.networks import STRIDE
from change_detection.weights import ChangeModel


def _to_hwc(image: np.ndarray, name: str) -> np.ndarray:
    if image.ndim != 3:
        raise InputError(
            f"{name} must be a 3-D array (H, W, C) or (C, H, W), got shape {image.shape}"
        )
    if image.shape[0] in (3, 4) and image.shape[2] not in (3, 4):
        image = np.moveaxis(image, 0, -1)
    if image.shape[2] not in (3, 4):
        raise InputError(
            f"{name} has shape {image.shape}: give RGB (or RGBA, alpha ignored) as (H, W, C) or "
            "(C, H, W)"
        )
    return image[..., :3]


def _scale(before: np.ndarray, after: np.ndarray, max_value: float | None) -> float:
    if max_value is not None:
        return float(max_value)
    if before.dtype == np.uint8:
        return 255.0
    if before.dtype == np.uint16:
        # one scale for both epochs, so their relative brightness is kept
        return max(float(np.percentile(np.concatenate([before.ravel(), after.ravel()]), 99.9)), 1.0)
    raise InputError(
        f"images of dtype {before.dtype}: give uint8 or uint16, or pass max_value (the pixel "
        "value that means full brightness)"
    )


def prepare(model: ChangeModel, image: np.ndarray, scale: float) -> torch.Tensor:
    """``(H, W, 3)`` array -> normalised float tensor ``(1, 3, H, W)`` on the model's device."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32) * (255.0 / scale))
    x = x.permute(2, 0, 1)[None].to(model.device)
    mean = torch.tensor(model.mean, device=model.device).view(1, 3, 1, 1)
    std = torch.tensor(model.std, device=model.device).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.inference_mode()
def logits_padded(model: ChangeModel, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Network logits ``(N, 1, H, W)`` for normalised tensors of any size (reflect-padded to 16)."""
    h, w = before.shape[-2:]
    ph, pw = (-h) % STRIDE, (-w) % STRIDE
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        before = F.pad(before, (0, pw, 0, ph), mode=mode)
        after = F.pad(after, (0, pw, 0, ph), mode=mode)
    return model.net(before, after)[..., :h, :w]


#: The eight flips and 90-degree rotations of the square (the dihedral group D4) as
#: ``(rotations k, horizontal flip)``; test-time augmentation averages the network over them.
D4 = tuple((k, flip) for flip in (False, True) for k in range(4))


def _d4(t: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    if flip:
        t = torch.flip(t, dims=(-1,))
    return torch.rot90(t, k, dims=(-2, -1))


def _d4_inverse(t: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    t = torch.rot90(t, -k, dims=(-2, -1))
    return torch.flip(t, dims=(-1,)) if flip else t


#: A network call: ``(model, before, after) -> logits (N, 1, H, W)`` for normalised tensors.
LogitsFn = Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]


@torch.inference_mode()
def logits_tta(
    model: Any,
    before: torch.Tensor,
    after: torch.Tensor,
    logits: LogitsFn | None = None,
) -> torch.Tensor:
    """Mean logits over the eight flips/rotations (:data:`D4`) of normalised ``(N, 3, H, W)`` pairs.

    Each transform is applied to both epochs, the network's logits are mapped back and averaged
    (eight times the cost of one prediction). ``logits``: the network call, default
    :func:`logits_padded` on a :class:`ChangeModel`; any engine's call works (the ONNX Runtime
    engine passes its own), so test-time augmentation is the same in every engine.
    """
    run: LogitsFn = logits or logits_padded
    total = torch.zeros((before.shape[0], 1, *before.shape[-2:]), device=before.device)
    for k, flip in D4:
        out = run(model, _d4(before, k, flip), _d4(after, k, flip))
        total += _d4_inverse(out, k, flip).float()
    return total / len(D4)


def resample(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an ``(H, W, 3)`` image to ``size`` (rows, cols), keeping its dtype.

    Area-like (antialiased bilinear) when shrinking, bilinear when enlarging: what resampling an
    orthophoto to another ground sample distance does.
    """
    if image.shape[:2] == tuple(size):
        return image
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    y = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    out = y[0].permute(1, 2, 0).numpy()
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(image.dtype)


def model_grid_size(shape: tuple[int, int], gsd_m: float, model_gsd_m: float) -> tuple[int, int]:
    """Size (rows, cols) of a ``shape`` image at ``gsd_m`` m/px resampled to ``model_gsd_m``."""
    factor = gsd_m / model_gsd_m
    return max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor))


def predict_proba(
    model: ChangeModel,
    before: np.ndarray,
    after: np.ndarray,
    max_value: float | None = None,
    tta: bool = False,
    gsd_m: float | None = None,
) -> np.ndarray:
    """Change probability ``(H, W)`` float32 in 0..1 of a co-registered tile pair.

    ``before``/``after``: the earlier and later image of the same ground, RGB, as ``(H, W, C)``
    or ``(C, H, W)`` arrays (C = 3, or 4 with alpha ignored), equal in size and at (about) the
    model's training GSD (``model.gsd_m``, m/px). dtype uint8 (0..255), or uint16 scaled by
    ``max_value`` (default: the 99.9th percentile of both images together). Any size works, but
    memory grows with the tile's area: cut orthophotos into tiles of 512-1024 px with some overlap.

    ``tta``: average the network over the eight flips and 90-degree rotations of the pair
    (test-time augmentation, 8x the cost; see the model card for what it changes).
    ``gsd_m``: the ground sample distance of the given images (m/px); when it differs from the
    model's by more than 1 %, both images are resampled to the model's GSD, predicted there,
    and the probability is resampled back to the input's ``(H, W)``.
    Deterministic: the same input gives the same output on the same machine and device.
    """
    before, after = _to_hwc(np.asarray(before), "before"), _to_hwc(np.asarray(after), "after")
    if before.shape != after.shape:
        raise InputError(
            f"before {before.shape} and after {after.shape} differ: give the same window of a "
            "co-registered pair"
        )
    if before.dtype != after.dtype:
        raise InputError(f"before is {before.dtype} but after is {after.dtype}: give one dtype")
    if gsd_m is not None and not gsd_m > 0:
        raise InputError(f"gsd_m must be a positive number of metres per pixel, got {gsd_m}")
    scale = _scale(before, after, max_value)
    shape = before.shape[:2]
    if gsd_m is not None and abs(gsd_m / model.gsd_m - 1) > 0.01:
        size = model_grid_size(shape, gsd_m, model.gsd_m)
        before, after = resample(before, size), resample(after, size)
    run = logits_tta if tta else logits_padded
    logits = run(model, prepare(model, before, scale), prepare(model, after, scale))
    proba = torch.sigmoid(logits.float())
    if proba.shape[-2:] != shape:
        proba = F.interpolate(proba, size=shape, mode="bilinear", align_corners=False)
    return proba[0, 0].cpu().numpy().astype(np.float32)
