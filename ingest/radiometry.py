"""Radiometric normalisation: per-band histogram matching of the later epoch to the earlier one.

The matching tables are quantiles of both epochs over their common valid pixels, estimated from
sample tiles; they are small (a few hundred numbers per band), stored in the pair spec and applied
tile by tile, so the result does not depend on how the image is tiled.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Number of quantiles per band in a matching table.
N_QUANTILES = 257

#: Per band: (quantiles of the later epoch, matching quantiles of the earlier epoch).
HistogramTables = list[tuple[list[float], list[float]]]


def histogram_tables(
    samples: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> HistogramTables | None:
    """Matching tables from ``(before, after, valid)`` samples of shape (bands, h, w) / (h, w).

    Returns None when the samples hold no common valid pixel.
    """
    if not samples:
        return None
    before = np.concatenate([b[:, v] for b, _, v in samples], axis=1)
    after = np.concatenate([a[:, v] for _, a, v in samples], axis=1)
    if before.shape[1] == 0:
        return None
    q = np.linspace(0, 1, N_QUANTILES)
    tables: HistogramTables = []
    for band_b, band_a in zip(before, after, strict=True):
        qa, qb = np.quantile(band_a, q), np.quantile(band_b, q)
        qa_u, inv = np.unique(qa, return_inverse=True)
        qb_u = np.bincount(inv, weights=qb) / np.bincount(inv)
        tables.append(([float(x) for x in qa_u], [float(x) for x in qb_u]))
    return tables


def lookup_tables(tables: HistogramTables, dtype: str) -> list[np.ndarray] | None:
    """For 8/16-bit data: the tables as float32 look-up arrays indexed by pixel value, else None."""
    if np.dtype(dtype) not in (np.uint8, np.uint16):
        return None
    values = np.arange(np.iinfo(dtype).max + 1, dtype=np.float64)
    return [np.interp(values, qa, qb).astype(np.float32) for qa, qb in tables]


def apply_histogram(
    after: np.ndarray, tables: HistogramTables, luts: list[np.ndarray] | None = None
) -> np.ndarray:
    """Map the later epoch's (bands, h, w) values through the tables (float32 out).

    With ``luts`` from :func:`lookup_tables` (integer data) this is one indexing per band.
    """
    out = np.empty(after.shape, dtype=np.float32)
    for i, (qa, qb) in enumerate(tables):
        if luts is not None:
            out[i] = luts[i][after[i]]
        else:
            out[i] = np.interp(after[i], qa, qb)
    return out
