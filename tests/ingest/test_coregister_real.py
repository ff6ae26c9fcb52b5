"""Co-registration on the real change pairs: confidence, no invented shifts, known shifts recovered.

The cases are built by the seeded ``coreg_cases`` from ``../shared/data/change_pairs`` (EPSG:4549,
0.5 m, documented transform). ``pasted`` pairs (A's ground with B's real changes pasted in) have a
true misregistration of exactly zero; ``real`` pairs keep the dataset's own residual, so known
shifts are checked against the estimate on the unshifted pair.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from rasterio.windows import Window

import ingest
from ingest.coregister import MIN_PEAK_Z, block_shift
from tests.ingest import coreg_cases
from weijian_testdata import rasters as data_gen

pytestmark = pytest.mark.filterwarnings("ignore::ingest.AcquisitionDateWarning")


def _cases(tmp: Path, folder: str, stem: str, **kw: object) -> dict[tuple[str, str], list]:
    out: dict[tuple[str, str], list] = {}
    for case in coreg_cases.build_cases(tmp, [(folder, stem)], **kw):  # type: ignore[arg-type]
        out.setdefault((case.source, case.variant), []).append(case)
    return out


def _applied_px(pair: ingest.AlignedPair, col: float, row: float) -> tuple[float, float]:
    """Applied displacement (dx east, dy north; px) at grid (col, row), from the warp itself."""
    t = pair.epoch_transform("after")
    x, y = t @ (col, row)
    x0, y0 = pair.affine @ (col, row)
    return (x - x0) / pair.gsd_m, (y - y0) / pair.gsd_m


def _worst_error(pair: ingest.AlignedPair, case: coreg_cases.Case) -> float:
    # unshifted/affine cases: the grid is the image; shifted ones: any point (translation)
    worst = 0.0
    for col in np.linspace(0, pair.width, 9):
        for row in np.linspace(0, pair.height, 9):
            ax, ay = _applied_px(pair, col, row)
            tx, ty = case.truth_px(col, row)
            worst = max(worst, math.hypot(ax - tx, ay - ty))
    return worst


def test_block_quality_separates_same_ground_from_changed_ground() -> None:
    """Peak z-score: a block against itself seen in another season scores high, unrelated low."""
    a = coreg_cases._load("levir_1024", "A", "test_12").astype(float)
    b = coreg_cases._load("levir_1024", "B", "test_12").astype(float)
    label = coreg_cases._load("levir_1024", "label", "test_12")[0] > 0
    ok = np.ones((256, 256), bool)
    same = block_shift(a[:, 0:256, 0:256], b[:, 0:256, 0:256], ok)  # unchanged corner
    assert label[0:256, 0:256].mean() == 0 and same is not None and same[2] >= MIN_PEAK_Z
    other = block_shift(a[:, 0:256, 0:256], b[:, 512:768, 512:768], ok)  # different ground
    assert other is not None and other[2] < MIN_PEAK_Z


@pytest.mark.parametrize("stem", ["test_7", "test_102"])
def test_pasted_real_changes_unshifted_and_known_shifts(tmp_path: Path, stem: str) -> None:
    """True shift zero: nothing over 0.5 px applied; known shifts within 0.3 px; no refusal."""
    cases = _cases(tmp_path, "levir_1024", stem, sources=("pasted",), affine=False)
    for case in cases[("pasted", "unshifted")] + cases[("pasted", "shift")]:
        pair = ingest.prepare_pair(case.before, case.after, histogram_match=False)
        c = pair.coregistration
        assert c is not None and c.confident and c.model_applied in ("translation", "affine")
        assert c.blocks_agreeing >= 4 and c.residual_px is not None and c.residual_px < 0.5
        assert _worst_error(pair, case) <= 0.3, case.variant
        if case.variant == "unshifted":
            assert math.hypot(*pair.shift_m) / pair.gsd_m <= 0.5


def test_known_affine_distortion_is_fitted_and_warped(tmp_path: Path) -> None:
    """A rotation/scale (up to about 2.3 px at the corners) is fitted as an affine and applied."""
    (case,) = _cases(tmp_path, "levir_1024", "test_12", sources=("pasted",), shifts_px=())[
        ("pasted", "affine")
    ]
    pair = ingest.prepare_pair(case.before, case.after, histogram_match=False)
    c = pair.coregistration
    assert c is not None and c.model_applied == "affine" and c.affine_px is not None
    assert _worst_error(pair, case) <= 0.3
    # the warp really follows the model: corrected later epoch matches the earlier one
    tile = ingest.read_window(pair, Window(0, 0, 1024, 1024))
    unchanged = ~(coreg_cases._load("levir_1024", "label", "test_12")[0] > 0)
    v = tile.valid & unchanged
    v[:16], v[-16:], v[:, :16], v[:, -16:] = False, False, False, False
    before, after = tile.data[0].mean(axis=0)[v], tile.data[1].mean(axis=0)[v]
    assert np.corrcoef(before, after)[0, 1] > 0.9
    again = ingest.AlignedPair.from_json(pair.to_json())
    assert again == pair and again.epoch_transform("after") == pair.epoch_transform("after")


def test_real_levir_pair_known_shift_relative_to_its_own_residual(tmp_path: Path) -> None:
    """LEVIR-CD test_102 as published: confident; an added translation is recovered on top."""
    cases = _cases(tmp_path, "levir_1024", "test_102", sources=("real",), affine=False)
    (unshifted,) = cases[("real", "unshifted")]
    base = ingest.prepare_pair(unshifted.before, unshifted.after, histogram_match=False)
    assert base.coregistration is not None and base.coregistration.confident
    for case in cases[("real", "shift")]:
        moved = ingest.prepare_pair(case.before, case.after, histogram_match=False)
        assert moved.coregistration is not None and moved.coregistration.confident
        tx, ty = case.truth_px(0, 0)
        assert (moved.shift_m[0] - base.shift_m[0]) / 0.5 == pytest.approx(tx, abs=0.2)
        assert (moved.shift_m[1] - base.shift_m[1]) / 0.5 == pytest.approx(ty, abs=0.2)


@pytest.mark.parametrize(("folder", "stem"), [("dsifn_256", "0_2"), ("egy_256", "test_1")])
def test_little_common_texture_is_not_confident_and_never_refused(
    tmp_path: Path, folder: str, stem: str
) -> None:
    """Heavy change, little stable texture: "not confident", georeference kept, one-line warning.

    Even with a declared offset of 12 m (beyond the 5 m limit) the pair is not refused, because
    that large shift is not itself confident; nothing is shifted.
    """
    a, b, _ = data_gen.real_pair_geotiffs(tmp_path, stem, folder, after_offset_m=(12.0, -3.0))
    (tmp_path / "u").mkdir()
    for after in (b, data_gen.real_pair_geotiffs(tmp_path / "u", stem, folder)[1]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pair = ingest.prepare_pair(a, after, histogram_match=False, max_shift_m=5.0)
        c = pair.coregistration
        assert c is not None and not c.confident and c.model_applied == "none"
        assert pair.shift_m == (0.0, 0.0) and pair.epoch_transform("after") == pair.affine
        coreg = [w for w in caught if issubclass(w.category, ingest.CoregistrationWarning)]
        assert len(coreg) == 1 and "\n" not in str(coreg[0].message)
        assert "not confident" in str(coreg[0].message) and "kept as is" in str(coreg[0].message)


def test_confident_large_shift_is_refused(tmp_path: Path) -> None:
    """A confident 7 m misregistration is refused, saying how many blocks agree."""
    cases = _cases(
        tmp_path, "levir_1024", "test_102", sources=("pasted",), shifts_px=((14.0, 0.0),)
    )
    (case,) = cases[("pasted", "shift")]
    with pytest.raises(ingest.ShiftTooLargeError, match=r"blocks with a clear match agree"):
        ingest.prepare_pair(case.before, case.after, histogram_match=False, max_shift_m=5.0)
    pair = ingest.prepare_pair(case.before, case.after, histogram_match=False, max_shift_m=8.0)
    assert pair.shift_m[0] == pytest.approx(7.0, abs=0.15)


def test_report_json_carries_confidence_and_model(tmp_path: Path) -> None:
    cases = _cases(tmp_path, "levir_1024", "test_102", sources=("pasted",), shifts_px=())
    (case,) = cases[("pasted", "unshifted")]
    pair = ingest.prepare_pair(case.before, case.after, histogram_match=False)
    report = ingest.pair_report(pair)["coregistration"]
    assert report["model_applied"] == "translation" and report["confident"] is True
    assert report["blocks_agreeing"] >= 4 and 0.5 <= report["confidence"] <= 1
    assert report["residual_px"] is not None and report["residual_m"] == pytest.approx(
        report["residual_px"] * 0.5, abs=1e-3
    )
    assert {"min_blocks", "min_confidence", "min_peak_z", "tolerance_px"} <= set(
        report["thresholds"]
    )
