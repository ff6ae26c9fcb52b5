"""Benchmark: co-registration error, confidence and refusals on real change pairs.

Usage::

    uv run --frozen python benchmarks/coregister.py                  # every real pair (~10 min)
    uv run --frozen python benchmarks/coregister.py --folders levir_1024 --json out.json

The test set is built by the seeded ``tests/ingest/coreg_cases.py`` from
``../shared/data/change_pairs`` (placed on EPSG:4549 at 0.5 m, see that module): for every real
pair, the later epoch as published (``real``: its own residual misregistration, unknown) and A
with B's changes pasted in (``pasted``: true misregistration zero), each unshifted, shifted by
known sub-pixel and multi-pixel translations, and with a known affine distortion. Every case goes
through ``ingest.prepare_pair`` with the default settings.

Printed figures (px of the 0.5 m working grid):

* error of the applied model against the truth, at 9 x 9 points over the image (worst point per
  case), over the cases where the estimate was confident: median and worst; for ``real`` the
  truth is the known added distortion on top of the model applied to the unshifted pair, so it
  is measured only where that pair was confident too;
* the same for every estimate, confident or not (what would have been applied);
* false refusals (every true shift in the set is under the 5 m limit);
* the shift applied on unshifted pairs (worst point): how many over 0.5 px; for ``real`` pairs
  also the dataset's own residual measured with the labels on unchanged ground only
  (:func:`reference_residual`), and the distance of a confident estimate to it;
* how many cases were confident, per source and variant.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _model(pair: Any, estimated: bool) -> tuple[float, ...] | None:
    """Displacement model (a0..b2, grid px, rows down) applied (or estimated) for a pair."""
    c = pair.coregistration
    if c is None:
        return None
    use = c.model_estimated if estimated else c.model_applied
    if use == "none":
        return (0.0,) * 6
    if use == "affine" and c.affine_px is not None:
        return tuple(c.affine_px)
    dx, dy = c.estimated_dx_m / pair.gsd_m, c.estimated_dy_m / pair.gsd_m
    return (dx, 0.0, 0.0, -dy, 0.0, 0.0)


def _points(case: Any) -> np.ndarray:
    cols = np.linspace(0.5, case.width - 0.5, 9)
    rows = np.linspace(0.5, case.height - 0.5, 9)
    return np.array([(c, r) for r in rows for c in cols])


def _displace(model: tuple[float, ...], pts: np.ndarray, origin: tuple[float, float]) -> np.ndarray:
    """(n, 2) displacement (cols, rows down) of a grid model at image points ``pts``."""
    a0, a1, a2, b0, b1, b2 = model
    c = pts[:, 0] - origin[0]
    r = pts[:, 1] - origin[1]
    return np.column_stack([a0 + a1 * c + a2 * r, b0 + b1 * c + b2 * r])


def run(folders: tuple[str, ...], workdir: Path) -> dict[str, Any]:
    """Run every case; return the per-case rows."""
    import ingest
    from tests.ingest import coreg_cases

    pairs = coreg_cases.pair_names(folders)
    rows: list[dict[str, Any]] = []
    base_models: dict[tuple[str, str], tuple[float, ...] | None] = {}
    t0 = time.perf_counter()
    for case in coreg_cases.build_cases(workdir, pairs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                pair = ingest.prepare_pair(case.before, case.after, histogram_match=False)
                refused = None
            except ingest.ShiftTooLargeError as exc:
                pair, refused = None, str(exc)
        pts = _points(case)
        truth = _displace(case.truth_affine_px, pts, (0.0, 0.0))
        row: dict[str, Any] = {
            "pair": case.name,
            "source": case.source,
            "variant": case.variant,
            "truth_px": list(case.truth_affine_px),
            "refused": refused,
        }
        if pair is not None:
            c = pair.coregistration
            # grid pixel = image pixel - origin offset (the grid covers the common footprint)
            origin = (
                (pair.transform[2] - case_origin_x(case)) / pair.gsd_m,
                (case_origin_y(case) - pair.transform[5]) / pair.gsd_m,
            )
            applied = _displace(_model(pair, False) or (0.0,) * 6, pts, origin)
            estimated = _displace(_model(pair, True) or (0.0,) * 6, pts, origin)
            key = (case.name, case.source)
            if case.variant == "unshifted":
                base_models[key] = _model(pair, False) if c and c.model_applied != "none" else None
            base = base_models.get(key) if case.source == "real" else (0.0,) * 6
            row.update(
                confident=bool(c and c.confident),
                model_applied=c.model_applied if c else "none",
                model_estimated=c.model_estimated if c else "none",
                confidence=c.confidence if c else 0.0,
                blocks=f"{c.blocks_agreeing}/{c.blocks_peaked}/{c.blocks_textured}" if c else "",
                applied_max_px=float(np.hypot(*applied.T).max()),
            )
            if base is not None:
                ref = truth + _displace(base, pts, (0.0, 0.0))  # unshifted grid = image
                row["error_applied_px"] = float(np.hypot(*(applied - ref).T).max())
                row["error_estimated_px"] = float(np.hypot(*(estimated - ref).T).max())
            if case.source == "real" and case.variant == "unshifted":
                refr = reference_residual(case.name)
                row["reference_px"] = refr
                if refr is not None and c is not None and c.confident:
                    row["vs_reference_px"] = round(
                        math.hypot(
                            c.estimated_dx_m / pair.gsd_m - refr[0],
                            c.estimated_dy_m / pair.gsd_m - refr[1],
                        ),
                        3,
                    )
        rows.append(row)
        print(
            f"{len(rows):4d} {case.name:34s} {case.source:6s} {case.variant:9s} "
            + (
                "REFUSED"
                if refused
                else f"{row['model_applied']:11s} conf {row['confidence']:.2f} "
                f"{row['blocks']:>9s} err {row.get('error_applied_px', float('nan')):.2f}"
            ),
            flush=True,
        )
    print(f"{len(rows)} cases in {time.perf_counter() - t0:.0f} s")
    return {"rows": rows}


def case_origin_x(case: Any) -> float:
    """Left edge (m) of the case's earlier image (the nominal transform)."""
    from weijian_testdata import rasters as data_gen

    return float(data_gen.ground_transform(0.5).c)


