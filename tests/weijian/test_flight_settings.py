"""Settings reach the flight: co-registration limits, engine, polygon clean-up, demolition."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from tests.weijian.flight_data import add_district, levir, write_image
from weijian.flight import FlightConfig, FlightRefusedError, run_flight


def test_flight_config_takes_the_coregistration_engine_and_demolition_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from weijian.cli.flight import flight_config
    from weijian.settings import get_settings

    for key, value in {
        "WEIJIAN_DATA_DIR": str(tmp_path),
        "WEIJIAN_INGEST__COREGISTRATION_MIN_BLOCKS": "7",
        "WEIJIAN_INGEST__COREGISTRATION_MIN_CONFIDENCE": "0.8",
        "WEIJIAN_INGEST__COREGISTRATION_AFFINE": "false",
        "WEIJIAN_DETECTION__ENGINE": "torch",
        "WEIJIAN_DETECTION__TTA": "true",
        "WEIJIAN_FLIGHT__DEMOLITION": "full",
        "WEIJIAN_DETECTION__OPENING_PX": "2",
        "WEIJIAN_DETECTION__CLOSING_PX": "3",
        "WEIJIAN_DETECTION__MIN_SCORE_MAX": "0.8",
        "WEIJIAN_DETECTION__MAX_HOLE_M2": "40",
        "WEIJIAN_DETECTION__REGULARIZE": "false",
        "WEIJIAN_DETECTION__CORE_THRESHOLD": "0.65",
        "WEIJIAN_DETECTION__CORE_MIN_AREA_M2": "3",
        "WEIJIAN_DETECTION__GROW_MARGIN": "0.05",
        "WEIJIAN_DETECTION__CORE_MAX_BOX_MPX": "2.5",
        "WEIJIAN_DETECTION__MIN_AREA_M2": "12",
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        config = flight_config(out_root=tmp_path / "flights")
        detect_polygons = get_settings().detection.vectorize_params(0.4)
    finally:
        get_settings.cache_clear()
    # the flight draws its polygons exactly as `weijian detect` does, every setting included
    assert replace(config.polygons, threshold=0.4) == detect_polygons
    assert config.polygons.core_max_box_px == 2_500_000 and config.polygons.min_area_m2 == 12
    assert config.coregistration_min_blocks == 7
    assert config.coregistration_min_confidence == 0.8
    assert config.coregistration_affine is False
    assert config.engine == "torch" and config.tta is True
    assert config.demolition == "full"
    polygons = config.polygons
    assert (polygons.opening_px, polygons.closing_px, polygons.min_score_max) == (2, 3, 0.8)
    assert polygons.max_hole_m2 == 40 and polygons.regularize is False
    assert (polygons.core_threshold, polygons.core_min_area_m2, polygons.grow_margin) == (
        0.65,
        3,
        0.05,
    )


def _shifted_pair(folder: Path, shift_px: int = 6) -> tuple[Path, Path]:
    """A real 1024 px tile twice (no change), the later copy's georeference ``shift_px`` px east."""
    a, _ = levir("test_7")
    before = write_image(folder / "shift_20250310.tif", np.ascontiguousarray(a))
    from tests.weijian.flight_data import X0

    after = write_image(
        folder / "shift_20260310.tif", np.ascontiguousarray(a), x0=X0 + 0.5 * shift_px
    )
    return before, after


def test_align_uses_the_flights_coregistration_limits(engine: Engine, tmp_path: Path) -> None:
    """Co-registration limits of the flight reach ``prepare_pair``.

    The shift is found and applied by default; a flight demanding 10,000 agreeing blocks keeps
    the georeference as is and says so.
    """
    from ingest import prepare_pair

    add_district(engine)
    before, after = _shifted_pair(tmp_path / "images")
    default = prepare_pair(before, after)
    assert abs(default.shift_m[0] - 3.0) < 0.5 and default.coregistration is not None
    assert default.coregistration.model_applied != "none"

    config = FlightConfig(
        output_root=tmp_path / "flights",
        coregistration_min_blocks=10_000,
        coregistration_min_confidence=0.9,
        coregistration_affine=False,
        demolition="off",
    )
    config = replace(config, polygons=replace(config.polygons, closing_px=3, max_hole_m2=40.0))
    result = run_flight(engine, after, before=before, config=config)
    detect_meta = json.loads((result.folder / "detect" / "detect.json").read_text())
    assert detect_meta["vectorize"]["closing_px"] == 3
    assert detect_meta["vectorize"]["max_hole_m2"] == 40.0
    # the weights' own threshold (detection.threshold unset), grown 0.1 under it from cores
    assert detect_meta["threshold"] == detect_meta["weights_metadata"]["threshold"] != 0.5
    assert detect_meta["vectorize"]["core_threshold"] == config.polygons.core_threshold == 0.6
    # the same flight with other settings replaces its own stale detection results
    rerun = run_flight(
        engine,
        after,
        before=before,
        config=replace(config, polygons=replace(config.polygons, closing_px=0)),
    )
    detect_meta = json.loads((rerun.folder / "detect" / "detect.json").read_text())
    assert rerun.folder == result.folder and detect_meta["vectorize"]["closing_px"] == 0
    align = result.state["steps"]["align"]["result"]
    assert align["shift_m"] == [0.0, 0.0]
    assert any("co-registration not confident" in w for w in align["warnings"])
    assert "10000 blocks and 90% needed" in " ".join(align["warnings"])
    from ingest import AlignedPair

    pair = AlignedPair.load(result.folder / "pair.json")
    assert pair.coregistration is not None
    assert pair.coregistration.min_blocks == 10_000
    assert pair.coregistration.min_confidence == 0.9


def test_unknown_demolition_mode_is_refused(engine: Engine, tmp_path: Path) -> None:
    before, after = _shifted_pair(tmp_path / "images")
    config = replace(FlightConfig(output_root=tmp_path / "flights"), demolition="sometimes")
    with pytest.raises(FlightRefusedError, match=r"flight\.demolition"):
        run_flight(engine, after, before=before, config=config)


def test_flight_loads_the_ensemble_named_in_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``detection.weights = "tinysiam_ensemble"``: the flight's detect step uses the ensemble."""
    from types import SimpleNamespace

    from weijian.cli.flight import flight_config
    from weijian.flight import _load_model
    from weijian.settings import get_settings

    monkeypatch.setenv("WEIJIAN_DATA_DIR", str(tmp_path))
    sizes = []
    for weights in ("", "tinysiam_ensemble"):
        monkeypatch.setenv("WEIJIAN_DETECTION__WEIGHTS", weights)
        if not weights:
            monkeypatch.delenv("WEIJIAN_DETECTION__WEIGHTS")
        get_settings.cache_clear()
        try:
            config = flight_config(out_root=tmp_path / "flights")
        finally:
            get_settings.cache_clear()
        model = _load_model(SimpleNamespace(model=None, config=config))  # type: ignore[arg-type]
        sizes.append((model.ensemble_size, model.threshold))
    from change_detection import load_model

    default, ensemble = load_model(device="cpu"), load_model("tinysiam_ensemble", "cpu")
    assert sizes == [(default.ensemble_size, default.threshold), (3, ensemble.threshold)]
