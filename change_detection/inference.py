"""Change probability of one in-memory tile pair.

:func:`predict_proba` is what whole-orthophoto sliding-window inference calls per tile.
"""

from __future__ import annotations

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


def predict_proba(
    model: ChangeModel, before: np.ndarray, after: np.ndarray, max_value: float | None = None
) -> np.ndarray:
    """Change probability ``(H, W)`` float32 in 0..1 of a co-registered tile pair.

    ``before``/``after``: the earlier and later image of the same ground, RGB, as ``(H, W, C)``
    or ``(C, H, W)`` arrays (C = 3, or 4 with alpha ignored), equal in size and at (about) the
    model's training GSD (``model.gsd_m``, m/px). dtype uint8 (0..255), or uint16 scaled by
    ``max_value`` (default: the 99.9th percentile of both images together). Any size works, but
    memory grows with the tile's area: cut orthophotos into tiles of 512-1024 px with some overlap.
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
    scale = _scale(before, after, max_value)
    logits = logits_padded(model, prepare(model, before, scale), prepare(model, after, scale))
    return torch.sigmoid(logits)[0, 0].float().cpu().numpy()