def case_origin_y(case: Any) -> float:
    """Top edge (m) of the case's earlier image."""
    from weijian_testdata import rasters as data_gen

    return float(data_gen.ground_transform(0.5).f)


def reference_residual(name: str) -> tuple[float, float, int] | None:
    """The dataset's own residual (dx east, dy north; px) measured on unchanged ground only.

    Uses the labels, which the estimator never sees: 128 px blocks (stride 64) without a single
    changed pixel, the same block matching and consensus. None when too few blocks agree.
    """
    from ingest.coregister import estimate_shift
    from tests.ingest import coreg_cases

    folder, stem = name.split("/")
    a = coreg_cases._load(folder, "A", stem).astype(np.float64)
    b = coreg_cases._load(folder, "B", stem).astype(np.float64)
    changed = coreg_cases._load(folder, "label", stem)[0] > 0
    size, step = 128, 64
    samples = []
    for r in range(0, a.shape[1] - size + 1, step):
        for c in range(0, a.shape[2] - size + 1, step):
            if not changed[r : r + size, c : c + size].any():
                win = (slice(None), slice(r, r + size), slice(c, c + size))
                samples.append((a[win], b[win], np.ones((size, size), bool)))
    est = estimate_shift(samples, min_agreeing=3, allow_affine=False)
    return (est.dx_px, est.dy_px, est.tiles_used) if est.confident else None


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures the issue asks for, per source."""
    out: dict[str, Any] = {}
    for source in ("pasted", "real"):
        rs = [r for r in rows if r["source"] == source]
        conf = [r for r in rs if r.get("confident") and "error_applied_px" in r]
        known = [r for r in rs if "error_estimated_px" in r]
        unshifted = [r for r in rs if r["variant"] == "unshifted" and not r["refused"]]
        moved = [r for r in conf if r["variant"] == "shift"]
        out[source] = {
            "cases": len(rs),
            "confident": sum(bool(r.get("confident")) for r in rs),
            "confident_by_variant": {
                v: f"{sum(bool(r.get('confident')) for r in rs if r['variant'] == v)}/"
                f"{sum(r['variant'] == v for r in rs)}"
                for v in ("unshifted", "shift", "affine")
            },
            "error_confident_median_px": _q(conf, "error_applied_px", 0.5),
            "error_confident_worst_px": _q(conf, "error_applied_px", 1.0),
            "translation_error_confident_worst_px": _q(moved, "error_applied_px", 1.0),
            "translations_confident_within_0.3px": (
                f"{sum(r['error_applied_px'] <= 0.3 for r in moved)}/{len(moved)}"
            ),
            "error_all_estimates_median_px": _q(known, "error_estimated_px", 0.5),
            "error_all_estimates_worst_px": _q(known, "error_estimated_px", 1.0),
            "false_refusals": sum(bool(r["refused"]) for r in rs),
            "unshifted_pairs": len(unshifted),
            "unshifted_applied_over_0.5px": sum(r["applied_max_px"] > 0.5 for r in unshifted),
            "unshifted_applied_worst_px": _q(unshifted, "applied_max_px", 1.0),
            "unshifted_confident_vs_reference_px": [
                r["vs_reference_px"] for r in unshifted if "vs_reference_px" in r
            ],
            "models_applied": {
                m: sum(r.get("model_applied") == m for r in rs)
                for m in ("none", "translation", "affine")
            },
        }
    return out


def _q(rows: list[dict[str, Any]], key: str, q: float) -> float | None:
    vals = [r[key] for r in rows if key in r]
    return round(float(np.quantile(vals, q)), 3) if vals else None


def main() -> None:
    """Parse arguments, run, print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folders", nargs="*", default=None, help="change_pairs folders")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write rows + summary")
    args = parser.parse_args()
    from tests.ingest import coreg_cases

    folders = tuple(args.folders) if args.folders else coreg_cases.FOLDERS
    with tempfile.TemporaryDirectory() as tmp:
        result = run(folders, args.workdir or Path(tmp))
    summary = summarise(result["rows"])
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    if args.json:
        args.json.write_text(
            json.dumps({**result, "summary": summary}, indent=2, ensure_ascii=False),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
